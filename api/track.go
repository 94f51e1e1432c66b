package api

import (
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/stats"
)

const (
	// MaxBatch is the largest number of impressions one batch may carry.
	MaxBatch = 10000
	// maxIDBytes bounds user_id and ad_id.
	maxIDBytes = 256
)

var (
	bodyCounted   = []byte(`{"status":"counted","message":"impression counted"}`)
	bodyDuplicate = []byte(`{"status":"duplicate","message":"impression not counted: this user was already counted for this campaign within the dedup window"}`)
)

// trackImpression serves POST /api/v1/impressions.
func (s *Server) trackImpression(ctx *fasthttp.RequestCtx) {
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		malformedJSON(ctx, err)
		return
	}
	var req trackRequest
	if e := req.decode(v); e != nil {
		writeError(ctx, e)
		return
	}
	var last *campaign
	dup, e := s.track(&req, s.now(), &last)
	if e != nil {
		writeError(ctx, e)
		return
	}
	ctx.SetContentType(contentTypeJSON)
	if dup {
		ctx.SetBody(bodyDuplicate)
	} else {
		ctx.SetBody(bodyCounted)
	}
}

// batchBuf holds one batch's decoded items and its response; pooled
// because a full batch is 10,000 items.
type batchBuf struct {
	items []trackRequest
	out   []byte
}

var batchPool = sync.Pool{New: func() any { return new(batchBuf) }}

// trackBatch serves POST /api/v1/impressions/batch. Every item is decoded
// before any is applied, so a type error anywhere rejects the whole batch
// with nothing counted; then items are applied in order, each judged on its
// own.
func (s *Server) trackBatch(ctx *fasthttp.RequestCtx) {
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		malformedJSON(ctx, err)
		return
	}
	arr, err := v.Array()
	if err != nil {
		writeError(ctx, errNotArray)
		return
	}
	switch {
	case len(arr) == 0:
		writeError(ctx, errBatchEmpty)
		return
	case len(arr) > MaxBatch:
		writeError(ctx, errBatchTooLarge)
		return
	}
	buf := batchPool.Get().(*batchBuf)
	defer batchPool.Put(buf)
	buf.items = slicesGrow(buf.items[:0], len(arr))
	for i, item := range arr {
		if e := buf.items[i].decode(item); e != nil {
			if e == errNotObject {
				e = errorf(e.code, "item %d must be a JSON object", i)
			} else {
				e = errorf(e.code, "item %d: %s", i, e.msg)
			}
			writeError(ctx, e)
			return
		}
	}

	now := s.now()
	var counted, dups, rejected int
	var last *campaign
	out := append(buf.out[:0], `,"errors":[`...)
	for i := range buf.items {
		dup, e := s.track(&buf.items[i], now, &last)
		switch {
		case e != nil:
			if rejected > 0 {
				out = append(out, ',')
			}
			rejected++
			out = append(out, `{"index":`...)
			out = strconv.AppendInt(out, int64(i), 10)
			out = append(out, `,"error":`...)
			out = appendJSONString(out, e.msg)
			out = append(out, `,"code":`...)
			out = strconv.AppendInt(out, int64(e.code), 10)
			out = append(out, '}')
		case dup:
			dups++
		default:
			counted++
		}
	}
	out = append(out, "]}"...)
	buf.out = out

	ctx.SetContentType(contentTypeJSON)
	var headBuf [96]byte
	head := append(headBuf[:0], `{"counted":`...)
	head = strconv.AppendInt(head, int64(counted), 10)
	head = append(head, `,"duplicates":`...)
	head = strconv.AppendInt(head, int64(dups), 10)
	head = append(head, `,"rejected":`...)
	head = strconv.AppendInt(head, int64(rejected), 10)
	ctx.Response.ResetBody()
	ctx.Response.AppendBody(head)
	ctx.Response.AppendBody(out)
}

func slicesGrow(s []trackRequest, n int) []trackRequest {
	if cap(s) < n {
		return make([]trackRequest, n)
	}
	return s[:n]
}

// track judges and applies one impression arriving at now: validation
// (422) first, then the campaign lookup (404), then the rules that need the
// campaign, then dedup and counting. last caches the campaign of the
// previous item, since batches usually carry runs of one campaign.
func (s *Server) track(r *trackRequest, now time.Time, last **campaign) (dup bool, e *apiError) {
	switch {
	case len(r.campaignID) == 0:
		return false, errCampaignIDRequired
	case len(r.userID) == 0:
		return false, errUserIDRequired
	case len(r.userID) > maxIDBytes:
		return false, errUserIDTooLong
	case len(r.adID) > maxIDBytes:
		return false, errAdIDTooLong
	}
	at := now
	if r.hasTS {
		ts, ok := parseTime(r.timestamp)
		if !ok {
			return false, errTimestampFormat
		}
		if ts.Sub(now) > s.maxSkew {
			return false, s.errTooFarAhead
		}
		// Within the skew, a future timestamp is a clock drift: take the
		// time of receipt.
		if ts.Before(now) {
			at = ts
		}
	}
	c := *last
	if c == nil || c.id != string(r.campaignID) {
		if c = s.campaigns.get(r.campaignID); c == nil {
			return false, errCampaignNotFound
		}
		*last = c
	}
	if at.Before(c.start) {
		return false, errBeforeStart
	}
	if s.dedup.TestAndAdd(r.campaignID, r.userID, now) {
		return true, nil
	}
	c.counter.Add(stats.Minute(at), stats.Minute(now))
	return false, nil
}
