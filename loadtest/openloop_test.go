package main

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fasthttp"
)

// serveOpenLoop starts a fasthttp server on a kernel-chosen port that
// answers each request with its seq query value, after stall(seq).
func serveOpenLoop(t *testing.T, stall func(seq int) time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		seq, _ := strconv.Atoi(string(ctx.QueryArgs().Peek("seq")))
		time.Sleep(stall(seq))
		ctx.SetBodyString("seq " + strconv.Itoa(seq) + " " + string(ctx.PostBody()))
	}}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	return "http://" + ln.Addr().String()
}

func seqTargeter(base string) vegeta.Targeter {
	var n atomic.Uint64
	return func(t *vegeta.Target) error {
		k := n.Add(1) - 1
		t.Method, t.URL, t.Body = "POST", base+"/x?seq="+strconv.FormatUint(k, 10), []byte("b"+strconv.FormatUint(k, 10))
		return nil
	}
}

// TestOpenLoopSendsAtRate: a fixed rate for a duration sends rate·duration
// requests, each due at its place in the schedule, and hands back every
// answer as its own copy, still intact after the connections answered
// others.
func TestOpenLoopSendsAtRate(t *testing.T) {
	base := serveOpenLoop(t, func(int) time.Duration { return 0 })
	ol, err := newOpenLoop(base, seqTargeter(base), vegeta.Rate{Freq: 200, Per: time.Second}, 500*time.Millisecond, 4, 5*time.Second, 64)
	if err != nil {
		t.Fatal(err)
	}
	results := map[uint64]*vegeta.Result{}
	for r := range ol.Attack() {
		if r.Code != 200 || r.Error != "" {
			t.Fatalf("result %d: %d %q", r.Seq, r.Code, r.Error)
		}
		if results[r.Seq] != nil {
			t.Fatalf("seq %d twice", r.Seq)
		}
		results[r.Seq] = r
	}
	if len(results) != 100 {
		t.Fatalf("%d results, want 100 (200/s for 500ms)", len(results))
	}
	for seq := uint64(1); seq < 100; seq++ {
		r := results[seq]
		if r == nil {
			t.Fatalf("no result for seq %d", seq)
		}
		if d := r.Timestamp.Sub(results[seq-1].Timestamp); d != 5*time.Millisecond {
			t.Fatalf("seq %d due %v after seq %d, want 5ms", seq, d, seq-1)
		}
	}
	for _, r := range results {
		k := r.URL[len(base+"/x?seq="):]
		if want := "seq " + k + " b" + k; string(r.Body) != want || r.BytesIn != uint64(len(want)) || r.BytesOut != uint64(len("b"+k)) {
			t.Fatalf("result for %s: body %q (%d bytes in, %d out), want %q", r.URL, r.Body, r.BytesIn, r.BytesOut, want)
		}
	}
}

// TestOpenLoopCountsQueueing: with one connection and a server that stalls
// the first request 200 ms, the requests due meanwhile wait for it, and
// their latencies (from their due times) show the wait, as an open-loop
// measurement must.
func TestOpenLoopCountsQueueing(t *testing.T) {
	base := serveOpenLoop(t, func(seq int) time.Duration {
		if seq == 0 {
			return 200 * time.Millisecond
		}
		return 0
	})
	ol, err := newOpenLoop(base, seqTargeter(base), vegeta.Rate{Freq: 100, Per: time.Second}, 300*time.Millisecond, 1, 5*time.Second, 64)
	if err != nil {
		t.Fatal(err)
	}
	var due []time.Time
	lat := map[uint64]time.Duration{}
	for r := range ol.Attack() {
		if r.Code != 200 {
			t.Fatalf("result %d: %d %q", r.Seq, r.Code, r.Error)
		}
		lat[r.Seq] = r.Latency
		due = append(due, r.Timestamp)
	}
	if len(lat) != 30 {
		t.Fatalf("%d results, want 30", len(lat))
	}
	// Request 1 was due 10 ms after request 0 and could start only when
	// request 0's 200 ms ended.
	if lat[1] < 150*time.Millisecond {
		t.Fatalf("request 1 latency %v: the wait behind the stalled request is missing", lat[1])
	}
	// Due times follow the schedule, 10 ms apart, whatever the stall.
	for i := 1; i < len(due); i++ {
		if d := due[i].Sub(due[i-1]); d != 10*time.Millisecond {
			t.Fatalf("results %d and %d due %v apart, want 10ms", i-1, i, d)
		}
	}
}

// TestOpenLoopStop: Stop ends an attack early, and every request sent has
// its result.
func TestOpenLoopStop(t *testing.T) {
	base := serveOpenLoop(t, func(int) time.Duration { return 0 })
	ol, err := newOpenLoop(base, seqTargeter(base), vegeta.Rate{Freq: 1000, Per: time.Second}, time.Hour, 2, 5*time.Second, 64)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r := range ol.Attack() {
		if r.Code != 200 {
			t.Fatalf("result %d: %d %q", r.Seq, r.Code, r.Error)
		}
		if n++; n == 50 {
			ol.Stop()
			ol.Stop() // twice is harmless
		}
	}
	// After Stop come at most the results already queued (4 a connection),
	// the requests in flight (one a connection) and those handed over but
	// not yet picked up (one a connection).
	if most := 50 + 6*2; n < 50 || n > most {
		t.Fatalf("%d results after Stop at 50 with 2 connections, want at most %d", n, most)
	}
}

func TestOpenLoopRejectsTarget(t *testing.T) {
	for _, target := range []string{"https://127.0.0.1:1", "127.0.0.1:8080", "http://"} {
		if _, err := newOpenLoop(target, nil, vegeta.Rate{Freq: 1, Per: time.Second}, time.Second, 1, time.Second, 0); err != errOpenLoopTarget {
			t.Errorf("newOpenLoop(%q): %v, want errOpenLoopTarget", target, err)
		}
	}
}
