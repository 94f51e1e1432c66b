package api

// The API contract: docs/openapi.yaml is checked against the running
// handlers.
//
//   - Every response a test receives through testServer.doWith is validated
//     against the document (checkContract): the route and method must be
//     documented (an unknown path may only answer the 404 error, an
//     undocumented method only the 405 error), the status must be
//     documented for the operation, and the media type, the required
//     headers and the body must match.
//   - TestContractRoutes compares the routes the server registers with the
//     operations the document lists.
//   - TestMain, after a full run of the package's tests, fails if a
//     documented (operation, status) pair was never produced, except the
//     few listed in contractExempt.
//
// Handlers called directly (fuzz targets, benchmarks, allocation tests) are
// not checked.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/valyala/fasthttp"
)

const specPath = "../docs/openapi.yaml"

// contractExempt lists the documented statuses that no test can produce
// through the HTTP client, with the reason. Keep it short: a status that
// can be produced belongs in a test instead.
var contractExempt = map[int]string{
	500: "only a panic in a handler answers 500, and no request makes a handler panic; " +
		"TestPanicIsRecovered checks the answer by calling the recovery wrapper directly",
}

// contract is the loaded document, its router and the responses seen.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	errSch *openapi3.Schema // components/schemas/Error

	mu   sync.Mutex
	seen map[string]map[int]bool // operationId → statuses answered
}

func loadSpec() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate %s: %w", specPath, err)
	}
	return doc, nil
}

var loadContract = sync.OnceValues(func() (*contract, error) {
	doc, err := loadSpec()
	if err != nil {
		return nil, err
	}
	// The document's server is http://127.0.0.1:8080 and the tests talk
	// to "impressiond": route by path only.
	byPath := *doc
	byPath.Servers = nil
	router, err := gorillamux.NewRouter(&byPath)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", specPath, err)
	}
	errSch := doc.Components.Schemas["Error"]
	if errSch == nil || errSch.Value == nil {
		return nil, fmt.Errorf("%s: no components/schemas/Error", specPath)
	}
	// The dashboard is documented as a string; kin-openapi decodes only
	// text/plain as one by default.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("image/gif", openapi3filter.FileBodyDecoder)
	return &contract{doc: doc, router: router, errSch: errSch.Value, seen: map[string]map[int]bool{}}, nil
})

// checkContract validates one exchange made through doWith against the
// document and, if it holds, records the status against its operations.
func checkContract(method, target string, status int, header http.Header, body []byte) error {
	c, err := loadContract()
	if err != nil {
		return err
	}
	ops, err := c.check(method, target, status, header, body)
	if err != nil {
		return err
	}
	c.record(ops, status)
	return nil
}

// check validates one exchange and returns the operations whose documented
// response it is: none for an unknown path, every operation of the path
// for a 405.
func (c *contract) check(method, target string, status int, header http.Header, body []byte) ([]string, error) {
	// Route on the path the server routes on: percent-decoded, with
	// repeated slashes and dot segments resolved. The server keeps %2F and
	// %25 encoded (path.go), which this decodes: tests through doWith
	// send no such escapes (TestPathsAreCleaned checks them on the wire).
	var uri fasthttp.URI
	if err := uri.Parse(nil, []byte("http://impressiond"+target)); err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "http", Host: "impressiond", Path: string(uri.Path()), RawQuery: string(uri.QueryString())}
	req, err := http.NewRequest(method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	route, params, err := c.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		// "Any path not listed in this document answers 404 with the error body."
		if status != fasthttp.StatusNotFound {
			return nil, fmt.Errorf("the path is not in %s, so the answer must be 404, not %d", specPath, status)
		}
		return nil, c.checkErrorBody(req, status, header, body)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		return c.checkMethodNotAllowed(req, status, header, body)
	case err != nil:
		return nil, err
	}
	if status == fasthttp.StatusMethodNotAllowed {
		return nil, fmt.Errorf("%s documents %s %s (%s), but the server answered 405", specPath, method, route.Path, route.Operation.OperationID)
	}
	return []string{route.Operation.OperationID}, c.validate(route, params, req, status, header, body)
}

