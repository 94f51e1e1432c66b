package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
	"github.com/impressiond/impressiond/store/redisstore"
)

const maxNameRunes = 200

// createCampaign serves POST /api/v1/campaigns.
func (s *Server) createCampaign(ctx *fasthttp.RequestCtx) {
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		malformedJSON(ctx, err)
		return
	}
	var req createRequest
	if e := req.decode(v); e != nil {
		writeError(ctx, e)
		return
	}
	c, e := s.newCampaign(&req)
	if e != nil {
		writeError(ctx, e)
		return
	}
	switch err := s.addCampaign(c); err {
	case nil:
	case errCampaignLimit:
		writeError(ctx, errorf(fasthttp.StatusConflict, "campaign limit reached: this server holds at most %d campaigns", s.campaigns.max))
		return
	case errCampaignExists:
		writeError(ctx, errorf(fasthttp.StatusConflict, "campaign %q already exists", c.id))
		return
	default:
		if s.remote != nil {
			writeError(ctx, s.errRedis(err))
		} else {
			writeError(ctx, errStorage(err))
		}
		return
	}
	ctx.Response.Header.Set("Location", "/api/v1/campaigns/"+c.id)
	writeJSON(ctx, fasthttp.StatusCreated, campaignCreatedJSON{
		campaignJSON: toJSON(c),
		Message:      "campaign created",
	})
}

// addCampaign registers c and, on a durable server, has it fsync'd to the
// log before it is visible or acknowledged.
func (s *Server) addCampaign(c *campaign) error {
	if s.remote != nil {
		return s.createRemote(c)
	}
	p := s.persist
	if p == nil {
		return s.campaigns.add(c, nil)
	}
	if err := p.log.Err(); err != nil {
		return err
	}
	reserved := store.CampaignSize(len(c.id), len(c.name))
	if err := p.log.Reserve(reserved); err != nil {
		return err
	}
	p.gate.RLock()
	defer p.gate.RUnlock()
	appended := false
	err := s.campaigns.add(c, func(c *campaign) error {
		b := p.batch()
		defer p.batches.Put(b)
		b.AddCampaign(c.index, c.id, c.name, c.start)
		appended = true
		// A failed append is retracted by the log: the campaign is
		// neither visible nor written, now or later.
		return p.log.AppendReserved(b, reserved)
	})
	if !appended {
		p.log.Release(reserved)
	}
	return err
}

// newCampaign validates a creation request. The strings are copied: the
// request's bytes belong to the parser.
func (s *Server) newCampaign(r *createRequest) (*campaign, *apiError) {
	switch {
	case r.name == nil:
		return nil, errNameRequired
	case !utf8.Valid(r.name):
		return nil, errNameUTF8
	}
	if n := utf8.RuneCount(r.name); n < 1 || n > maxNameRunes {
		return nil, errNameLength
	}
	c := &campaign{name: string(r.name)}
	if r.id != nil {
		if !validID(r.id) {
			return nil, errIDInvalid
		}
		c.id = string(r.id)
	} else {
		c.id = newCampaignID()
	}
	if r.startTime != nil {
		t, ok := parseTime(r.startTime)
		if !ok {
			return nil, errStartTimeFormat
		}
		if t.Before(minStart) || !t.Before(maxStart) {
			return nil, errStartTimeRange
		}
		c.start = t.UTC()
	} else {
		// Whole seconds, so that a client stamping impressions with
		// second-precision RFC 3339 right after creation is not "before
		// the start".
		c.start = s.now().UTC().Truncate(time.Second)
	}
	return c, nil
}

// minStart and maxStart bound a campaign's start_time: whole years within
// what a time.Time's UnixNano holds (1677-09-21 to 2262-04-11), the form
// the write-ahead log, snapshots and Redis store it in. Outside them a
// start would come back changed after a restart, so it is refused instead.
var (
	minStart = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC)
	maxStart = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// newCampaignID returns "cmp_" and 20 random hex digits (80 bits).
func newCampaignID() string {
	var b [10]byte
	rand.Read(b[:])
	return "cmp_" + hex.EncodeToString(b[:])
}

// getCampaign serves GET /api/v1/campaigns/{id}.
func (s *Server) getCampaign(ctx *fasthttp.RequestCtx) {
	c := s.campaignFromPath(ctx)
	if c == nil {
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, toJSON(c))
}

// Listing is paged: ?limit= campaigns (1 to maxListLimit, by default
// defaultListLimit) whose ids sort strictly after ?after=, in id order.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

