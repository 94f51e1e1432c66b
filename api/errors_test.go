package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestBodyTooLargeOverTCP sends a body over -max-body through a real TCP
// connection with Go's HTTP client, which keeps writing while the server
// answers: the client must read the 413 JSON, not a connection reset.
func TestBodyTooLargeOverTCP(t *testing.T) {
	_, addr := serveTCP(t, Options{MaxBodySize: 1 << 20})

	for _, size := range []int{1<<20 + 1, 8 << 20, 64 << 20} {
		body := bytes.Repeat([]byte("a"), size)
		resp, err := http.Post("http://"+addr+"/api/v1/impressions/batch", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%d-byte body: %v, want a 413 response", size, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error string
			Code  int
		}
		if resp.StatusCode != 413 || json.Unmarshal(b, &e) != nil || e.Code != 413 || e.Error == "" {
			t.Fatalf("%d-byte body: got %d %s, want 413 with the JSON error shape", size, resp.StatusCode, b)
		}
	}
	// The server still serves.
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after 413s: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "tab\tnewline\n\x00nul", "é ☃ 🎉",
		"bad \xff utf8", "\xc3", "</script>", strings.Repeat("x", 1000),
	} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q rendered as invalid JSON %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if utf8.ValidString(s) {
			want = s
		}
		if got != want {
			t.Fatalf("%q: round trip gave %q, want %q", s, got, want)
		}
	}
}
