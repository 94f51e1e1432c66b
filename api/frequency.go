package api

import (
	"slices"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/impressiond/impressiond/tracker"
)

var (
	errCapsType = newError(fasthttp.StatusUnprocessableEntity,
		"frequency_caps must be an array of caps such as {\"max\": 3, \"window\": \"1h\"}")
	errCampaignIDsType = wrongType("campaign_ids", "an array of strings")
	errCampaignIDs     = newError(fasthttp.StatusUnprocessableEntity,
		"campaign_ids must hold 1 to "+strconv.Itoa(tracker.MaxFrequencyCampaigns)+" campaign ids")
	errTooManyCaps = fromCore(tracker.ErrTooManyCaps)
)

// decodeCaps reads a frequency_caps array into specs. Every fault of a
// cap is the rules' to name (422, tracker.CapSpec), not a JSON type error:
// a cap's fields are checked together. null is no caps.
func decodeCaps(v *fastjson.Value) ([]tracker.CapSpec, *apiError) {
	if v.Type() == fastjson.TypeNull {
		return nil, nil
	}
	arr, err := v.Array()
	if err != nil {
		return nil, errCapsType
	}
	if len(arr) > tracker.MaxCaps {
		return nil, errTooManyCaps
	}
	specs := make([]tracker.CapSpec, len(arr))
	for i, c := range arr {
		o, err := c.Object()
		if err != nil {
			return nil, errorf(fasthttp.StatusUnprocessableEntity, "frequency_caps[%d] must be an object such as {\"max\": 3, \"window\": \"1h\"}", i)
		}
		s := &specs[i]
		if m := o.Get("max"); m != nil && m.Type() == fastjson.TypeNumber {
			s.Max, s.MaxPresent = m.GetFloat64(), true
		}
		if w := o.Get("window"); w != nil {
			s.Window, s.WindowType = w.GetStringBytes(), w.Type() == fastjson.TypeString
			if s.Window == nil {
				s.Window = []byte{}
			}
		}
	}
	return specs, nil
}

// setFrequencyCaps serves PUT /api/v1/campaigns/{id}/frequency-caps: the
// body is the array of caps that replaces the campaign's (empty: none).
func (s *Server) setFrequencyCaps(ctx *fasthttp.RequestCtx) {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding)) > 0 {
		s.decodeBody(ctx, s.setFrequencyCaps, func(e *apiError) { writeError(ctx, e) })
		return
	}
	var specs []tracker.CapSpec
	p, ok := s.parseJSON(ctx, func(v *fastjson.Value) *apiError {
		if v.Type() != fastjson.TypeArray {
			return errCapsType
		}
		var e *apiError
		specs, e = decodeCaps(v)
		return e
	})
	defer s.parsers.Put(p)
	if !ok {
		return
	}
	c, err := s.core.SetFrequencyCaps(pathID(ctx), specs)
	if err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, toJSON(c))
}

// frequencyRequest is a decoded FrequencyRequest; its slices point into
// the parser.
type frequencyRequest struct {
	user []byte
	ids  [][]byte
}

func (r *frequencyRequest) decode(v *fastjson.Value) *apiError {
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	if u := o.Get("user_id"); u != nil {
		b, ok := stringOrNull(u)
		if !ok {
			return errUserIDType
		}
		r.user = b
	}
	ids := o.Get("campaign_ids")
	if ids == nil || ids.Type() == fastjson.TypeNull {
		return errCampaignIDs
	}
	arr, err := ids.Array()
	if err != nil {
		return errCampaignIDsType
	}
	for _, id := range arr {
		if id.Type() != fastjson.TypeString {
			return errCampaignIDsType
		}
	}
	if len(arr) == 0 || len(arr) > tracker.MaxFrequencyCampaigns {
		return errCampaignIDs
	}
	r.ids = slices.Grow(r.ids[:0], len(arr))[:len(arr)] // r.ids may be pooled
	for i, id := range arr {
		r.ids[i] = id.GetStringBytes()
	}
	return nil
}

// frequencyBuffers pools the answers' encoding buffers: a check of 1,000
// campaigns answers about 100 KiB.
var frequencyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// frequencyScratch is what a check needs per candidate, pooled: the ids
// (24 bytes a candidate) and the answers (64 bytes), so that a check's
// garbage is its exposures alone and the collector runs less often.
type frequencyScratch struct {
	ids [][]byte
	out []tracker.FrequencyResult
}

var frequencyScratches = sync.Pool{New: func() any { return new(frequencyScratch) }}

// checkFrequency serves POST /api/v1/frequency: for one user, which of the
// candidate campaigns are still under their frequency caps, in request
// order.
func (s *Server) checkFrequency(ctx *fasthttp.RequestCtx) {
	if len(ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding)) > 0 {
		// A check of 1,000 ids compresses well.
		s.decodeBody(ctx, s.checkFrequency, func(e *apiError) { writeError(ctx, e) })
		return
	}
	sc := frequencyScratches.Get().(*frequencyScratch)
	req := frequencyRequest{ids: sc.ids}
	p, ok := s.parseJSON(ctx, req.decode)
	defer s.parsers.Put(p)
	out := slices.Grow(sc.out[:0], len(req.ids))[:len(req.ids)]
	defer func() {
		// Keep no request bytes, campaign or exposures alive in the pool.
		clear(req.ids)
		clear(out)
		sc.ids, sc.out = req.ids[:0], out[:0]
		frequencyScratches.Put(sc)
	}()
	if !ok {
		return
	}
	if err := s.core.Frequency(req.user, req.ids, out); err != nil {
		writeError(ctx, s.apiErrorOf(err))
		return
	}
	bp := frequencyBuffers.Get().(*[]byte)
	b := appendFrequency((*bp)[:0], req.user, out)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(b)
	*bp = b
	frequencyBuffers.Put(bp)
}

// appendFrequency encodes a check's answer (the FrequencyResponse schema).
func appendFrequency(b []byte, user []byte, out []tracker.FrequencyResult) []byte {
	b = append(b, `{"user_id":`...)
	b = appendJSONString(b, string(user))
	b = append(b, `,"campaigns":[`...)
	for i, r := range out {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"campaign_id":`...)
		if plainJSON(r.CampaignID) {
			b = append(append(append(b, '"'), r.CampaignID...), '"')
		} else {
			b = appendJSONString(b, r.CampaignID)
		}
		if r.Err != nil {
			e := errInternal
			if te, ok := r.Err.(*tracker.Error); ok {
				e = coreErrors[te]
				if e == nil {
					e = newError(statusOf(te.Kind), te.Msg)
				}
			}
			b = append(b, `,"error":`...)
			b = appendJSONString(b, e.msg)
			b = append(b, `,"code":`...)
			b = strconv.AppendInt(b, int64(e.code), 10)
			b = append(b, '}')
			continue
		}
		b = append(b, `,"allowed":`...)
		b = strconv.AppendBool(b, r.Allowed)
		b = append(b, `,"exposures":[`...)
		for j, e := range r.Exposures {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"window":"`...)
			b = tracker.AppendWindow(b, e.Window)
			b = append(b, `","count":`...)
			b = strconv.AppendUint(b, e.Count, 10)
			b = append(b, `,"max":`...)
			b = strconv.AppendUint(b, e.Max, 10)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}"...)
}

// plainJSON reports whether s is printable ASCII without quotes or
// backslashes, written as a JSON string as it is: every campaign id.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
