package redisstore

import (
	"reflect"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
)

// TestAds: counted items are counted by ad id in the windows of their
// event minutes (the last 60 minutes, the last day's, all time), a
// duplicate is not, items without an id are in no row, and ids beyond
// SetMaxAds count in other. Both modes, single and batched.
func TestAds(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			s := openTest(t, srv, mode, time.Hour)
			s.SetMaxAds(2)
			now := int64(29_000_000)
			item := func(u, ad string, m int64) Item { return Item{"c", []byte(u), m, now, []byte(ad)} }
			track(t, s, item("u1", "a", now))
			track(t, s, item("u1", "a", now)) // a duplicate: not by ad either
			track(t, s, item("u2", "b", now-60), item("u3", "a", now-59), item("u4", "", now))
			track(t, s, item("u5", "z", now-3000)) // a third id: other; out of the day
			track(t, s, item("u6", "b", now-1439), item("u7", "y", now))
			ads, other, err := s.Ads("c", now, 1440)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]AdWindow{"a": {2, 2, 2}, "b": {0, 2, 2}}
			if !reflect.DeepEqual(ads, want) || other != (AdWindow{1, 1, 2}) {
				t.Fatalf("Ads = %v, other %v; want %v, other {1 1 2}", ads, other, want)
			}
			if _, total, _ := s.Minutes("c", now, 1); total != 7 {
				t.Fatalf("campaign total %d, want 7", total)
			}
		})
	}
}
