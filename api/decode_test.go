package api

import (
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
	} {
		got, ok := parseTime([]byte(tc.in))
		if ok != !tc.want.IsZero() || (ok && !got.Equal(tc.want)) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tc.in, got, ok, tc.want)
		}
	}
}

// FuzzParseTime checks the hand-written fast path against time.Parse: the
// same inputs accepted, the same instants returned.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-11-26T12:30:05Z", "2024-02-29T23:59:59Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59Z", "2026-11-26T12:30:05.123Z", "2026-11-26T12:30:05+05:30",
		"2026-02-30T00:00:00Z", "2026-11-26t12:30:05z", "+026-11-26T12:30:05Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) || (ok && !got.Equal(want)) {
			t.Fatalf("parseTime(%q) = %v, %v; time.Parse = %v, %v", s, got, ok, want, err)
		}
	})
}

func BenchmarkParseTime(b *testing.B) {
	in := []byte("2026-11-26T12:30:05Z")
	b.ReportAllocs()
	for b.Loop() {
		parseTime(in)
	}
}
