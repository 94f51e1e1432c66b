package tracker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// TestRestoresEarlierDataDirs: data directories written by impressiond
// before the domain core was split out of the HTTP package restore with
// every campaign, count and dedup decision. testdata/earlier holds them:
// bloom/ (stopped with SIGTERM: a snapshot) and exact/ (killed with -9: the
// log alone), each written with -dedup-capacity 1000 -dedup-max-pairs 1000
// -fsync-interval 0, by this traffic: campaigns spring (2026-01-01) and
// autumn (2026-06-01T12:30:00.5Z); spring: u1..u5 and a repeat of u1;
// autumn: a batch of a1, a2 and a repeat of a1. WRITTEN is when; the
// tracker's clock is set a minute after it, so the dedup window of then is
// still live.
func TestRestoresEarlierDataDirs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "earlier", "WRITTEN"))
	if err != nil {
		t.Fatal(err)
	}
	written, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	now := written.Add(time.Minute)
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "earlier", mode))); err != nil {
				t.Fatal(err)
			}
			d, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 1000, FalsePositiveRate: 0.001, MaxPairs: 1000})
			if err != nil {
				t.Fatal(err)
			}
			tr, err := Open(Options{Dedup: d, DataDir: dir, Now: func() time.Time { return now }, MaxSkew: time.Minute, Logger: quiet})
			if err != nil {
				t.Fatalf("an earlier version's %s directory does not restore: %v", mode, err)
			}
			defer tr.Close()
			if st := tr.Restored(); st.Campaigns != 2 || st.DedupReset != "" || st.NewSecret || st.Torn != nil {
				t.Fatalf("restored %+v: want 2 campaigns, the window and the secret as they were", st)
			}
			for _, want := range []struct {
				id, name, start string
				total           uint64
			}{
				{"spring", "Spring sale", "2026-01-01T00:00:00Z", 5},
				{"autumn", "Autumn", "2026-06-01T12:30:00.5Z", 2},
			} {
				c, w, err := tr.Stats(want.id)
				if err != nil {
					t.Fatal(err)
				}
				if c.Name != want.name || c.Start.Format(time.RFC3339Nano) != want.start {
					t.Errorf("campaign %s restored as %q starting %s", want.id, c.Name, c.Start.Format(time.RFC3339Nano))
				}
				if w.LastHour != want.total || w.LastDay != want.total || w.Total != want.total {
					t.Errorf("campaign %s counts %+v, want %d in every window", want.id, w, want.total)
				}
			}
			for _, tc := range []struct {
				campaign, user string
				dup            bool
			}{
				{"spring", "u1", true}, {"spring", "u5", true}, {"autumn", "a2", true},
				{"spring", "u6", false}, {"autumn", "u1", false},
			} {
				dup, err := tr.Track(&Impression{CampaignID: []byte(tc.campaign), UserID: []byte(tc.user)})
				if err != nil || dup != tc.dup {
					t.Errorf("%s/%s after the restore: dup %v, %v; want %v", tc.campaign, tc.user, dup, err, tc.dup)
				}
			}
		})
	}
}
