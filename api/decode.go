package api

import (
	"time"
	"unsafe"

	"github.com/valyala/fastjson"
)

// trackRequest is one decoded TrackImpressionRequest, filled by a scanner
// (scan.go). Its byte slices point into the request body or the scanner's
// scratch buffer and are valid until the scanner is reused: nothing here may
// outlive the request. A nil field is absent (or null), a non-nil empty one
// is present and empty.
type trackRequest struct {
	campaignID []byte
	userID     []byte
	adID       []byte
	timestamp  []byte
	hasTS      bool
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
// The common shape, whole seconds in UTC ("2006-01-02T15:04:05Z"), is
// parsed by hand, several times faster than time.Parse; every other shape
// goes to time.Parse. Both accept and reject the same inputs (FuzzParseTime).
func parseTime(b []byte) (time.Time, bool) {
	if t, ok := parseTimeUTCSeconds(b); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(unsafe.SliceData(b), len(b)))
	return t, err == nil
}

// parseTimeUTCSeconds parses exactly "YYYY-MM-DDTHH:MM:SSZ" and reports
// false for anything else, valid or not.
func parseTimeUTCSeconds(b []byte) (time.Time, bool) {
	if len(b) != 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
