package api

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/tracker"
)

const (
	// MaxBatch is the largest number of impressions one batch may carry.
	MaxBatch = 10000
)

var (
	bodyCounted   = []byte(`{"status":"counted","message":"impression counted"}`)
	bodyDuplicate = []byte(`{"status":"duplicate","message":"impression not counted: this user was already counted for this campaign within the dedup window"}`)
)

// scanners holds the scanners of single impressions. The request decoded
// may point into its scanner, so the scanner goes back only once the
// request is done with.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

// trackImpression serves POST /api/v1/impressions.
func (s *Server) trackImpression(ctx *fasthttp.RequestCtx) {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding)) > 0 {
		s.decodeBody(ctx, s.trackImpression, func(e *apiError) {
			if e.code == fasthttp.StatusServiceUnavailable {
				s.countSingle(ctx, singleBodyBusy)
			} else {
				s.countSingle(ctx, singleBodyRefused)
			}
			writeError(ctx, e)
		})
		return
	}
	sc := scanners.Get().(*scanner)
	defer scanners.Put(sc)
	var req trackRequest
	if e := sc.decodeTrack(ctx.PostBody(), &req); e != nil {
		s.countSingle(ctx, singleRejected)
		writeError(ctx, e)
		return
	}
	dup, err := s.core.Track(&req)
	if err != nil {
		e := s.apiErrorOf(err)
		switch {
		case e == errDedupLimit:
			s.countSingle(ctx, singleDedupLimit)
			s.setRetryAfter(ctx)
		case e.code == fasthttp.StatusServiceUnavailable:
			s.countSingle(ctx, singleUnavailable)
		default:
			s.countSingle(ctx, singleRejected)
		}
		writeError(ctx, e)
		return
	}
	ctx.SetContentType(contentTypeJSON)
	if dup {
		s.countSingle(ctx, singleDuplicate)
		ctx.SetBody(bodyDuplicate)
	} else {
		s.countSingle(ctx, singleCounted)
		ctx.SetBody(bodyCounted)
	}
}

// batchBuf holds one batch's decoded items, the scanner they may point
// into, and the response; pooled because a full batch is 10,000 items.
type batchBuf struct {
	sc       scanner
	items    []trackRequest
	outcomes []tracker.Outcome
	out      []byte
}

var batchPool = sync.Pool{New: func() any { return new(batchBuf) }}

// trackBatch serves POST /api/v1/impressions/batch. Every item is decoded
// before any is applied, so a type error anywhere rejects the whole batch
// with nothing counted; then items are applied in order, each judged on its
// own.
func (s *Server) trackBatch(ctx *fasthttp.RequestCtx) {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding)) > 0 {
		s.decodeBody(ctx, s.trackBatch, func(e *apiError) { writeError(ctx, e) })
		return
	}
	buf := batchPool.Get().(*batchBuf)
	defer batchPool.Put(buf)
	if e := buf.sc.decodeBatch(ctx.PostBody(), &buf.items); e != nil {
		writeError(ctx, e)
		return
	}

	buf.outcomes = slices.Grow(buf.outcomes[:0], len(buf.items))[:len(buf.items)]
	if err := s.core.TrackBatch(buf.items, buf.outcomes); err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	var t batchTally
	buf.out = append(buf.out[:0], `,"errors":[`...)
	for i, o := range buf.outcomes {
		var e *apiError
		if o.Err != nil {
			e = s.apiErrorOf(o.Err)
		}
		buf.out = t.add(buf.out, i, o.Dup, e)
	}
	buf.out = append(buf.out, "]}"...)
	s.writeBatch(ctx, &t, buf.out)
}

// batchTally counts a batch's outcomes while its errors are appended.
// rejected includes limited, the items refused at the dedup limit.
type batchTally struct{ counted, dups, rejected, limited int }

// add tallies item i and appends its error, if any, to out.
func (t *batchTally) add(out []byte, i int, dup bool, e *apiError) []byte {
	switch {
	case e != nil:
		if t.rejected > 0 {
			out = append(out, ',')
		}
		t.rejected++
		if e == errDedupLimit {
			t.limited++
		}
		out = append(out, `{"index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"error":`...)
		out = appendJSONString(out, e.msg)
		out = append(out, `,"code":`...)
		out = strconv.AppendInt(out, int64(e.code), 10)
		out = append(out, '}')
	case dup:
		t.dups++
	default:
		t.counted++
	}
	return out
}

// writeBatch counts the batch in the metrics and writes its response: the
// tallies, then errors, which holds `,"errors":[...]}`.
func (s *Server) writeBatch(ctx *fasthttp.RequestCtx, t *batchTally, errors []byte) {
	s.metrics.counted.add(ctx, uint64(t.counted))
	s.metrics.duplicate.add(ctx, uint64(t.dups))
	s.metrics.rejected.add(ctx, uint64(t.rejected-t.limited))
	if t.limited > 0 {
		s.metrics.dedupLimit.add(ctx, uint64(t.limited))
		s.setRetryAfter(ctx)
	}
	ctx.SetContentType(contentTypeJSON)
	var headBuf [96]byte
	head := append(headBuf[:0], `{"counted":`...)
	head = strconv.AppendInt(head, int64(t.counted), 10)
	head = append(head, `,"duplicates":`...)
	head = strconv.AppendInt(head, int64(t.dups), 10)
	head = append(head, `,"rejected":`...)
	head = strconv.AppendInt(head, int64(t.rejected), 10)
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(head)
	ctx.Response.AppendBody(errors)
}

// setRetryAfter sets Retry-After to the whole seconds until the dedup
// window next frees room, at least 1.
func (s *Server) setRetryAfter(ctx *fasthttp.RequestCtx) {
	d := s.core.RetryAfter()
	secs := max(1, int64((d+time.Second-1)/time.Second))
	var buf [20]byte
	ctx.Response.Header.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], secs, 10))
}
