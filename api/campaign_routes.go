package api

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/impressiond/impressiond/tracker"
)

// createCampaign serves POST /api/v1/campaigns.
func (s *Server) createCampaign(ctx *fasthttp.RequestCtx) {
	var req createRequest
	p, ok := s.parseJSON(ctx, req.decode)
	defer s.parsers.Put(p)
	if !ok {
		return
	}
	c, err := s.core.Create(tracker.CampaignSpec{ID: req.id, Name: req.name, Start: req.startTime, End: req.endTime, Caps: req.caps})
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	ctx.Response.Header.Set("Location", "/api/v1/campaigns/"+c.ID)
	writeJSON(ctx, fasthttp.StatusCreated, campaignCreatedJSON{
		campaignJSON: toJSON(c),
		Message:      "campaign created",
	})
}

// parseJSON parses the request body as JSON and hands it to decode; on
// malformed JSON or a decode error it answers and returns false. The
// decoded request points into the parser it returns, which the caller
// puts back (s.parsers.Put) once it no longer uses the request.
func (s *Server) parseJSON(ctx *fasthttp.RequestCtx, decode func(*fastjson.Value) *apiError) (*fastjson.Parser, bool) {
	p := s.parsers.Get()
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		malformedJSON(ctx, err)
		return p, false
	}
	if e := decode(v); e != nil {
		writeError(ctx, e)
		return p, false
	}
	return p, true
}

// getCampaign serves GET /api/v1/campaigns/{id}.
func (s *Server) getCampaign(ctx *fasthttp.RequestCtx) {
	c, err := s.core.Campaign(pathID(ctx))
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, toJSON(c))
}

// updateCampaign serves PATCH /api/v1/campaigns/{id}: a new name, a new
// end_time, or end_time null to remove it; absent fields are kept.
func (s *Server) updateCampaign(ctx *fasthttp.RequestCtx) {
	var req patchRequest
	p, ok := s.parseJSON(ctx, req.decode)
	defer s.parsers.Put(p)
	if !ok {
		return
	}
	c, err := s.core.Update(pathID(ctx), tracker.CampaignPatch{Name: req.name, End: req.endTime, ClearEnd: req.clearEnd})
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, toJSON(c))
}