var errListLimit = newError(fasthttp.StatusUnprocessableEntity,
	"limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))

// listCampaigns serves GET /api/v1/campaigns?limit=N&after=<id>: one page
// of campaigns in id order, with "next" (the id to pass as after for the
// following page) only when more campaigns follow. Both stores page alike:
// the same ordering, the same page boundaries.
func (s *Server) listCampaigns(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	limit := defaultListLimit
	if args.Has("limit") {
		n, err := strconv.Atoi(string(args.Peek("limit")))
		if err != nil || n < 1 || n > maxListLimit {
			writeError(ctx, errListLimit)
			return
		}
		limit = n
	}
	after := string(args.Peek("after"))
	var out campaignListJSON
	var more bool
	if s.remote != nil {
		all, e := s.listRemote()
		if e != nil {
			writeError(ctx, e)
			return
		}
		var page []redisstore.Campaign
		page, more = pageOf(all, func(c redisstore.Campaign) string { return c.ID }, after, limit)
		out.Campaigns = make([]campaignJSON, len(page))
		for i, c := range page {
			out.Campaigns[i] = campaignJSONOf(c.ID, c.Name, c.Start)
		}
	} else {
		var page []*campaign
		page, more = pageOf(s.campaigns.ordered(), func(c *campaign) string { return c.id }, after, limit)
		out.Campaigns = make([]campaignJSON, len(page))
		for i, c := range page {
			out.Campaigns[i] = toJSON(c)
		}
	}
	if more {
		out.Next = out.Campaigns[len(out.Campaigns)-1].ID
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// getStats serves GET /api/v1/campaigns/{id}/stats.
func (s *Server) getStats(ctx *fasthttp.RequestCtx) {
	c := s.campaignFromPath(ctx)
	if c == nil {
		return
	}
	now := stats.Minute(s.now())
	var w stats.Window
	if s.remote != nil {
		mins, total, e := s.remoteMinutes(c, now, stats.DayMinutes)
		if e != nil {
			writeError(ctx, e)
			return
		}
		w = windowOf(mins, total)
	} else {
		w = c.counter.Read(now)
	}
	writeJSON(ctx, fasthttp.StatusOK, statsJSON{
		CampaignID: c.id,
		LastHour:   w.LastHour,
		LastDay:    w.LastDay,
		Total:      w.Total,
	})
}

// campaignFromPath returns the campaign named by the path, or writes the
// error (404, or 503 when Redis fails) and returns nil.
func (s *Server) campaignFromPath(ctx *fasthttp.RequestCtx) *campaign {
	id, _ := ctx.UserValue("id").(string)
	var c *campaign
	if s.remote != nil {
		var e *apiError
		if c, e = s.remoteCampaign([]byte(id)); e != nil {
			writeError(ctx, e)
			return nil
		}
	} else {
		c = s.campaigns.get([]byte(id))
	}
	if c == nil {
		writeError(ctx, errCampaignNotFound)
	}
	return c
}

func toJSON(c *campaign) campaignJSON { return campaignJSONOf(c.id, c.name, c.start) }

func campaignJSONOf(id, name string, start time.Time) campaignJSON {
	return campaignJSON{ID: id, Name: name, StartTime: start.Format(time.RFC3339Nano)}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: cannot marshal response: " + err.Error())
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(b)
}

var errBadWindow = newError(fasthttp.StatusUnprocessableEntity, "window must be 1h or 24h")

// getSeries serves GET /api/v1/campaigns/{id}/series?window=1h|24h: the
// per-minute counts of the window ending with the current minute, oldest
// first, minutes without impressions as zeros. The window defaults to 1h.
func (s *Server) getSeries(ctx *fasthttp.RequestCtx) {
	var n int
	switch w := string(ctx.QueryArgs().Peek("window")); w {
	case "", "1h":
		n = stats.HourMinutes
	case "24h":
		n = stats.DayMinutes
	default:
		writeError(ctx, errBadWindow)
		return
	}
	c := s.campaignFromPath(ctx)
	if c == nil {
		return
	}
	now := stats.Minute(s.now())
	at := c.counter.At
	if s.remote != nil {
		mins, _, e := s.remoteMinutes(c, now, n)
		if e != nil {
			writeError(ctx, e)
			return
		}
		first := now - int64(n) + 1
		at = func(m int64) uint64 { return mins[m-first] }
	}
	out := make([]byte, 0, 64+n*48)
	out = append(out, `{"campaign_id":`...)
	out = appendJSONString(out, c.id)
	out = append(out, `,"resolution":"1m","points":[`...)
	for m := now - int64(n) + 1; m <= now; m++ {
		if m > now-int64(n)+1 {
			out = append(out, ',')
		}
		out = append(out, `{"t":"`...)
		out = time.Unix(m*60, 0).UTC().AppendFormat(out, time.RFC3339)
		out = append(out, `","count":`...)
		out = strconv.AppendUint(out, at(m), 10)
		out = append(out, '}')
	}
	out = append(out, "]}"...)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(out)
}
