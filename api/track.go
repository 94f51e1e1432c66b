package api

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
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
	dup, e := s.trackOne(&req)
	if e != nil {
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

// trackOne judges, dedups and counts one impression in whichever store
// the server keeps: the decision of POST /api/v1/impressions and of the
// pixel alike.
func (s *Server) trackOne(req *trackRequest) (dup bool, e *apiError) {
	if p := s.persist; p != nil {
		return s.trackDurable(p, req)
	}
	if s.remote != nil {
		return s.trackRemote(req)
	}
	var last *campaign
	return s.track(req, s.now(), &last, nil)
}

// trackDurable is track on a durable server: the impression's log record
// is appended before the gate is released (see persister).
func (s *Server) trackDurable(p *persister, req *trackRequest) (bool, *apiError) {
	if err := p.log.Err(); err != nil {
		return false, errStorage(err)
	}
	// The record's place on disk is promised before anything changes, so
	// a full disk refuses the impression rather than lose it.
	reserved := store.ImpressionSize(len(req.userID))
	if err := p.log.Reserve(reserved); err != nil {
		return false, errStorage(err)
	}
	b := p.batch()
	defer p.batches.Put(b)
	var last *campaign
	p.gate.RLock()
	dup, e := s.track(req, s.now(), &last, b)
	err := p.log.AppendReserved(b, reserved)
	p.gate.RUnlock()
	if err != nil {
		return false, errNotDurable(err)
	}
	return dup, e
}

// batchBuf holds one batch's decoded items, the scanner they may point
// into, and the response; pooled because a full batch is 10,000 items.
type batchBuf struct {
	sc    scanner
	items []trackRequest
	out   []byte
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

	if s.remote != nil {
		s.trackBatchRemote(ctx, buf)
		return
	}
	var rec *store.Batch
	var reserved int
	if p := s.persist; p != nil {
		if err := p.log.Err(); err != nil {
			writeError(ctx, errStorage(err))
			return
		}
		for i := range buf.items {
			reserved += store.ImpressionSize(len(buf.items[i].userID))
		}
		if err := p.log.Reserve(reserved); err != nil {
			writeError(ctx, errStorage(err))
			return
		}
		rec = p.batch()
		defer p.batches.Put(rec)
		p.gate.RLock()
	}
	now := s.now()
	var t batchTally
	var last *campaign
	buf.out = append(buf.out[:0], `,"errors":[`...)
	for i := range buf.items {
		dup, e := s.track(&buf.items[i], now, &last, rec)
		buf.out = t.add(buf.out, i, dup, e)
	}
	buf.out = append(buf.out, "]}"...)
	if p := s.persist; p != nil {
		err := p.log.AppendReserved(rec, reserved)
		p.gate.RUnlock()
		if err != nil {
			writeError(ctx, errNotDurable(err))
			return
		}
	}
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

// trackBatchRemote is trackBatch in shared-store mode: every item is judged,
// then the valid ones go to Redis together.
func (s *Server) trackBatchRemote(ctx *fasthttp.RequestCtx, buf *batchBuf) {
	results := make([]*apiError, len(buf.items))
	if e := s.batchRemote(buf.items, s.now(), results); e != nil {
		writeError(ctx, e)
		return
	}
	var t batchTally
	buf.out = append(buf.out[:0], `,"errors":[`...)
	for i, e := range results {
		dup := e == errDuplicate
		if dup {
			e = nil
		}
		buf.out = t.add(buf.out, i, dup, e)
	}
	buf.out = append(buf.out, "]}"...)
	s.writeBatch(ctx, &t, buf.out)
}

// track judges and applies one impression arriving at now (see judge),
// then dedups and counts it. A counted impression's log record is added
// to rec, unless rec is nil.
func (s *Server) track(r *trackRequest, now time.Time, last **campaign, rec *store.Batch) (dup bool, e *apiError) {
	c, at, e := s.judge(r, now, last)
	if e != nil {
		return false, e
	}
	var key sketch.Key
	switch {
	case s.keyed != nil:
		key = s.hasher.Key(r.campaignID, r.userID)
		dup = s.keyed.TestAndAddKey(key, now)
	case s.limited != nil:
		// A pair refused at the bound was not recorded: it is neither
		// counted nor logged, and a retry is judged afresh.
		var err error
		if dup, err = s.limited.TestAndAddLimited(r.campaignID, r.userID, now); err != nil {
			return false, errDedupLimit
		}
	default:
		dup = s.dedup.TestAndAdd(r.campaignID, r.userID, now)
	}
	if dup {
		return true, nil
	}
	m := stats.Minute(at)
	c.counter.Add(m, stats.Minute(now))
	if rec != nil {
		var user []byte
		if s.keyed == nil {
			user = r.userID // exact mode replays the pair's bytes
		}
		rec.AddImpression(c.index, now, m, key.Lo, key.Hi, user)
	}
	return false, nil
}

// limitedDeduper is a window that bounds the pairs it holds: Exact, whose
// refusals (sketch.ErrFull) are answered 503 with a Retry-After.
type limitedDeduper interface {
	TestAndAddLimited(campaign, user []byte, now time.Time) (seen bool, err error)
	RetryAfter(now time.Time) time.Duration
}

// errDedupLimit answers an impression of a new pair while the window holds
// -dedup-max-pairs pairs: nothing was counted or recorded.
var errDedupLimit = newError(fasthttp.StatusServiceUnavailable,
	"dedup limit reached: the dedup window holds -dedup-max-pairs distinct pairs; this impression was not counted, retry after Retry-After seconds")

// setRetryAfter sets Retry-After to the whole seconds until the dedup
// window next frees room, at least 1.
func (s *Server) setRetryAfter(ctx *fasthttp.RequestCtx) {
	d := s.limited.RetryAfter(s.now())
	secs := max(1, int64((d+time.Second-1)/time.Second))
	var buf [20]byte
	ctx.Response.Header.SetBytesV("Retry-After", strconv.AppendInt(buf[:0], secs, 10))
}

// judge validates one impression arriving at now and finds its campaign:
// validation (422) first, then the campaign lookup (404), then the rules
// that need the campaign. It returns the campaign and the impression's
// event time. last caches the campaign of the previous item, since batches
// usually carry runs of one campaign.
func (s *Server) judge(r *trackRequest, now time.Time, last **campaign) (c *campaign, at time.Time, e *apiError) {
	switch {
	case len(r.campaignID) == 0:
		return nil, at, errCampaignIDRequired
	case len(r.userID) == 0:
		return nil, at, errUserIDRequired
	case len(r.userID) > maxIDBytes:
		return nil, at, errUserIDTooLong
	case len(r.adID) > maxIDBytes:
		return nil, at, errAdIDTooLong
	case !cleanID(r.userID):
		return nil, at, errUserIDChars
	case !cleanID(r.adID):
		return nil, at, errAdIDChars
	}
	at = now
	if r.hasTS {
		ts, ok := parseTime(r.timestamp)
		if !ok {
			return nil, at, errTimestampFormat
		}
		if ts.Sub(now) > s.maxSkew {
			return nil, at, s.errTooFarAhead
		}
		// Within the skew, a future timestamp is a clock drift: take the
		// time of receipt.
		if ts.Before(now) {
			at = ts
		}
	}
	c = *last
	if c == nil || c.id != string(r.campaignID) {
		if s.remote != nil {
			if c, e = s.remoteCampaign(r.campaignID); e != nil {
				return nil, at, e
			}
		} else {
			c = s.campaigns.get(r.campaignID)
		}
		if c == nil {
			return nil, at, errCampaignNotFound
		}
		*last = c
	}
	if at.Before(c.start) {
		return nil, at, errBeforeStart
	}
	return c, at, nil
}

// cleanID reports whether an id is valid UTF-8 without control characters
// (C0, DEL, C1). Ids end up in logs, exports and dashboards, where such
// bytes do damage; and two byte strings that render alike should not count
// as two users.
func cleanID(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && size == 1) || (r >= 0x80 && r < 0xa0) {
			return false
		}
		i += size
	}
	return true
}
