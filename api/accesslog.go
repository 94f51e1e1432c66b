package api

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// accessEntry is one request, copied out of the request context: the
// context is reused once the handler returns.
type accessEntry struct {
	method, path, remote string
	status               int
	took                 time.Duration
}

// accessLog writes one line per request from its own goroutine. Handlers
// hand entries over a buffered channel and never wait: when the writer
// falls behind, entries are dropped and counted, so logging cannot slow
// ingestion. It is safe for concurrent use; stop ends the writer after it
// has written what was queued.
type accessLog struct {
	ch      chan accessEntry // never closed: a late request must not panic
	dropped atomic.Uint64
	stopCh  chan struct{}
	done    chan struct{}
}

func newAccessLog(log *slog.Logger) *accessLog {
	a := &accessLog{ch: make(chan accessEntry, 4096), stopCh: make(chan struct{}), done: make(chan struct{})}
	write := func(e accessEntry) {
		log.Info("access", "method", e.method, "path", e.path, "status", e.status,
			"duration", e.took, "remote", e.remote)
	}
	go func() {
		defer close(a.done)
		for {
			select {
			case e := <-a.ch:
				write(e)
			case <-a.stopCh:
				for {
					select {
					case e := <-a.ch:
						write(e)
					default:
						if n := a.dropped.Load(); n > 0 {
							log.Warn("access log entries dropped because the writer fell behind", "dropped", n)
						}
						return
					}
				}
			}
		}
	}()
	return a
}

func (a *accessLog) wrap(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h(ctx)
		e := accessEntry{
			method: string(ctx.Method()),
			path:   string(ctx.Path()),
			remote: ctx.RemoteIP().String(),
			status: ctx.Response.StatusCode(),
			took:   time.Since(start),
		}
		select {
		case a.ch <- e:
		default:
			a.dropped.Add(1)
		}
	}
}

// stop writes what is queued and ends the writer.
func (a *accessLog) stop() {
	close(a.stopCh)
	<-a.done
}