// checkMethodNotAllowed checks an exchange whose path is documented but
// whose method is not: the answer must be each operation's documented 405,
// with an Allow header listing exactly the documented methods.
func (c *contract) checkMethodNotAllowed(req *http.Request, status int, header http.Header, body []byte) ([]string, error) {
	if status != fasthttp.StatusMethodNotAllowed {
		return nil, fmt.Errorf("%s does not document %s on this path, so the answer must be 405, not %d", specPath, req.Method, status)
	}
	// Find the path item through a method it documents.
	var item *openapi3.PathItem
	var path string
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "QUERY"} {
		alt := req.Clone(req.Context())
		alt.Method = m
		if route, _, err := c.router.FindRoute(alt); err == nil {
			item, path = route.PathItem, route.Path
			break
		}
	}
	if item == nil {
		return nil, fmt.Errorf("no operation found for the path of %s", req.URL.Path)
	}
	ops := item.Operations()
	documented := slices.Sorted(maps.Keys(ops))
	var allowed []string
	for m := range strings.SplitSeq(header.Get("Allow"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			allowed = append(allowed, m)
		}
	}
	if slices.Sort(allowed); !slices.Equal(allowed, documented) {
		return nil, fmt.Errorf("405 for %s: Allow %q, but %s documents %v", path, header.Get("Allow"), specPath, documented)
	}
	var ids []string
	for _, m := range documented {
		route := &routers.Route{Spec: c.doc, Path: path, PathItem: item, Method: m, Operation: ops[m]}
		if err := c.validate(route, nil, req, status, header, body); err != nil {
			return nil, err
		}
		ids = append(ids, ops[m].OperationID)
	}
	return ids, nil
}

// validate checks the status, headers, media type and body against the
// route's operation.
func (c *contract) validate(route *routers.Route, params map[string]string, req *http.Request, status int, header http.Header, body []byte) error {
	op := route.Operation
	// The exact status only: Responses.Status would also take a "4XX"
	// range, and ValidateResponse a "default", for a status the document
	// never names.
	resp := op.Responses.Value(strconv.Itoa(status))
	if resp == nil || resp.Value == nil {
		return fmt.Errorf("status %d is not documented for %s (%s %s)", status, op.OperationID, route.Method, route.Path)
	}
	if ct := header.Get("Content-Type"); !hasMediaType(resp.Value.Content, ct) && (ct != "" || len(resp.Value.Content) > 0) {
		return fmt.Errorf("%s %d: Content-Type %q, want one of %v", op.OperationID, status, ct, slices.Sorted(maps.Keys(resp.Value.Content)))
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	input.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		return fmt.Errorf("%s %d: %w", op.OperationID, status, err)
	}
	return checkErrorCode(req, status, header, body)
}

// checkErrorBody checks an answer no operation documents (an unknown
// path) against the error shape: components/schemas/Error.
func (c *contract) checkErrorBody(req *http.Request, status int, header http.Header, body []byte) error {
	if ct := header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("%d: Content-Type %q, want application/json", status, ct)
	}
	if req.Method == http.MethodHead {
		return nil // no body
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%d: body is not JSON: %w", status, err)
	}
	var opts []openapi3.SchemaValidationOption
	if c.doc.IsOpenAPI31OrLater() {
		opts = append(opts, openapi3.EnableJSONSchema2020())
	}
	if err := c.errSch.VisitJSON(v, opts...); err != nil {
		return fmt.Errorf("%d: body does not match components/schemas/Error: %w", status, err)
	}
	return checkErrorCode(req, status, header, body)
}

// checkErrorCode checks what a schema cannot: an error body's code
// repeats the HTTP status.
func checkErrorCode(req *http.Request, status int, header http.Header, body []byte) error {
	if status < 400 || header.Get("Content-Type") != "application/json" || req.Method == http.MethodHead {
		return nil
	}
	var e struct{ Code int }
	if err := json.Unmarshal(body, &e); err != nil || e.Code != status {
		return fmt.Errorf("%d: error body %s: code must repeat the status", status, body)
	}
	return nil
}

// hasMediaType reports whether ct names exactly one of the documented
// media types: same type and subtype, same parameters.
func hasMediaType(content openapi3.Content, ct string) bool {
	typ, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	for key := range content {
		kt, kp, err := mime.ParseMediaType(key)
		if err == nil && kt == typ && maps.Equal(kp, params) {
			return true
		}
	}
	return false
}

func (c *contract) record(operationIDs []string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range operationIDs {
		if c.seen[id] == nil {
			c.seen[id] = map[int]bool{}
		}
		c.seen[id][status] = true
	}
}

// unproduced lists the documented (operation, status) pairs that no
// exchange produced, except those in contractExempt.
func (c *contract) unproduced() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []string
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				status, _ := strconv.Atoi(code)
				if _, ok := contractExempt[status]; ok || c.seen[op.OperationID][status] {
					continue
				}
				missing = append(missing, fmt.Sprintf("%s %s (%s): %s", method, path, op.OperationID, code))
			}
		}
	}
	slices.Sort(missing)
	return missing
}

