package api

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/store"
)

// opLog records the writes and fsyncs made to the log's segment files, in
// order.
type opLog struct {
	mu  sync.Mutex
	ops []fileOp
	// While gate is set, Sync signals entered and waits for gate to close
	// before it fsyncs: the test holds the fsync in flight.
	gate    chan struct{}
	entered chan struct{}
}

// hold makes the next fsyncs wait for release.
func (l *opLog) hold() (entered <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gate, l.entered = make(chan struct{}), make(chan struct{}, 1)
	return l.entered
}

func (l *opLog) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gate != nil {
		close(l.gate)
		l.gate = nil
	}
}

type fileOp struct {
	sync bool
	data []byte // a write's bytes
}

// syncedAfter reports whether some write containing b was followed by a
// successful fsync of the same file set.
func (l *opLog) syncedAfter(b []byte) (written, synced bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range l.ops {
		switch {
		case !op.sync && bytes.Contains(op.data, b):
			written = true
		case op.sync && written:
			return true, true
		}
	}
	return written, false
}

type recordingFile struct {
	*os.File
	log *opLog
}

func (f recordingFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.log.mu.Lock()
	f.log.ops = append(f.log.ops, fileOp{data: append([]byte(nil), p[:n]...)})
	f.log.mu.Unlock()
	return n, err
}

func (f recordingFile) Sync() error {
	f.log.mu.Lock()
	gate, entered := f.log.gate, f.log.entered
	f.log.mu.Unlock()
	if gate != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-gate
	}
	err := f.File.Sync()
	if err == nil {
		f.log.mu.Lock()
		f.log.ops = append(f.log.ops, fileOp{sync: true})
		f.log.mu.Unlock()
	}
	return err
}

// TestCampaignFsyncedBefore201: a created campaign survives any crash, so
// by the time its creation is answered 201 its record has been written and
// fsync'd, even when impressions are fsync'd only every FsyncInterval.
func TestCampaignFsyncedBefore201(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	ops := &opLog{}
	testHookOpenLogFile = func(p string) (store.File, error) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		return recordingFile{f, ops}, nil
	}
	defer func() { testHookOpenLogFile = nil }()
	for _, fsync := range []time.Duration{0, time.Hour} {
		t.Run("fsync-interval="+fsync.String(), func(t *testing.T) {
			defer ops.release() // never leave an fsync held, or Shutdown hangs
			a := durableServer(t, "exact", t.TempDir(), &fakeClock{t: testNow}, fsync)
			for _, id := range []string{"first-campaign", "second-campaign"} {
				entered := ops.hold()
				answered := make(chan int, 1)
				go func() {
					answered <- postStatus(a, "/api/v1/campaigns", `{"id":"`+id+`","name":"C","start_time":"`+pastStart+`"}`)
				}()
				var status int
				select {
				case status = <-answered: // answered with no fsync in flight
				case <-entered:
					// An fsync is held in flight: the creation must not be
					// answered before it is done. A wrong answer comes at
					// once; the wait only bounds how long we look for it.
					select {
					case status = <-answered:
						t.Fatalf("campaign %s answered %d while its fsync was still in flight", id, status)
					case <-time.After(100 * time.Millisecond):
					}
					ops.release()
					status = <-answered
				}
				ops.release()
				if status != 201 {
					t.Fatalf("create %s: got %d, want 201", id, status)
				}
				if written, synced := ops.syncedAfter([]byte(id)); !written || !synced {
					t.Fatalf("campaign %s answered 201: record written %v, fsync'd after %v; want both", id, written, synced)
				}
			}
		})
	}
}

// postStatus posts body to path and returns the status, 0 if the request
// failed; unlike do, it may run outside the test's goroutine.
func postStatus(ts *testServer, path, body string) int {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://impressiond" + path)
	req.SetBodyString(body)
	if err := ts.client.Do(req, resp); err != nil {
		return 0
	}
	return resp.StatusCode()
}
