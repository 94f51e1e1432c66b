package api

import (
	"testing"
	"time"
)

// TestStartTimeJudgesEventTime: start_time is compared with the
// impression's event time (its timestamp, when in the past), not with its
// arrival: an impression that happened before the start is 422 even if it
// arrives after it (docs/DESIGN.md, the start_time rule).
func TestStartTimeJudgesEventTime(t *testing.T) {
	ts := newTestServer(t, "exact")
	start := testNow.Add(-10 * time.Minute) // arrival (testNow) is after it
	ts.do("POST", "/api/v1/campaigns", `{"id":"c","name":"C","start_time":"`+rfc3339(start)+`"}`).want(t, 201)
	for _, tc := range []struct {
		name   string
		at     time.Time // the impression's timestamp; it arrives at testNow
		status int
	}{
		// Only the event time is before the start.
		{"event before start, arrival after", start.Add(-5 * time.Minute), 422},
		{"event 1ns before start", start.Add(-time.Nanosecond), 422},
		{"event at start", start, 200},
		{"event after start", start.Add(5 * time.Minute), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.do("POST", "/api/v1/impressions", trackAt("c", tc.name, tc.at)).want(t, tc.status)
			var got struct {
				Rejected int
				Errors   []struct{ Code int }
			}
			ts.do("POST", "/api/v1/impressions/batch", `[`+trackAt("c", "batch "+tc.name, tc.at)+`]`).want(t, 200).decode(t, &got)
			wantRejected := 0
			if tc.status != 200 {
				wantRejected = 1
			}
			if got.Rejected != wantRejected || (wantRejected == 1 && (len(got.Errors) != 1 || got.Errors[0].Code != tc.status)) {
				t.Fatalf("in a batch: got %+v, want %d rejected with code %d", got, wantRejected, tc.status)
			}
		})
	}
}