// TestMain runs the tests, then, after a full and successful run, checks
// that every documented response was produced by some test.
func TestMain(m *testing.M) {
	code := m.Run()
	// The memory run checks that every documented status was produced;
	// some (503 from Redis) come only from the Redis tests, which skip
	// without a redis-server outside CI. As in internal/redistest, a
	// missing redis-server skips the check locally and fails it in CI.
	if code == 0 && fullRun() && !testRedis() {
		if _, err := exec.LookPath("redis-server"); err != nil {
			if os.Getenv("CI") == "true" {
				fmt.Fprintf(os.Stderr, "FAIL: API contract coverage: redis-server is not in PATH; CI must run the check: %v\n", err)
				code = 1
			} else {
				fmt.Fprintln(os.Stderr, "redis-server not found: the API contract coverage check is skipped")
			}
		} else if err := contractCoverage(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: API contract coverage: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// fullRun reports whether every test of the package ran: not when tests
// were selected, skipped or only listed.
func fullRun() bool {
	for _, name := range []string{"test.run", "test.skip", "test.list"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return true
}

func contractCoverage() error {
	c, err := loadContract()
	if err != nil {
		return err
	}
	if missing := c.unproduced(); len(missing) > 0 {
		return fmt.Errorf("no test produced these responses documented in %s; add a test that does, "+
			"through testServer.doWith, or drop them from the document if they cannot happen:\n\t%s",
			specPath, strings.Join(missing, "\n\t"))
	}
	return nil
}

// TestContractDocument checks that the document is valid OpenAPI and
// holds the conventions the contract check relies on.
func TestContractDocument(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s: operationId %q missing or not unique", name, op.OperationID)
			}
			ids[op.OperationID] = true
			for code := range op.Responses.Map() {
				// A default or a range would let an undocumented status through.
				if n, err := strconv.Atoi(code); err != nil || n < 100 || n > 599 {
					t.Errorf("%s: response %q: document each status on its own", name, code)
				}
			}
			// Every route answers these, whatever the handler: 400, 413
			// and 503 because bodies are read (framed, within -max-body
			// and -max-body-memory) before routing, whatever the method;
			// 429 and 503 because the connection limits refuse before a
			// request is read.
			for _, status := range []int{400, 405, 408, 413, 429, 431, 500, 503} {
				if op.Responses.Status(status) == nil {
					t.Errorf("%s: status %d is not documented", name, status)
				}
			}
		}
	}
}

// routerParam matches a fasthttp/router parameter: {name}, {name:regexp},
// {name?} or {name:*}.
var routerParam = regexp.MustCompile(`\{([^}:?]+)[^}]*\}`)

// TestContractRoutes checks that the server registers exactly the
// operations the document lists.
func TestContractRoutes(t *testing.T) {
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	ts := newTestServer(t, "exact")
	registered := map[string]bool{}
	for method, paths := range ts.srv.routes {
		for _, p := range paths {
			registered[method+" "+routerParam.ReplaceAllString(p, "{$1}")] = true
		}
	}
	if len(registered) == 0 {
		t.Fatal("the server lists no routes")
	}
	for _, r := range slices.Sorted(maps.Keys(registered)) {
		if !documented[r] {
			t.Errorf("route %s is served but not documented in %s", r, specPath)
		}
	}
	for _, r := range slices.Sorted(maps.Keys(documented)) {
		if !registered[r] {
			t.Errorf("operation %s is documented in %s but not served", r, specPath)
		}
	}
}

// pathParam matches a parameter of a documented path.
var pathParam = regexp.MustCompile(`\{[^}]+\}`)

// specOperations returns every documented operation as a method and a
// path whose parameters are filled with id.
func specOperations(t *testing.T, id string) [][2]string {
	t.Helper()
	doc, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	var ops [][2]string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, [2]string{method, pathParam.ReplaceAllLiteralString(path, id)})
		}
	}
	slices.SortFunc(ops, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
	return ops
}

func TestContractMonitoringRoutes(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken, o.IngestToken = "admin", "ingest" })
	// Open without a token; only the status and media type are checked
	// here (by doWith), the content is the handlers' own tests' business.
	ts.do("GET", "/metrics", "").want(t, 200)
	ts.do("GET", "/", "").want(t, 200)
	ts.do("POST", "/metrics", "").want(t, 405)
	ts.do("DELETE", "/", "").want(t, 405)
}