// deleteCampaign serves DELETE /api/v1/campaigns/{id}: 204 and no body.
func (s *Server) deleteCampaign(ctx *fasthttp.RequestCtx) {
	if err := s.core.Delete(pathID(ctx)); err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func pathID(ctx *fasthttp.RequestCtx) string {
	id, _ := ctx.UserValue("id").(string)
	return id
}

// Listing is paged: ?limit= campaigns (1 to maxListLimit, by default
// defaultListLimit) whose ids sort strictly after ?after=, in id order.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

var (
	errListLimit = newError(fasthttp.StatusUnprocessableEntity,
		"limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))
	errListPrefix = newError(fasthttp.StatusUnprocessableEntity, "prefix must be at most 64 bytes")
)

// listCampaigns serves GET /api/v1/campaigns?limit=N&after=<id>&prefix=<p>:
// one page of campaigns in id order (only those whose ids start with
// prefix, when given), with "next" (the id to pass as after for the
// following page) only when more such campaigns follow.
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
	prefix := args.Peek("prefix")
	if len(prefix) > 64 {
		writeError(ctx, errListPrefix)
		return
	}
	page, more, err := s.core.CampaignsWithPrefix(string(prefix), string(args.Peek("after")), limit)
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	out := campaignListJSON{Campaigns: make([]campaignJSON, len(page))}
	for i, c := range page {
		out.Campaigns[i] = toJSON(c)
	}
	if more {
		out.Next = out.Campaigns[len(out.Campaigns)-1].ID
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

// getStats serves GET /api/v1/campaigns/{id}/stats.
func (s *Server) getStats(ctx *fasthttp.RequestCtx) {
	c, w, err := s.core.Stats(pathID(ctx))
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	out := statsJSON{
		CampaignID: c.ID,
		LastHour:   w.LastHour,
		LastDay:    w.LastDay,
		Total:      w.Total,
		Duplicates: windowOf(w.Duplicates),
	}
	if r := w.Reach; r != nil {
		out.Reach = &windowJSON{LastHour: r.LastHour, LastDay: r.LastDay, Total: r.Total}
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func windowOf(w tracker.Window) windowJSON {
	return windowJSON{LastHour: w.LastHour, LastDay: w.LastDay, Total: w.Total}
}

// getAds serves GET /api/v1/campaigns/{id}/ads.
func (s *Server) getAds(ctx *fasthttp.RequestCtx) {
	c, a, err := s.core.Ads(pathID(ctx))
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	out := adsJSON{CampaignID: c.ID, Ads: make([]adJSON, len(a.Ads)), Other: windowOf(a.Other), None: windowOf(a.None)}
	for i, r := range a.Ads {
		out.Ads[i] = adJSON{AdID: r.AdID, windowJSON: windowOf(r.Window)}
	}
	writeJSON(ctx, fasthttp.StatusOK, out)
}

func toJSON(c tracker.Campaign) campaignJSON {
	j := campaignJSON{ID: c.ID, Name: c.Name, StartTime: c.Start.Format(time.RFC3339Nano), FrequencyCaps: make([]capJSON, len(c.Caps))}
	for i, cp := range c.Caps {
		j.FrequencyCaps[i] = capJSON{Max: cp.Max, Window: tracker.WindowText(cp.Window)}
	}
	if !c.End.IsZero() {
		j.EndTime = c.End.Format(time.RFC3339Nano)
	}
	return j
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

var (
	errBadWindow      = newError(fasthttp.StatusUnprocessableEntity, "window must be 1h, 24h, 7d, 30d or 90d")
	errWindowAndRange = newError(fasthttp.StatusUnprocessableEntity, "give window, or from (with to and step), not both")
	errRangeFrom      = newError(fasthttp.StatusUnprocessableEntity, "from is required with to or step")
	errRangeTimes     = newError(fasthttp.StatusUnprocessableEntity, "from and to must be RFC 3339 date-times, e.g. 2026-01-02T15:04:05Z")
	errStep           = fromCore(tracker.ErrStep)
)

// seriesWindows are the windows of /series: their step and length.
var seriesWindows = map[string]struct {
	step time.Duration
	n    int
}{
	"1h":  {time.Minute, 60},
	"24h": {time.Minute, 24 * 60},
	"7d":  {time.Hour, 7 * 24},
	"30d": {24 * time.Hour, 30},
	"90d": {24 * time.Hour, 90},
}

var steps = map[string]time.Duration{"1m": time.Minute, "1h": time.Hour, "1d": 24 * time.Hour}

// getSeries serves GET /api/v1/campaigns/{id}/series: the counts of a
// window ending with the current step (window=1h or 24h: per minute, the
// default 1h; 7d: per hour; 30d, 90d: per day), or of a range (from, to,
// default now, and step=1m|1h|1d), oldest first, steps without
// impressions as zeros.
func (s *Server) getSeries(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	now := s.core.Now()
	var step time.Duration
	var from, to time.Time
	switch {
	case args.Has("window") && (args.Has("from") || args.Has("to") || args.Has("step")):
		writeError(ctx, errWindowAndRange)
		return
	case args.Has("from"):
		var ok bool
		if from, ok = tracker.ParseTime(args.Peek("from")); !ok {
			writeError(ctx, errRangeTimes)
			return
		}
		to = now
		if args.Has("to") {
			if to, ok = tracker.ParseTime(args.Peek("to")); !ok {
				writeError(ctx, errRangeTimes)
				return
			}
		}
		if step, ok = steps[string(args.Peek("step"))]; !ok {
			writeError(ctx, errStep)
			return
		}
	case args.Has("to") || args.Has("step"):
		writeError(ctx, errRangeFrom)
		return
	default:
		w := string(args.Peek("window"))
		if w == "" {
			w = "1h"
		}
		win, ok := seriesWindows[w]
		if !ok {
			writeError(ctx, errBadWindow)
			return
		}
		step, to = win.step, now
		// The n steps ending with the one holding now.
		from = now.Truncate(step).Add(-time.Duration(win.n-1) * step)
	}
	c, points, err := s.core.History(pathID(ctx), step, from, to)
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	out := make([]byte, 0, 64+len(points)*80)
	out = append(out, `{"campaign_id":`...)
	out = appendJSONString(out, c.ID)
	out = append(out, `,"resolution":"`...)
	out = append(out, map[time.Duration]string{time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "1d"}[step]...)
	out = append(out, `","points":[`...)
	for i, p := range points {
		if i > 0 {
			out = append(out, ',')
		}
		// t and start are the same instant: t as the first version of
		// this route named it, start as the range form does.
		out = append(out, `{"t":"`...)
		out = p.Start.AppendFormat(out, time.RFC3339)
		out = append(out, `","start":"`...)
		out = p.Start.AppendFormat(out, time.RFC3339)
		out = append(out, `","count":`...)
		out = strconv.AppendUint(out, p.Count, 10)
		out = append(out, '}')
	}
	out = append(out, "]}"...)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(out)
}
