package api

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/tracker"
)

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
	c, err := s.core.Create(tracker.CampaignSpec{ID: req.id, Name: req.name, Start: req.startTime, End: req.endTime})
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
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	v, err := p.ParseBytes(ctx.PostBody())
	if err != nil {
		malformedJSON(ctx, err)
		return
	}
	var req patchRequest
	if e := req.decode(v); e != nil {
		writeError(ctx, e)
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

var errListLimit = newError(fasthttp.StatusUnprocessableEntity,
	"limit must be an integer from 1 to "+strconv.Itoa(maxListLimit))

// listCampaigns serves GET /api/v1/campaigns?limit=N&after=<id>: one page
// of campaigns in id order, with "next" (the id to pass as after for the
// following page) only when more campaigns follow.
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
	page, more, err := s.core.Campaigns(string(args.Peek("after")), limit)
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
	writeJSON(ctx, fasthttp.StatusOK, statsJSON{
		CampaignID: c.ID,
		LastHour:   w.LastHour,
		LastDay:    w.LastDay,
		Total:      w.Total,
		Duplicates: windowJSON{LastHour: w.Duplicates.LastHour, LastDay: w.Duplicates.LastDay, Total: w.Duplicates.Total},
	})
}

func toJSON(c tracker.Campaign) campaignJSON {
	j := campaignJSON{ID: c.ID, Name: c.Name, StartTime: c.Start.Format(time.RFC3339Nano)}
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

var errBadWindow = newError(fasthttp.StatusUnprocessableEntity, "window must be 1h or 24h")

// getSeries serves GET /api/v1/campaigns/{id}/series?window=1h|24h: the
// per-minute counts of the window ending with the current minute, oldest
// first, minutes without impressions as zeros. The window defaults to 1h.
func (s *Server) getSeries(ctx *fasthttp.RequestCtx) {
	var n int
	switch w := string(ctx.QueryArgs().Peek("window")); w {
	case "", "1h":
		n = 60
	case "24h":
		n = 24 * 60
	default:
		writeError(ctx, errBadWindow)
		return
	}
	c, first, counts, err := s.core.Series(pathID(ctx), n)
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	out := make([]byte, 0, 64+n*48)
	out = append(out, `{"campaign_id":`...)
	out = appendJSONString(out, c.ID)
	out = append(out, `,"resolution":"1m","points":[`...)
	for i, v := range counts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"t":"`...)
		out = time.Unix((first+int64(i))*60, 0).UTC().AppendFormat(out, time.RFC3339)
		out = append(out, `","count":`...)
		out = strconv.AppendUint(out, v, 10)
		out = append(out, '}')
	}
	out = append(out, "]}"...)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(out)
}