func TestContractBodyTooLarge(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxBodySize = 1024 })
	ts.createCampaign("c1")
	pad := strings.Repeat("p", 2000)
	ts.do("POST", "/api/v1/campaigns", `{"name":"x","pad":"`+pad+`"}`).want(t, 413)
	ts.do("POST", "/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u","pad":"`+pad+`"}]`).want(t, 413)
	ts.do("POST", "/api/v1/impressions", `{"campaign_id":"c1","user_id":"u","pad":"`+pad+`"}`).want(t, 413)
	if got := ts.stats("c1"); got.Total != 0 {
		t.Fatalf("a 413 counted: %+v", got)
	}
}

// TestContractHeaderTooLarge sends oversized headers to every documented
// operation: each answers 431 before routing.
func TestContractHeaderTooLarge(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.MaxHeaderBytes = 2048 })
	big := map[string]string{"X-Big": strings.Repeat("h", 4096)}
	for _, op := range specOperations(t, "c1") {
		ts.doWith(op[0], op[1], "", big).wantFor(t, op[0], 431)
	}
}

// TestContractRequestTimeout sends half a request to every documented
// operation and then nothing more: each answers 408 once the read timeout
// passes, and closes the connection. It runs over TCP: the in-memory
// listener's timeout error is not a net.Error, and the server tells a
// timeout from a malformed request by that interface.
func TestContractRequestTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
	ts := serveTest(t, "exact", ln, dial, func(o *testOptions) { o.ReadTimeout = 50 * time.Millisecond })
	ts.client = &fasthttp.Client{
		Dial: func(string) (net.Conn, error) {
			c, err := ts.dial()
			if err != nil {
				return nil, err
			}
			return &stallingConn{Conn: c}, nil
		},
	}
	for _, op := range specOperations(t, "c1") {
		body := ""
		if op[0] == "POST" {
			body = track("c1", "u1")
		}
		ts.do(op[0], op[1], body).wantFor(t, op[0], 408)
	}
}

// stallingConn writes the first half of the first request and then stops
// sending: it reads the server's answer until the server closes the
// connection, and hands that answer to the client.
type stallingConn struct {
	net.Conn
	answer *bytes.Reader
}

func (c *stallingConn) Write(p []byte) (int, error) {
	if c.answer != nil {
		return len(p), nil // the request was cut short already
	}
	if _, err := c.Conn.Write(p[:len(p)/2]); err != nil {
		return 0, err
	}
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c.Conn)
	if err != nil {
		return 0, err
	}
	c.answer = bytes.NewReader(b)
	return len(p), nil
}

func (c *stallingConn) Read(p []byte) (int, error) {
	if c.answer == nil {
		return c.Conn.Read(p)
	}
	return c.answer.Read(p)
}

// TestContractCheck feeds the contract check made-up exchanges: it must
// accept the documented ones and reject each kind of departure.
func TestContractCheck(t *testing.T) {
	loaded, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	// A contract of its own, so that these exchanges are not recorded as
	// produced by the server.
	c := &contract{doc: loaded.doc, router: loaded.router, errSch: loaded.errSch, seen: map[string]map[int]bool{}}
	const (
		jsonCT    = "application/json"
		errBody   = `{"error":"x","code":%d}`
		created   = `{"id":"a","name":"A","start_time":"2026-01-01T00:00:00Z","frequency_caps":[],"message":"campaign created"}`
		okHealth  = `{"status":"ok"}`
		metricsCT = "text/plain; version=0.0.4; charset=utf-8"
	)
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name         string
		method, path string
		status       int
		header       http.Header
		body         string
		wantErr      string // "" if the exchange holds
	}{
		{"documented answer", "GET", "/healthz", 200, hdr("Content-Type", jsonCT), okHealth, ""},
		{"documented error", "GET", "/api/v1/campaigns/x", 404, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 404), ""},
		{"created with Location", "POST", "/api/v1/campaigns", 201, hdr("Content-Type", jsonCT, "Location", "/api/v1/campaigns/a"), created, ""},
		{"unknown path, 404", "GET", "/nope", 404, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 404), ""},
		{"undocumented method, 405", "DELETE", "/api/v1/campaigns", 405, hdr("Content-Type", jsonCT, "Allow", "GET, HEAD, POST"), fmt.Sprintf(errBody, 405), ""},
		{"metrics", "GET", "/metrics", 200, hdr("Content-Type", metricsCT), "", ""},
		{"dashboard", "GET", "/", 200, hdr("Content-Type", "text/html; charset=utf-8"), "<!doctype html>", ""},
		{"path normalized as the server does", "GET", "//api/v1/./campaigns/%78/../x", 404, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 404), ""},
		{"HEAD, 405 without a body", "HEAD", "/api/v1/impressions", 405, hdr("Content-Type", jsonCT, "Allow", "OPTIONS, POST"), "", ""},
		{"HEAD without a body", "HEAD", "/healthz", 200, hdr("Content-Type", jsonCT), "", ""},
		{"preflight, 204 without a body", "OPTIONS", "/api/v1/impressions", 204, hdr("Allow", "OPTIONS, POST"), "", ""},
		{"pixel", "GET", "/api/v1/pixel.gif", 200, hdr("Content-Type", "image/gif", "Cache-Control", "no-store", "X-Impression-Status", "counted"), string(pixelGIF), ""},
		{"pixel error without X-Error", "GET", "/api/v1/pixel.gif", 422, hdr("Content-Type", "image/gif", "Cache-Control", "no-store"), string(pixelGIF), `"X-Error" missing`},

		{"undocumented status", "GET", "/healthz", 418, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 418), "status 418 is not documented"},
		{"unknown path served", "GET", "/nope", 200, hdr("Content-Type", jsonCT), okHealth, "must be 404"},
		{"unknown path, not the error shape", "GET", "/nope", 404, hdr("Content-Type", jsonCT), `{"message":"x"}`, "components/schemas/Error"},
		{"undocumented method served", "DELETE", "/healthz", 200, hdr("Content-Type", jsonCT), okHealth, "must be 405"},
		{"documented method refused", "GET", "/healthz", 405, hdr("Content-Type", jsonCT, "Allow", "GET"), fmt.Sprintf(errBody, 405), "answered 405"},
		{"405 with a wrong Allow", "DELETE", "/api/v1/campaigns", 405, hdr("Content-Type", jsonCT, "Allow", "GET"), fmt.Sprintf(errBody, 405), "Allow"},
		{"preflight without Allow", "OPTIONS", "/api/v1/impressions", 204, hdr(), "", `"Allow" missing`},
		{"405 without Allow", "PUT", "/healthz", 405, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 405), "Allow"},
		{"body off the schema", "GET", "/healthz", 200, hdr("Content-Type", jsonCT), `{"status":"fine"}`, "doesn't match schema"},
		{"undocumented media type", "GET", "/healthz", 200, hdr("Content-Type", "text/plain"), "ok", "Content-Type"},
		{"media type with other parameters", "GET", "/healthz", 200, hdr("Content-Type", jsonCT+"; charset=utf-8"), okHealth, "Content-Type"},
		{"metrics as JSON", "GET", "/metrics", 200, hdr("Content-Type", jsonCT), "{}", "Content-Type"},
		{"created without Location", "POST", "/api/v1/campaigns", 201, hdr("Content-Type", jsonCT), created, `"Location" missing`},
		{"401 without WWW-Authenticate", "GET", "/api/v1/campaigns", 401, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 401), `"WWW-Authenticate" missing`},
		{"error code not the status", "GET", "/api/v1/campaigns/x", 404, hdr("Content-Type", jsonCT), fmt.Sprintf(errBody, 400), "code must repeat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.check(tc.method, tc.path, tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want an error about %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want one about %q", err, tc.wantErr)
			}
		})
	}
	if len(c.seen) != 0 {
		t.Fatalf("check recorded %v; only checkContract records", c.seen)
	}
}

// TestContractCoverageGaps checks that a documented status no exchange
// produced is reported, and a produced or exempt one is not.
func TestContractCoverageGaps(t *testing.T) {
	loaded, err := loadContract()
	if err != nil {
		t.Fatal(err)
	}
	c := &contract{doc: loaded.doc, router: loaded.router, errSch: loaded.errSch, seen: map[string]map[int]bool{}}
	all := c.unproduced()
	if !slices.Contains(all, "GET /healthz (healthz): 200") {
		t.Fatalf("nothing produced yet, but GET /healthz 200 is not reported: %v", all)
	}
	for _, gap := range all {
		if strings.HasSuffix(gap, ": 500") {
			t.Fatalf("exempt status reported: %s", gap)
		}
	}
	c.record([]string{"healthz"}, 200)
	if slices.Contains(c.unproduced(), "GET /healthz (healthz): 200") {
		t.Fatal("GET /healthz 200 produced, but still reported")
	}
	if got := len(c.unproduced()); got != len(all)-1 {
		t.Fatalf("%d gaps after producing one of %d", got, len(all))
	}
}
