package main

import (
	"errors"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fasthttp"
)

// openLoop sends a phase's requests with fasthttp's client instead of
// vegeta's net/http one, for the frequency workload's sub-millisecond
// target. Measured at 5,000 requests a second with 11 KB answers, from one
// core against a fasthttp server on the other that only replies, vegeta's
// client alone has a p99 of 2 to 25 ms: its per-connection read and write
// goroutines and their hand-offs cost more than the request. fasthttp's
// client writes and reads on the calling goroutine; per request it
// allocates only the result and the copy of the answer the checker keeps.
//
// It is open loop: request k is due at the time the pacer gives it, and
// its latency runs from then, not from when a connection was free, so a
// stall of the server counts in every request it delayed (no coordinated
// omission). The one delay not counted is the load generator's own timer
// waking late: Go rounds sleeps under a millisecond up to the poller's
// 1 ms tick when the process is idle, which would otherwise add up to a
// millisecond to requests that never waited for the server. So a request
// is timed from the later of its due time and the end of the pacer's last
// sleep. At most conns requests are in flight, one a connection; results
// come out in completion order, as vegeta's do.
type openLoop struct {
	tr      vegeta.Targeter
	pacer   vegeta.Pacer
	dur     time.Duration // 0: until the pacer stops
	conns   int
	timeout time.Duration
	client  *fasthttp.HostClient
	stop    chan struct{}
	stopped atomic.Bool
}

// errOpenLoopTarget is returned for a target URL fasthttp's host client
// cannot send: it talks to one plain-HTTP host.
var errOpenLoopTarget = errors.New("openloop: the target must be an http:// URL")

func newOpenLoop(target string, tr vegeta.Targeter, pacer vegeta.Pacer, dur time.Duration, conns int, timeout time.Duration, bodySize int) (*openLoop, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, errOpenLoopTarget
	}
	return &openLoop{
		tr: tr, pacer: pacer, dur: dur, conns: max(conns, 1), timeout: timeout,
		client: &fasthttp.HostClient{
			Addr:               u.Host,
			MaxConns:           max(conns, 1),
			MaxConnWaitTimeout: timeout,
			ReadTimeout:        timeout,
			WriteTimeout:       timeout,
			ReadBufferSize:     16 << 10,
			WriteBufferSize:    max(4<<10, bodySize+1024),
		},
		stop: make(chan struct{}),
	}, nil
}

// Stop ends the attack after the requests in flight.
func (o *openLoop) Stop() {
	if o.stopped.CompareAndSwap(false, true) {
		close(o.stop)
	}
}

// Attack starts sending and returns the results; the channel closes when
// the duration or the pacer ends, or Stop is called, and every request
// sent has its result.
func (o *openLoop) Attack() <-chan *vegeta.Result {
	due := make(chan dueHit, o.conns)
	out := make(chan *vegeta.Result, 4*o.conns)
	began := time.Now()
	var wg sync.WaitGroup
	for range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.work(began, due, out)
		}()
	}
	go func() {
		defer func() {
			close(due)
			wg.Wait()
			close(out)
		}()
		o.pace(began, due)
	}()
	return out
}

// dueHit is request hits, handed to a worker: not timed from before
// woke, when the pacer's last sleep ended.
type dueHit struct {
	hits uint64
	woke time.Time
}

// pace hands each request's sequence number to a worker at its due time.
// A worker picks it up at once when one is free; otherwise it waits, and
// its latency (measured from the due time) grows.
func (o *openLoop) pace(began time.Time, due chan<- dueHit) {
	var woke time.Time
	for hits := uint64(0); ; hits++ {
		elapsed := time.Since(began)
		if o.dur > 0 && elapsed >= o.dur {
			return
		}
		wait, stop := o.pacer.Pace(elapsed, hits)
		if stop {
			return
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				woke = time.Now() // when this goroutine runs again, not when the timer fired
			case <-o.stop:
				t.Stop()
				return
			}
		}
		select {
		case due <- dueHit{hits, woke}:
		case <-o.stop:
			return
		}
	}
}

// dueAt returns when request hits was due: where the pacer's rate puts it
// after began. Pacers that give no rate (as fast as possible) make every
// request due when it is handed over, which work reads as time.Now.
func (o *openLoop) dueAt(began time.Time, hits uint64) (time.Time, bool) {
	r, ok := o.pacer.(vegeta.Rate)
	if !ok || r.Freq <= 0 || r.Per <= 0 {
		return time.Time{}, false
	}
	return began.Add(time.Duration(float64(hits) * float64(r.Per) / float64(r.Freq))), true
}

func (o *openLoop) work(began time.Time, due <-chan dueHit, out chan<- *vegeta.Result) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	var t vegeta.Target
	for d := range due {
		at, ok := o.dueAt(began, d.hits)
		if !ok {
			at = time.Now()
		}
		// Timestamp keeps the due time; the latency starts no earlier
		// than the pacer's wake-up.
		start := at
		if d.woke.After(start) {
			start = d.woke
		}
		r := &vegeta.Result{Attack: "impressiond", Seq: d.hits, Timestamp: at}
		t = vegeta.Target{}
		if err := o.tr(&t); err != nil {
			r.Error = err.Error()
			out <- r
			continue
		}
		r.Method, r.URL = t.Method, t.URL
		req.Reset()
		req.Header.SetMethod(t.Method)
		req.SetRequestURI(t.URL)
		for k, vs := range t.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		req.SetBodyRaw(t.Body)
		resp.Reset()
		err := o.client.DoTimeout(req, resp, o.timeout)
		r.Latency = time.Since(start)
		r.BytesOut = uint64(len(t.Body))
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Code = uint16(resp.StatusCode())
			r.Body = append([]byte(nil), resp.Body()...)
			r.BytesIn = uint64(len(r.Body))
		}
		out <- r
	}
}
