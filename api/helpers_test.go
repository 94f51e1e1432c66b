package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store"
	"github.com/impressiond/impressiond/store/redisstore"
	"github.com/impressiond/impressiond/tracker"
)

// testRedis runs the API tests against the shared-store mode, each test on
// a redis-server of its own: IMPRESSIOND_TEST_STORE=redis go test ./api
// (make test does both). Tests of what only the in-process store does
// (persistence, dedup internals) call memoryOnly. The variable is read
// during the tests, where go test's cache records it, so the two runs
// never share cached results.
func testRedis() bool {
	redisOnce.Do(func() { redisRun = os.Getenv("IMPRESSIOND_TEST_STORE") == "redis" })
	return redisRun
}

var (
	redisOnce sync.Once
	redisRun  bool
)

// memoryOnly skips a test in the shared-store run, saying why.
func memoryOnly(t testing.TB, why string) {
	t.Helper()
	if testRedis() {
		t.Skip("in-process store only: " + why)
	}
}

// openTestRedis starts a redis-server for the test and opens a store on it
// whose shared clock is the test's clock, so that tests move the dedup
// window by hand in both stores alike.
func openTestRedis(t testing.TB, mode string, clock func() time.Time) *redisstore.Store {
	t.Helper()
	srv := redistest.Start(t)
	// A generous timeout: these runs test the API's behaviour, under -race
	// and with hundreds of goroutines on two cores, not Redis's latency
	// (TestRedisUnavailable does, with the default).
	st, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: clock,
		Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testNow is the fake clock's start: the time the tests run, moved by
// IMPRESSIOND_TEST_CLOCK_SHIFT (make test runs the Redis tests a year
// ahead and a year back too), half a minute into a minute so that minute
// arithmetic in tests is unambiguous. Every instant a test names is
// derived from it, never written as a date.
var testNow = func() time.Time {
	shift := time.Duration(0)
	if v := os.Getenv(redistest.ClockShiftEnv); v != "" {
		var err error
		if shift, err = time.ParseDuration(v); err != nil {
			panic(redistest.ClockShiftEnv + ": " + err.Error())
		}
	}
	return time.Now().Add(shift).UTC().Truncate(time.Minute).Add(30 * time.Second)
}()

// coreOptions are a test server's tracker options; an alias, so that
// testOptions can embed them next to the HTTP layer's Options.
type coreOptions = tracker.Options

// testOptions are everything a test server is made of: the HTTP layer's
// options and its tracker's. The Logger of Options is the tracker's too
// unless coreOptions sets one.
type testOptions struct {
	Options
	coreOptions
}

// Test hooks of the tracker's log, for the servers newServer builds:
// they create the log's segment files (to inject disk errors) and set the
// disk space it reserves ahead.
var (
	testHookOpenLogFile func(path string) (store.File, error)
	testHookLogReserve  int64
)

// newServer opens the tracker o describes and a Server on it, as
// cmd/impressiond wires them.
func newServer(o testOptions) (*Server, error) {
	if o.coreOptions.Logger == nil {
		o.coreOptions.Logger = o.Options.Logger
	}
	if o.OpenLogFile == nil {
		o.OpenLogFile = testHookOpenLogFile
	}
	if o.LogReserve == 0 {
		o.LogReserve = testHookLogReserve
	}
	core, err := tracker.Open(o.coreOptions)
	if err != nil {
		return nil, err
	}
	o.Tracker = core
	srv, err := New(o.Options)
	if err != nil {
		core.Close()
		return nil, err
	}
	return srv, nil
}

// rfc3339 formats t as the API writes times.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// pastStart is a start_time well before testNow, for campaigns that take
// impressions from the whole day window and more.
var pastStart = rfc3339(testNow.Add(-330 * 24 * time.Hour).Truncate(24 * time.Hour))

type testServer struct {
	t      testing.TB
	srv    *Server
	dedup  sketch.Deduper // the tracker's window; nil on Redis
	clock  *fakeClock
	dial   func() (net.Conn, error) // opens a connection to srv
	client *fasthttp.Client
}

// newTestServer serves a Server on an in-memory listener with a fake clock.
// mode is "bloom" or "exact".
func newTestServer(t testing.TB, mode string, opts ...func(*testOptions)) *testServer {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	return serveTest(t, mode, ln, ln.Dial, opts...)
}

// serveTest serves a Server on ln with a fake clock; dial connects to ln.
func serveTest(t testing.TB, mode string, ln net.Listener, dial func() (net.Conn, error), opts ...func(*testOptions)) *testServer {
	t.Helper()
	dedup, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: testNow}
	o := testOptions{
		// Generous read and write timeouts: hundreds of goroutines under
		// -race on a busy machine may wait seconds for a turn, and that is
		// not what these tests measure (tests of the timeouts set theirs).
		Options:     Options{MaxBodySize: 4 << 20, ReadTimeout: time.Minute, WriteTimeout: time.Minute, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		coreOptions: coreOptions{Dedup: dedup, Frequency: testFrequency(mode, 1000), MaxSkew: time.Minute, Now: clock.Now},
	}
	for _, f := range opts {
		f(&o)
	}
	if testRedis() && o.Redis == nil {
		o.Dedup, o.Redis = nil, openTestRedis(t, mode, o.Now)
	}
	srv, err := newServer(o)
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, srv, ln)
	return &testServer{
		t:     t,
		srv:   srv,
		dedup: o.Dedup,
		clock: clock,
		dial:  dial,
		client: &fasthttp.Client{
			Dial:                func(string) (net.Conn, error) { return dial() },
			MaxConnsPerHost:     1024,
			MaxResponseBodySize: 64 << 20,
		},
	}
}

