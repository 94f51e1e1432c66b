package api

import (
	"github.com/valyala/fastjson"

	"github.com/impressiond/impressiond/tracker"
)

// trackRequest is one decoded TrackImpressionRequest, filled by a scanner
// (scan.go). Its byte slices point into the request body or the scanner's
// scratch buffer and are valid until the scanner is reused: nothing here may
// outlive the request. A nil field is absent (or null), a non-nil empty one
// is present and empty.
type trackRequest = tracker.Impression

// stringOrNull returns a string value's bytes, nil for null, and false for
// any other type. A present empty string is returned as non-nil.
func stringOrNull(v *fastjson.Value) ([]byte, bool) {
	switch v.Type() {
	case fastjson.TypeNull:
		return nil, true
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		if b == nil {
			b = []byte{}
		}
		return b, true
	}
	return nil, false
}

// createRequest is a decoded CreateCampaignRequest.
type createRequest struct {
	id, name, startTime, endTime []byte
	caps                         []tracker.CapSpec
}

func (r *createRequest) decode(v *fastjson.Value) *apiError {
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	var bad *apiError
	o.Visit(func(key []byte, v *fastjson.Value) {
		var dst *[]byte
		var typeErr *apiError
		switch string(key) {
		case "id":
			dst, typeErr = &r.id, errIDType
		case "name":
			dst, typeErr = &r.name, errNameType
		case "start_time":
			dst, typeErr = &r.startTime, errStartTimeType
		case "end_time":
			dst, typeErr = &r.endTime, errEndTimeType
		case "frequency_caps":
			caps, e := decodeCaps(v)
			if e != nil && bad == nil {
				bad = e
			}
			r.caps = caps
			return
		default:
			return
		}
		b, ok := stringOrNull(v)
		if !ok {
			if bad == nil {
				bad = typeErr
			}
			return
		}
		*dst = b
	})
	return bad
}

// patchRequest is a decoded UpdateCampaignRequest: a nil field is absent;
// an end_time of null (clearEnd) removes the campaign's end.
type patchRequest struct {
	name, endTime []byte
	clearEnd      bool
}

func (r *patchRequest) decode(v *fastjson.Value) *apiError {
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	var bad *apiError
	fail := func(e *apiError) {
		if bad == nil {
			bad = e
		}
	}
	o.Visit(func(key []byte, v *fastjson.Value) {
		switch string(key) {
		case "name":
			b, ok := stringOrNull(v)
			if !ok || b == nil {
				fail(errNameType)
				return
			}
			r.name = b
		case "end_time":
			b, ok := stringOrNull(v)
			if !ok {
				fail(errEndTimeType)
				return
			}
			r.endTime, r.clearEnd = b, b == nil
		}
	})
	return bad
}
