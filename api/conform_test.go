package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawExchange writes req, as is, on a new connection to addr and reads one
// answer. Raw bytes reach the server exactly as written: a client library
// would clean the path first.
func rawExchange(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestHeadAnswersLikeGet: every GET route answers HEAD with GET's status,
// Content-Type and Content-Length, and no body.
func TestHeadAnswersLikeGet(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken = "admin" })
	admin := map[string]string{"Authorization": "Bearer admin"}
	ts.doWith("POST", "/api/v1/campaigns", `{"id":"c1","name":"C1","start_time":"`+pastStart+`"}`, admin).want(t, 201)
	gets := ts.srv.routes["GET"]
	if len(gets) < 8 {
		t.Fatalf("the router lists %d GET routes: %v", len(gets), gets)
	}
	heads := map[string]bool{}
	for _, p := range ts.srv.routes["HEAD"] {
		heads[p] = true
	}
	for _, p := range gets {
		if !heads[p] {
			t.Errorf("GET %s has no HEAD route", p)
			continue
		}
		path := strings.ReplaceAll(p, "{id}", "c1")
		if p == pixelPath {
			path += "?campaign_id=c1&user_id=u1"
		}
		get := ts.doWith("GET", path, "", admin)
		head := ts.doWith("HEAD", path, "", admin)
		want := 200
		if head.status != get.status || head.status != want {
			t.Errorf("%s: HEAD %d, GET %d, want both %d", p, head.status, get.status, want)
		}
		if len(head.body) != 0 {
			t.Errorf("%s: HEAD answered %d body bytes", p, len(head.body))
		}
		if head.header["Content-Type"] != get.header["Content-Type"] {
			t.Errorf("%s: HEAD Content-Type %q, GET %q", p, head.header["Content-Type"], get.header["Content-Type"])
		}
		n, err := strconv.Atoi(head.header["Content-Length"])
		switch {
		case err != nil:
			t.Errorf("%s: HEAD Content-Length %q: %v", p, head.header["Content-Length"], err)
		case p == "/metrics":
			// The counters move between the two requests; only the
			// presence of the length is stable.
		case n != len(get.body):
			t.Errorf("%s: HEAD Content-Length %d, GET sent %d bytes", p, n, len(get.body))
		}
	}
	// Errors are answered as GET answers them, without the body.
	for _, tc := range []struct {
		path   string
		header map[string]string
		status int
	}{
		{"/api/v1/campaigns", nil, 401},
		{"/api/v1/campaigns/c1", nil, 401},
		{"/api/v1/campaigns/c1/stats", nil, 401},
		{"/api/v1/campaigns/c1/series", nil, 401},
		{"/api/v1/campaigns?limit=0", admin, 422},
		{"/api/v1/campaigns/c1/series?window=2h", admin, 422},
		{"/api/v1/campaigns/nope", admin, 404},
		{"/api/v1/campaigns/nope/stats", admin, 404},
		{"/api/v1/campaigns/nope/series", admin, 404},
	} {
		get := ts.doWith("GET", tc.path, "", tc.header).want(t, tc.status)
		head := ts.doWith("HEAD", tc.path, "", tc.header).wantFor(t, "HEAD", tc.status)
		if head.header["Content-Length"] != strconv.Itoa(len(get.body)) {
			t.Errorf("HEAD %s: Content-Length %q, GET sent %d bytes", tc.path, head.header["Content-Length"], len(get.body))
		}
	}
	ts.srv.ready.Store(false)
	ts.do("HEAD", "/readyz", "").wantFor(t, "HEAD", 503)
	ts.srv.ready.Store(true)
}

// TestPathsAreCleaned: the documented examples route as their clean path,
// and the escapes kept (%2F, %25) do not.
func TestPathsAreCleaned(t *testing.T) {
	_, addr := serveTCP(t, Options{})
	create := `{"id":"spring-sale","name":"Spring sale"}`
	if resp, body := rawExchange(t, addr, "POST /api/v1/campaigns HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(create))+"\r\n\r\n"+create); resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		target string
		status int
		body   string // a prefix of the answer
	}{
		{"//healthz", 200, `{"status":"ok"}`},
		{"/%68ealthz", 200, `{"status":"ok"}`},
		{"/api/v1/campaigns/spring%2Dsale", 200, `{"id":"spring-sale"`},
		{"/api/v1//campaigns/./spring-sale/../spring-sale", 200, `{"id":"spring-sale"`},
		{"/api/v1/campaigns/spring-sale/%2E%2E/spring-sale/stats", 200, `{"campaign_id":"spring-sale"`},
		{"/../../healthz", 200, `{"status":"ok"}`},
		// The other direction: what the rule keeps apart stays apart.
		{"/healthz/", 404, `{"error":"route not found"`},
		{"/api/v1/campaigns/spring-sale%2Fstats", 404, `{"error":"campaign not found"`},
		{"/api/v1/campaigns/spring-sale%2fstats", 404, `{"error":"campaign not found"`},
		{"/api/v1%2Fcampaigns", 404, `{"error":"route not found"`},
		{"/%2568ealthz", 404, `{"error":"route not found"`},
		{"/health%zz", 404, `{"error":"route not found"`},
	} {
		resp, body := rawExchange(t, addr, "GET "+tc.target+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), tc.body) {
			t.Errorf("GET %s: got %d %s, want %d %s…", tc.target, resp.StatusCode, body, tc.status, tc.body)
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			t.Errorf("GET %s: redirected", tc.target)
		}
	}
}

// TestExpectContinueOverLimit: a request announcing a body over
// -max-body with Expect: 100-continue gets the JSON 413 at once, not
// 100 Continue; one within the limit is invited and served.
func TestExpectContinueOverLimit(t *testing.T) {
	const limit = 1024
	_, addr := serveTCP(t, Options{MaxBodySize: limit})
	resp, body := rawExchange(t, addr, "POST /api/v1/impressions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"+
		"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(limit+1)+"\r\n\r\n")
	if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != "application/json" || !resp.Close {
		t.Fatalf("got %d %v (close %v), want 413 application/json and the connection closed", resp.StatusCode, resp.Header, resp.Close)
	}
	if want := `{"error":"request body is larger than 1024 bytes","code":413}`; string(body) != want {
		t.Fatalf("body %s, want %s", body, want)
	}

	// Within the limit: 100 Continue, then the answer to the body.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b := track("nope", "u1")
	io.WriteString(c, "POST /api/v1/impressions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "+strconv.Itoa(len(b))+"\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q (%v), want 100 Continue", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100 Continue: %q", blank)
	}
	io.WriteString(c, b)
	final, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	if final.StatusCode != 404 {
		t.Fatalf("after the body: %d, want 404 (unknown campaign)", final.StatusCode)
	}
}
