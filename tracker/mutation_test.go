package tracker

import (
	"testing"
	"time"
)

// TestParseTimeEdges: the inputs of ParseTime that TestParseTime leaves
// out and mutation testing found unchecked: a "0" in the fraction, a
// fraction at the very end of the input, a negative offset other than
// -00:00, and the century years of the Gregorian leap rule.
func TestParseTimeEdges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time // zero: rejected
	}{
		// "0" is a digit of the fraction, first, inside and last.
		{"2026-11-26T12:30:05.05Z", time.Date(2026, 11, 26, 12, 30, 5, 50_000_000, time.UTC)},
		{"2026-11-26T12:30:05.0Z", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2026-11-26T12:30:05.101Z", time.Date(2026, 11, 26, 12, 30, 5, 101_000_000, time.UTC)},
		{"2026-11-26T12:30:05.000000010Z", time.Date(2026, 11, 26, 12, 30, 5, 10, time.UTC)},
		// A fraction with no offset after it ends the input: rejected,
		// not read past the end.
		{"2026-11-26T12:30:05.25", time.Time{}},
		{"2026-11-26T12:30:05.", time.Time{}},
		// A negative offset is behind UTC: 07:00-05:30 is 12:30 UTC.
		{"2026-11-26T07:00:05-05:30", time.Date(2026, 11, 26, 12, 30, 5, 0, time.UTC)},
		{"2026-11-26T00:00:00-23:59", time.Date(2026, 11, 26, 23, 59, 0, 0, time.UTC)},
		// Leap years: every 4th, but not every 100th, yet every 400th.
		{"2000-02-29T00:00:00Z", time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"1600-02-29T00:00:00Z", time.Date(1600, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"2100-02-29T00:00:00Z", time.Time{}},
		{"2100-02-28T23:59:59Z", time.Date(2100, 2, 28, 23, 59, 59, 0, time.UTC)},
		{"2000-02-30T00:00:00Z", time.Time{}},
		{"0000-02-29T00:00:00Z", time.Date(0, 2, 29, 0, 0, 0, 0, time.UTC)},
		// The months of 30 days end on the 30th, the others on the 31st.
		{"2026-04-30T00:00:00Z", time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC)},
		{"2026-04-31T00:00:00Z", time.Time{}},
		{"2026-06-31T00:00:00Z", time.Time{}},
		{"2026-09-31T00:00:00Z", time.Time{}},
		{"2026-07-31T00:00:00Z", time.Date(2026, 7, 31, 0, 0, 0, 0, time.UTC)},
		{"2026-12-31T00:00:00Z", time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)},
		{"2026-12-32T00:00:00Z", time.Time{}},
		// Month and day 00 are rejected.
		{"2026-00-10T00:00:00Z", time.Time{}},
		{"2026-01-00T00:00:00Z", time.Time{}},
	} {
		got, ok := ParseTime([]byte(tc.in))
		if ok != !tc.want.IsZero() || (ok && !got.Equal(tc.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}
