package api

import (
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// trackRequest is one decoded TrackImpressionRequest. Its byte slices point
// into the parser's memory and are valid until the parser is returned to
// its pool: nothing here may outlive the request.
type trackRequest struct {
	campaignID []byte
	userID     []byte
	adID       []byte
	timestamp  []byte
	hasTS      bool
}

// decode fills r from a JSON object. Only a value of the wrong JSON type is
// an error here (400); rules on well-typed values are judged later (422).
// Unknown fields are ignored, null counts as absent, and of duplicate keys
// the last one wins, as with encoding/json.
func (r *trackRequest) decode(v *fastjson.Value) *apiError {
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	*r = trackRequest{}
	var bad *apiError
	o.Visit(func(key []byte, v *fastjson.Value) {
		var dst *[]byte
		var typeErr *apiError
		switch string(key) {
		case "campaign_id":
			dst, typeErr = &r.campaignID, errCampaignIDType
		case "user_id":
			dst, typeErr = &r.userID, errUserIDType
		case "ad_id":
			dst, typeErr = &r.adID, errAdIDType
		case "timestamp":
			dst, typeErr = &r.timestamp, errTimestampType
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
	r.hasTS = r.timestamp != nil
	return bad
}

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
	id, name, startTime []byte
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

// parseTime parses an RFC 3339 date-time, fractions of a second allowed.
func parseTime(b []byte) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
	return t, err == nil
}
