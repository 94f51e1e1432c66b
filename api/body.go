package api

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
)

// Request bodies are streamed (fasthttp.Server.StreamRequestBody): fasthttp
// reads the headers and at most the first readAhead bytes of a body, then
// the handler below reads the rest into a buffer that grows only as bytes
// arrive, each growth reserved first from one budget shared by all
// requests (Options.MaxBodyMemory). Without streaming fasthttp allocates
// the whole declared Content-Length before a byte of the body has come, so
// that a client claiming 4 MiB and sending 100 bytes pins 4 MiB per
// connection.
//
// The memory bodies in flight hold is therefore at most MaxBodyMemory (the
// buffers the budget admits) plus readAhead per connection (fasthttp's own
// read-ahead, at most MaxConns of them). A request whose next growth the
// budget cannot admit is answered 503 and its connection closed.

// readAhead is what fasthttp reads of a streamed body before the handler
// runs (readBodyWithStreaming reads min(Content-Length, 8 KiB)); it is also
// the size of the first, pooled, buffer a body is read into, so a body that
// fits costs no allocation.
const readAhead = 8 << 10

// bodyBudget is a semaphore of bytes: the buffers request bodies are read
// into are reserved from it before they are allocated and returned once the
// request is answered. It is safe for concurrent use.
type bodyBudget struct {
	max     int64
	used    atomic.Int64  // bytes reserved now; never above max
	peak    atomic.Int64  // the most used has been
	refused atomic.Uint64 // requests answered 503 for want of budget
}

// reserve takes n bytes if they fit under max and reports whether it did.
// used never exceeds max, not even for an instant.
func (b *bodyBudget) reserve(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			for p := b.peak.Load(); u+n > p && !b.peak.CompareAndSwap(p, u+n); p = b.peak.Load() {
			}
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

// bodyBufs holds readAhead-sized buffers, the first buffer of every body.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, readAhead); return &b }}

var errBodyBudget = newError(fasthttp.StatusServiceUnavailable,
	"server is at its limit of request body memory, retry later")

// errBodyOverBudget and errBodyOverLimit end a body read that the budget
// cannot admit or that is longer than Options.MaxBodySize.
var (
	errBodyOverBudget = errors.New("request body memory budget exhausted")
	errBodyOverLimit  = errors.New("request body larger than the limit")
)

// body is a request body read into memory reserved from the budget.
type body struct {
	b      []byte
	pooled *[]byte // the pool's buffer, while b is still it
	held   int64   // bytes reserved: cap of the buffer held
}

// readBodies reads every streamed request body into memory before h runs,
// within Options.MaxBodySize and the shared budget, and hands it to h as
// the request's ordinary body (ctx.PostBody). Requests whose body is
// already in memory (a handler called directly) go straight to h.
func (s *Server) readBodies(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.Request.IsBodyStream() {
			h(ctx)
			return
		}
		if ctx.Request.Header.ContentLength() == 0 {
			ctx.Request.SetBodyRaw(nil) // no stream left for PostBody to warn about
			h(ctx)
			return
		}
		var bd body
		err := s.readBody(ctx, &bd)
		switch {
		case err == nil:
		case errors.Is(err, errBodyOverLimit):
			s.refuseBody(ctx, s.errBodyTooLarge)
			return
		case errors.Is(err, errBodyOverBudget):
			s.bodyMem.refused.Add(1)
			s.refuseBody(ctx, errBodyBudget)
			return
		default: // timeout or a client gone mid-body
			s.bodyDone(&bd)
			ctx.SetConnectionClose()
			s.handleServerError(ctx, err)
			return
		}
		ctx.Request.SetBodyRaw(bd.b)
		h(ctx)
		// Handlers copy what they keep (fasthttp's rule), so the buffer is
		// free once h returns.
		ctx.Request.SetBodyRaw(nil)
		s.bodyDone(&bd)
	}
}

// refuseBody answers e, drains what the client still sends, and closes
// the connection: the unread rest of the body cannot be skipped.
func (s *Server) refuseBody(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Request.SetBodyRaw(nil)
	s.rejectAndDrain(ctx, e)
	ctx.SetConnectionClose()
}

// readBody reads the request's body stream into bd, growing its buffer as
// bytes arrive (doubling, up to the declared length), each growth reserved
// from the budget before it is allocated. On error bd holds nothing.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, bd *body) error {
	n := ctx.Request.Header.ContentLength() // -1: chunked
	limit := s.maxBody
	if n > limit {
		return errBodyOverLimit
	}
	want := n
	if n < 0 {
		want = limit + 1 // one more byte shows a chunked body is too long
	}
	if !s.bodyMem.reserve(readAhead) {
		return errBodyOverBudget
	}
	bd.pooled = bodyBufs.Get().(*[]byte)
	bd.b, bd.held = (*bd.pooled)[:0], readAhead
	r := ctx.Request.BodyStream()
	for len(bd.b) < want {
		if len(bd.b) == cap(bd.b) {
			if err := s.growBody(bd, min(2*cap(bd.b), want)); err != nil {
				s.bodyDone(bd)
				return err
			}
		}
		m, err := r.Read(bd.b[len(bd.b):min(cap(bd.b), want)])
		bd.b = bd.b[:len(bd.b)+m]
		if err == io.EOF && n < 0 {
			break
		}
		if err == io.EOF && len(bd.b) < want {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			s.bodyDone(bd)
			return err
		}
	}
	if len(bd.b) > limit {
		s.bodyDone(bd)
		return errBodyOverLimit
	}
	return nil
}

// growBody moves bd into a buffer of capacity c, reserving it first; the
// old buffer's reservation is returned once its bytes are copied.
func (s *Server) growBody(bd *body, c int) error {
	if !s.bodyMem.reserve(int64(c)) {
		return errBodyOverBudget
	}
	b := make([]byte, len(bd.b), c)
	copy(b, bd.b)
	s.bodyMem.release(bd.held)
	if bd.pooled != nil {
		*bd.pooled = bd.b[:0]
		bodyBufs.Put(bd.pooled)
		bd.pooled = nil
	}
	bd.b, bd.held = b, int64(c)
	return nil
}

// bodyDone returns bd's buffer and its reservation.
func (s *Server) bodyDone(bd *body) {
	if bd.pooled != nil {
		*bd.pooled = bd.b[:0]
		bodyBufs.Put(bd.pooled)
	}
	s.bodyMem.release(bd.held)
	*bd = body{}
}
