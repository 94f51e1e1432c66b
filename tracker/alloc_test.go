//go:build !race

package tracker

import (
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// TestTrackDoesNotAllocate: Track allocates nothing, whatever it answers:
// counted, duplicate, or refused by a rule or an unknown campaign (the
// package doc's promise). -race cannot measure allocations; make test runs
// this in a plain build.
func TestTrackDoesNotAllocate(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			d, err := sketch.New(mode, suiteDedup)
			if err != nil {
				t.Fatal(err)
			}
			now := suiteNow(t)
			tr, err := Open(Options{Dedup: d, MaxSkew: time.Minute, Now: func() time.Time { return now }, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if _, err := tr.Create(CampaignSpec{ID: []byte("c"), Name: []byte("c"), Start: []byte(now.Add(-time.Hour).Format(time.RFC3339))}); err != nil {
				t.Fatal(err)
			}
			repeat := Impression{CampaignID: []byte("c"), UserID: []byte("u")}
			if dup, err := tr.Track(&repeat); dup || err != nil {
				t.Fatalf("first impression: %v, %v", dup, err)
			}
			for _, tc := range []struct {
				name string
				imp  Impression
				want error
			}{
				{"duplicate", repeat, nil},
				{"unknown campaign", Impression{CampaignID: []byte("nope"), UserID: []byte("u")}, ErrCampaignNotFound},
				{"bad user id", Impression{CampaignID: []byte("c"), UserID: []byte("u\x01")}, ErrUserIDChars},
				{"bad timestamp", Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte("yesterday"), HasTimestamp: true}, ErrTimestampFormat},
				{"too far ahead", Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte(now.Add(time.Hour).Format(time.RFC3339)), HasTimestamp: true}, tr.TooFarAhead()},
				{"before start", Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte(now.Add(-2 * time.Hour).Format(time.RFC3339)), HasTimestamp: true}, ErrBeforeStart},
			} {
				imp := tc.imp
				if _, err := tr.Track(&imp); err != tc.want {
					t.Fatalf("%s: %v, want %v", tc.name, err, tc.want)
				}
				if n := testing.AllocsPerRun(100, func() { tr.Track(&imp) }); n != 0 {
					t.Errorf("%s: %v allocations per Track, want 0", tc.name, n)
				}
			}
		})
	}
}
