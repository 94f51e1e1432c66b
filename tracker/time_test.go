package tracker

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time // zero: rejected
	}{
		{"2026-11-26T12:30:05Z", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2024-02-29T00:00:00Z", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"2026-11-26T12:30:05.25Z", time.Date(2026, 11, 26, 12, 30, 5, 250_000_000, time.UTC)},
		{"2026-11-26T13:30:05+01:00", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2023-02-29T00:00:00Z", time.Time{}},
		{"1900-02-29T00:00:00Z", time.Time{}},
		{"2026-13-01T00:00:00Z", time.Time{}},
		{"2026-11-31T00:00:00Z", time.Time{}},
		{"2026-11-26T24:00:00Z", time.Time{}},
		{"2026-11-26T12:60:00Z", time.Time{}},
		{"2026-11-26T12:00:60Z", time.Time{}},
		{"2026-11-26 12:00:00Z", time.Time{}},
		{"2026-11-26T12:00:00", time.Time{}},
		{"2026-1a-26T12:00:00Z", time.Time{}},
		{"", time.Time{}},
		// RFC 3339 §5.6: "T" and "Z" may be lower case.
		{"2026-11-26t12:30:05z", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2026-11-26t13:30:05.5+01:00", time.Date(2026, 11, 26, 12, 30, 5, 500_000_000, time.UTC)},
		// Offsets are ±hh:mm with hh ≤ 23 and mm ≤ 59; "-00:00" is UTC.
		{"2026-11-26T12:30:05+24:00", time.Time{}},
		{"2026-11-26T12:30:05+05:60", time.Time{}},
		{"2026-11-26T12:30:05-00:00", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2026-11-26T00:30:05+23:59", time.Date(2026, 11, 25, 0, 31, 5, 0, time.UTC)},
		{"2026-11-26T12:30:05+0100", time.Time{}},
		// The decimal mark is ".", followed by at least one digit; digits
		// past the nanosecond are truncated.
		{"2026-11-26T12:30:05,5Z", time.Time{}},
		{"2026-11-26T12:30:05.Z", time.Time{}},
		{"2026-11-26T12:30:05.1234567891Z", time.Date(2026, 11, 26, 12, 30, 5, 123456789, time.UTC)},
		// The leap second cannot be held by time.Time: rejected, as
		// openapi.yaml says.
		{"2016-12-31T23:59:60Z", time.Time{}},
		// The whole range of four-digit years.
		{"0000-01-01T00:00:00Z", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"9999-12-31T23:59:59.999999999Z", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		got, ok := ParseTime([]byte(tc.in))
		if ok != !tc.want.IsZero() || (ok && !got.Equal(tc.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

// rfc3339Grammar is RFC 3339's date-time grammar (§5.6), case-insensitive as
// ABNF strings are; the ranges of the fields are checked by time.Parse.
var rfc3339Grammar = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$`)

// referenceTime parses s the slow, obvious way: the RFC's grammar, its
// offset ranges, then time.Parse for the calendar.
func referenceTime(s string) (time.Time, bool) {
	if !rfc3339Grammar.MatchString(s) {
		return time.Time{}, false
	}
	if z := s[len(s)-1]; z != 'Z' && z != 'z' {
		h, _ := strconv.Atoi(s[len(s)-5 : len(s)-3])
		m, _ := strconv.Atoi(s[len(s)-2:])
		if h > 23 || m > 59 {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	return t, err == nil
}

// FuzzParseTime checks the hand-written parser against referenceTime: the
// same inputs accepted, the same instants returned.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-26T12:30:05Z", "2024-02-29T23:59:59Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59Z", "2026-11-26T12:30:05.123Z", "2026-11-26T12:30:05+05:30",
		"2026-02-30T00:00:00Z", "2026-11-26t12:30:05z", "+026-11-26T12:30:05Z",
		"2026-11-26T12:30:05+24:00", "2026-11-26T12:30:05,5Z", "2016-12-31T23:59:60Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseTime([]byte(s))
		want, wantOK := referenceTime(s)
		if ok != wantOK || (ok && !got.Equal(want)) {
			t.Fatalf("ParseTime(%q) = %v, %v; reference %v, %v", s, got, ok, want, wantOK)
		}
	})
}

func BenchmarkParseTime(b *testing.B) {
	in := []byte("2026-11-26T12:30:05Z")
	b.ReportAllocs()
	for b.Loop() {
		ParseTime(in)
	}
}