type response struct {
	status int
	header map[string]string
	body   []byte
}

// do sends one request and returns the response; it fails the test if the
// response breaks the contract of docs/openapi.yaml (see contract_test.go).
// It reports with t.Errorf, so it is safe from worker goroutines: when the
// request itself fails, the response has status 0.
func (ts *testServer) do(method, path, body string) response {
	ts.t.Helper()
	return ts.doWith(method, path, body, nil)
}

// doWith is do with extra request headers.
func (ts *testServer) doWith(method, path, body string, header map[string]string) response {
	ts.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://impressiond" + path)
	if body != "" {
		req.SetBodyString(body)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// A response without Content-Type (a 204) must not read as text/plain.
	resp.Header.SetNoDefaultContentType(true)
	if err := ts.client.Do(req, resp); err != nil {
		ts.t.Errorf("%s %s: %v", method, path, err)
		return response{header: map[string]string{}}
	}
	r := response{status: resp.StatusCode(), header: map[string]string{}, body: append([]byte(nil), resp.Body()...)}
	h := http.Header{}
	for k, v := range resp.Header.All() {
		r.header[string(k)] = string(v)
		h.Add(string(k), string(v))
	}
	// The status, media type, headers and body must be the ones
	// docs/openapi.yaml documents for this method and path.
	if err := checkContract(method, path, r.status, h, r.body); err != nil {
		ts.t.Errorf("%s %s: answer %d %.500s breaks the API contract: %v", method, path, r.status, r.body, err)
	}
	if r.header["Content-Type"] == "application/json" && method != "HEAD" && !json.Valid(r.body) {
		ts.t.Errorf("%s %s: body is not JSON: %s", method, path, r.body)
	}
	return r
}

// want checks the status and, for errors, the error shape. It calls
// t.Fatal: call it on the test goroutine only; worker goroutines use ok.
func (r response) want(t testing.TB, status int) response {
	t.Helper()
	if err := r.check(status); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantFor is want for a request of method: a HEAD answer has no body to
// check, only its status and its Content-Type (checked by doWith).
func (r response) wantFor(t testing.TB, method string, status int) response {
	t.Helper()
	if method == "HEAD" {
		if r.status != status || len(r.body) != 0 {
			t.Fatalf("HEAD: got %d with %d body bytes, want %d without a body", r.status, len(r.body), status)
		}
		return r
	}
	return r.want(t, status)
}

// ok is want for worker goroutines: it reports a mismatch with t.Error and
// returns false, and the goroutine should then stop.
func (r response) ok(t testing.TB, status int) bool {
	t.Helper()
	if err := r.check(status); err != nil {
		t.Error(err)
		return false
	}
	return true
}

// check returns why r does not have the status and, for errors, the error
// shape, or nil.
func (r response) check(status int) error {
	if r.status != status {
		return fmt.Errorf("status: got %d, want %d (body %s)", r.status, status, r.body)
	}
	if status >= 400 {
		var e struct {
			Error *string `json:"error"`
			Code  *int    `json:"code"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil || e.Error == nil || *e.Error == "" || e.Code == nil || *e.Code != status {
			return fmt.Errorf("error body %s: want {\"error\": non-empty, \"code\": %d}", r.body, status)
		}
	}
	return nil
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// metric returns the value of the sample named name (with its labels, if
// any) in the server's /metrics, failing the test if there is none.
func (ts *testServer) metric(name string) float64 {
	ts.t.Helper()
	body := ts.do("GET", "/metrics", "").want(ts.t, 200).body
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ts.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	ts.t.Fatalf("no metric %s in /metrics", name)
	return 0
}

// storageHealthy reports whether the server's log writes and can reserve
// space again.
func (ts *testServer) storageHealthy() bool { return ts.metric("impressiond_storage_healthy") == 1 }

func (ts *testServer) createCampaign(id string) {
	ts.t.Helper()
	ts.do("POST", "/api/v1/campaigns", `{"id":"`+id+`","name":"Campaign `+id+`","start_time":"`+pastStart+`"}`).want(ts.t, 201)
}

func (ts *testServer) stats(id string) statsJSON {
	ts.t.Helper()
	var s statsJSON
	ts.do("GET", "/api/v1/campaigns/"+id+"/stats", "").want(ts.t, 200).decode(ts.t, &s)
	return s
}

// serveTCP serves a Server with options o on a loopback TCP port, for the
// tests that need real sockets (resets, timeouts, connection limits, a
// browser), and returns it with its address. Unset, the dedup is an exact
// window, the skew a minute and the logger silent; the real clock runs.
func serveTCP(t testing.TB, o Options) (*Server, string) {
	t.Helper()
	srv, ln := serveCountingTCP(t, o)
	return srv, ln.Addr().String()
}

// serveCountingTCP is serveTCP that returns its listener, which counts the
// connections the server accepted.
func serveCountingTCP(t testing.TB, o Options) (*Server, *acceptCounter) {
	t.Helper()
	d, err := sketch.NewExact(sketch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := newServer(testOptions{Options: o, coreOptions: coreOptions{Dedup: d, MaxSkew: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &acceptCounter{Listener: inner, accepted: make(chan struct{}, 4096)}
	serveUntilCleanup(t, srv, ln)
	return srv, ln
}

// acceptCounter is a net.Listener that reports every connection it
// accepts, so that a test waits for the server to hold its connections
// instead of sleeping. It is safe for concurrent use.
type acceptCounter struct {
	net.Listener
	accepted chan struct{} // a value per accepted connection, up to its capacity
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.accepted <- struct{}{}:
		default:
		}
	}
	return c, err
}

// wait returns once n more connections were accepted; it fails the test
// if they were not within 10s. The server's connection limits count a
// connection before it accepts the next one, so a connection dialed after
// wait returns sees the earlier ones counted.
func (l *acceptCounter) wait(t testing.TB, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-l.accepted:
		case <-timeout:
			t.Fatalf("the server accepted %d of %d connections within 10s", i, n)
		}
	}
}

// serveUntilCleanup serves srv on ln in a goroutine; the test's cleanup
// shuts it down, closes ln and waits for Serve to return.
func serveUntilCleanup(t testing.TB, srv *Server, ln net.Listener) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ln.Close() // Shutdown may have closed it already
		<-done
	})
}

// sameJSON compares decoded bodies field by field, a nil slice equal to
// an empty one (a want literal leaves frequency_caps nil; the server
// sends []).
func sameJSON(a, b any) bool { return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b) }

// testFrequency is the frequency window cmd/impressiond gives a server of
// mode: bloom mode's sketch sized for capacity pairs a day.
func testFrequency(mode string, capacity int) sketch.Frequency {
	if mode == "bloom" {
		return sketch.NewFrequencySketch(capacity)
	}
	return sketch.NewFrequencyExact()
}
