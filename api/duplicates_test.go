package api

import (
	"reflect"
	"testing"
	"time"
)

// TestStatsDuplicates: /stats reports the impressions dedup did not count,
// single and batched, in the windows of their event times; refused items
// are in neither figure. It runs against both stores.
func TestStatsDuplicates(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			ts := newTestServer(t, mode)
			ts.createCampaign("c")
			old := testNow.Add(-3 * time.Hour)
			ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
			ts.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
			ts.do("POST", "/api/v1/impressions", trackAt("c", "u", old)).want(t, 200)
			ts.do("POST", "/api/v1/impressions", track("c", "")).want(t, 422)
			ts.do("POST", "/api/v1/impressions/batch", `[`+track("c", "v")+`,`+track("c", "v")+`,`+trackAt("c", "v", testNow.Add(-48*time.Hour))+`,`+track("c", "")+`]`).want(t, 200)
			want := statsJSON{CampaignID: "c", LastHour: 2, LastDay: 2, Total: 2,
				Duplicates: windowJSON{LastHour: 2, LastDay: 3, Total: 4},
				Reach:      &windowJSON{LastHour: 2, LastDay: 2, Total: 2}}
			if got := ts.stats("c"); !reflect.DeepEqual(got, want) {
				t.Fatalf("stats %+v, want %+v", got, want)
			}
		})
	}
}
