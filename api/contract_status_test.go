package api

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/valyala/fasthttp"
)

// rawContractExchange sends one request over a new TCP connection to addr, as
// written (a GET may carry a body, which the fasthttp client never sends),
// reads the answer, and checks it against the document as doWith does.
func rawContractExchange(t *testing.T, addr, method, target string, header map[string]string, body string) (int, http.Header, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Only against a server that never answers: the test does not wait on it.
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: impressiond\r\n", method, target)
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if _, chunked := header["Transfer-Encoding"]; body != "" && !chunked {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	var resp fasthttp.Response
	resp.SkipBody = method == "HEAD"
	resp.Header.SetNoDefaultContentType(true)
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, target, err)
	}
	h := http.Header{}
	for k, v := range resp.Header.All() {
		h.Add(string(k), string(v))
	}
	respBody := append([]byte(nil), resp.Body()...)
	if err := checkContract(method, target, resp.StatusCode(), h, respBody); err != nil {
		t.Errorf("%s %s: answer %d %.300s breaks the API contract: %v", method, target, resp.StatusCode(), respBody, err)
	}
	return resp.StatusCode(), h, respBody
}

// TestContractBodyTooLargeAnyMethod sends a body over -max-body to every
// documented operation, GET, HEAD and OPTIONS included: bodies are read
// before routing whatever the method, so each answers the JSON 413.
func TestContractBodyTooLargeAnyMethod(t *testing.T) {
	_, addr := serveTCP(t, Options{MaxBodySize: 1024, MaxConnsPerIP: 1000})
	pad := strings.Repeat("p", 2000)
	for _, op := range specOperations(t, "c1") {
		status, h, body := rawContractExchange(t, addr, op[0], op[1], nil, pad)
		if status != 413 || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s, want 413 application/json", op[0], op[1], status, h.Get("Content-Type"))
		}
		if op[0] != "HEAD" && string(body) != `{"error":"request body is larger than 1024 bytes","code":413}` {
			t.Errorf("%s %s: body %s", op[0], op[1], body)
		}
	}
}

// TestContractConnectionRefusals holds the connections a limit allows and
// sends a request to every documented operation on one more: the listener
// refuses it before reading it, 429 at -max-conns-per-ip and 503 at
// -max-conns, whatever the route.
func TestContractConnectionRefusals(t *testing.T) {
	for _, tc := range []struct {
		name       string
		max, perIP int
		status     int
		body       string
	}{
		{"per IP", 100, 1, 429, `{"error":"too many connections from your address","code":429}`},
		{"overall", 1, 100, 503, `{"error":"server is at its connection limit","code":503}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ln := serveCountingTCP(t, Options{MaxConns: tc.max, MaxConnsPerIP: tc.perIP})
			addr := ln.Addr().String()
			// A connection that never sends a request is not idle, so the
			// overall cap cannot close it to admit the next one.
			held, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			ln.wait(t, 1)
			for _, op := range specOperations(t, "c1") {
				status, h, body := rawContractExchange(t, addr, op[0], op[1], nil, "")
				ln.wait(t, 1) // the refused connection was accepted
				if status != tc.status || h.Get("Content-Type") != "application/json" {
					t.Errorf("%s %s: %d %s, want %d application/json", op[0], op[1], status, h.Get("Content-Type"), tc.status)
				}
				if op[0] != "HEAD" && string(body) != tc.body {
					t.Errorf("%s %s: body %s, want %s", op[0], op[1], body, tc.body)
				}
			}
		})
	}
}

// TestContractNoFallbackStatus checks that a status the operation does not
// list fails the check even when the document has a default or a range
// that would cover it: each status must be documented on its own.
func TestContractNoFallbackStatus(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	op := doc.Paths.Value("/healthz").Get
	catchAll := &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription("any").
		WithJSONSchemaRef(doc.Components.Schemas["Error"])}
	op.Responses.Set("default", catchAll)
	op.Responses.Set("4XX", catchAll)
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{doc: doc, router: router, errSch: loaded.errSch, seen: map[string]map[int]bool{}}
	hdr := http.Header{"Content-Type": {"application/json"}}
	for _, status := range []int{418, 599} {
		_, err := c.check("GET", "/healthz", status, hdr, fmt.Appendf(nil, `{"error":"x","code":%d}`, status))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("status %d is not documented", status)) {
			t.Errorf("status %d under a default and a 4XX: %v, want it reported as not documented", status, err)
		}
	}
	// The same document still accepts a status it lists.
	if _, err := c.check("GET", "/healthz", 200, hdr, []byte(`{"status":"ok"}`)); err != nil {
		t.Errorf("documented 200: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the altered document is not valid OpenAPI, so the test proves nothing: %v", err)
	}
}

// TestContractMalformedBody sends every documented operation a chunked
// body whose chunk size is not hexadecimal: the body is read before
// routing whatever the method, so each answers the JSON 400.
func TestContractMalformedBody(t *testing.T) {
	_, addr := serveTCP(t, Options{MaxConnsPerIP: 1000})
	chunked := map[string]string{"Transfer-Encoding": "chunked"}
	for _, op := range specOperations(t, "c1") {
		status, h, body := rawContractExchange(t, addr, op[0], op[1], chunked, "zz\r\nabc\r\n0\r\n\r\n")
		if status != 400 || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s, want 400 application/json", op[0], op[1], status, h.Get("Content-Type"))
		}
		if op[0] != "HEAD" && string(body) != `{"error":"malformed HTTP request","code":400}` {
			t.Errorf("%s %s: body %s", op[0], op[1], body)
		}
	}
}
