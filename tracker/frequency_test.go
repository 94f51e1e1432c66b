package tracker

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// testFrequency is the frequency window of a test tracker of mode: in
// bloom mode a small sketch.
func testFrequency(mode string) sketch.Frequency {
	if mode == "bloom" {
		return sketch.NewFrequencySketch(10000)
	}
	return sketch.NewFrequencyExact()
}

func capSpecs(caps ...string) []CapSpec {
	specs := make([]CapSpec, len(caps))
	for i, c := range caps {
		max, window, _ := strings.Cut(c, "/")
		var m float64
		fmt.Sscan(max, &m)
		specs[i] = CapSpec{Max: m, MaxPresent: true, Window: []byte(window), WindowType: true}
	}
	return specs
}

func createCaps(t *testing.T, tr *Tracker, id string, start time.Time, caps ...string) {
	t.Helper()
	_, err := tr.Create(CampaignSpec{ID: []byte(id), Name: []byte("Campaign " + id), Start: []byte(start.Format(time.RFC3339Nano)), Caps: capSpecs(caps...)})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// answers renders a check as "a: allowed 1/3@1h; b: 404" for exact
// comparisons.
func answers(t *testing.T, tr *Tracker, user string, ids ...string) string {
	t.Helper()
	bs := make([][]byte, len(ids))
	for i, id := range ids {
		bs[i] = []byte(id)
	}
	out := make([]FrequencyResult, len(ids))
	if err := tr.Frequency([]byte(user), bs, out); err != nil {
		t.Fatalf("Frequency: %v", err)
	}
	var b strings.Builder
	for i, r := range out {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.CampaignID + ":")
		switch {
		case r.Err == ErrCampaignNotFound:
			b.WriteString(" 404")
			continue
		case r.Err != nil:
			t.Fatalf("%s: %v", r.CampaignID, r.Err)
		case r.Allowed:
			b.WriteString(" allowed")
		default:
			b.WriteString(" capped")
		}
		for _, e := range r.Exposures {
			fmt.Fprintf(&b, " %d/%d@%s", e.Count, e.Max, WindowText(e.Window))
		}
	}
	return b.String()
}

func trackN(t *testing.T, tr *Tracker, campaign, user string, n int) {
	t.Helper()
	for range n {
		if _, err := tr.Track(imp(campaign, user)); err != nil {
			t.Fatal(err)
		}
	}
}

// sliceEnd is the end of the slice of window w that t falls in.
func sliceEnd(t time.Time, w time.Duration) time.Time {
	g := sketch.FrequencySlice(w)
	return time.Unix(0, 0).Add((t.Sub(time.Unix(0, 0))/g + 1) * g)
}

// TestFrequencyWindowBoundaries: an exposure at T is counted by a cap of
// window w at every check before T + w (never undercounted), and at none
// from the end of T's slice plus w on: the window reaches back less than
// one slice further. Several caps of one campaign are answered at once.
func TestFrequencyWindowBoundaries(t *testing.T) {
	windows := []string{"1m", "5m", "6m", "59m", "1h", "90m", "6h", "24h", "36h", "168h"}
	for _, mode := range []string{"exact", "bloom"} {
		for _, w := range windows {
			t.Run(mode+"/"+w, func(t *testing.T) {
				clock := &fakeClock{t: suiteNow(t)}
				tr := openTracker(t, clock, func(o *Options) { o.Frequency = testFrequency(mode) })
				createCaps(t, tr, "c", clock.Now().Add(-time.Hour), "2/"+w, "5/168h")
				T := clock.Now()
				trackN(t, tr, "c", "u", 2)
				d, _ := time.ParseDuration(w)
				want := func(at time.Time, n int, allowed string) {
					t.Helper()
					clock.t = at
					wantWeek := "2/5@168h"
					if w == "168h" {
						wantWeek = fmt.Sprintf("%d/5@168h", n)
					}
					if got, want := answers(t, tr, "u", "c"), fmt.Sprintf("c: %s %d/2@%s %s", allowed, n, w, wantWeek); got != want {
						t.Fatalf("at T%+v: %s, want %s", at.Sub(T), got, want)
					}
				}
				want(T, 2, "capped")
				want(T.Add(d-time.Nanosecond), 2, "capped")
				end := sliceEnd(T, d).Add(d)
				want(end.Add(-time.Nanosecond), 2, "capped")
				want(end, 0, "allowed")
				if end.Sub(T.Add(d)) > sketch.FrequencySlice(d) {
					t.Fatalf("the window reaches back %v, more than its slice %v", end.Sub(T.Add(d)), sketch.FrequencySlice(d))
				}
			})
		}
	}
}

// TestFrequencyUnknownAndUncapped: an unknown id is a not-found item, a
// campaign without caps is allowed with no exposures, and a deleted one is
// not found, its exposures gone with it for a campaign made again under
// its id.
func TestFrequencyUnknownAndUncapped(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	start := clock.Now().Add(-time.Hour)
	createCaps(t, tr, "a", start, "1/1h")
	create(t, tr, "free", start)
	trackN(t, tr, "a", "u", 1)
	trackN(t, tr, "free", "u", 3)
	if got, want := answers(t, tr, "u", "nope", "a", "free"), "nope: 404; a: capped 1/1@1h; free: allowed"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if err := tr.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if got, want := answers(t, tr, "u", "a"), "a: 404"; got != want {
		t.Fatalf("deleted: %s, want %s", got, want)
	}
	createCaps(t, tr, "a", start, "1/1h")
	if got, want := answers(t, tr, "u", "a"), "a: allowed 0/1@1h"; got != want {
		t.Fatalf("made again: %s, want %s", got, want)
	}
	if err := tr.Frequency(nil, [][]byte{[]byte("a")}, make([]FrequencyResult, 1)); err != ErrUserIDRequired {
		t.Fatalf("no user: %v", err)
	}
}

// TestFrequencyRefusedImpressionIsNoExposure: an impression answered
// with an error (here the exact window's pair limit) is not an exposure.
func TestFrequencyRefusedImpressionIsNoExposure(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, "exact", 1) })
	start := clock.Now().Add(-time.Hour)
	createCaps(t, tr, "c", start, "5/1h")
	trackN(t, tr, "c", "u1", 2)
	if _, err := tr.Track(imp("c", "u2")); err != ErrDedupLimit {
		t.Fatalf("second pair: %v, want ErrDedupLimit", err)
	}
	if got, want := answers(t, tr, "u1", "c")+"; "+answers(t, tr, "u2", "c"), "c: allowed 2/5@1h; c: allowed 0/5@1h"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestFrequencyPersists: caps and exposures survive a restart from the
// log alone (as after kill -9), from a snapshot (as after SIGTERM), and
// from a snapshot followed by log, in both modes, exactly: an exposure in
// both the snapshot and the log after it would be counted twice.
func TestFrequencyPersists(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		for _, how := range []string{"log", "snapshot", "snapshot+log"} {
			t.Run(mode+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				clock := &fakeClock{t: suiteNow(t)}
				set := func(o *Options) { o.Frequency = testFrequency(mode) }
				tr := openDir(t, mode, dir, clock, set)
				start := clock.Now().Add(-time.Hour)
				createCaps(t, tr, "a", start, "3/1h", "10/24h")
				create(t, tr, "b", start)
				trackN(t, tr, "a", "u", 2)
				trackN(t, tr, "b", "u", 1)
				if _, err := tr.SetFrequencyCaps("b", capSpecs("1/10m")); err != nil {
					t.Fatal(err)
				}
				if how != "log" {
					if err := tr.Snapshot(); err != nil {
						t.Fatal(err)
					}
				}
				if how == "snapshot+log" {
					trackN(t, tr, "a", "u", 1)
					trackN(t, tr, "a", "v", 1)
				}
				want := answers(t, tr, "u", "a", "b") + " | " + answers(t, tr, "v", "a")
				if err := tr.Close(); err != nil { // no snapshot: the log holds the rest
					t.Fatal(err)
				}
				tr = openDir(t, mode, dir, clock, set)
				if got := answers(t, tr, "u", "a", "b") + " | " + answers(t, tr, "v", "a"); got != want {
					t.Fatalf("after restart: %s, want %s", got, want)
				}
				trackN(t, tr, "a", "u", 1)
				if err := tr.Shutdown(); err != nil {
					t.Fatal(err)
				}
				tr = openDir(t, mode, dir, clock, set)
				n := 3
				if how == "snapshot+log" {
					n = 4
				}
				if got, want := answers(t, tr, "u", "a"), fmt.Sprintf("a: capped %d/3@1h %d/10@24h", n, n); got != want {
					t.Fatalf("after shutdown: %s, want %s", got, want)
				}
			})
		}
	}
}

// TestFrequencyNeverUndercounts: in bloom mode, with many more pairs than
// the sketch is sized for, every count is at least the true number of
// exposures; in exact mode it is the true number.
func TestFrequencyNeverUndercounts(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) {
				o.Dedup = newDedup(t, mode, 0)
				o.Frequency = testFrequency(mode)
			})
			start := clock.Now().Add(-time.Hour)
			const campaigns, users = 5, 2000
			ids := make([][]byte, campaigns)
			for c := range campaigns {
				ids[c] = []byte(fmt.Sprintf("c%d", c))
				createCaps(t, tr, string(ids[c]), start, "1000/1h")
			}
			truth := map[[2]int]uint64{}
			rng := rand.New(rand.NewPCG(1, 2))
			for range 40000 {
				c, u := rng.IntN(campaigns), rng.IntN(users)
				if _, err := tr.Track(imp(string(ids[c]), fmt.Sprint("u", u))); err != nil {
					t.Fatal(err)
				}
				truth[[2]int{c, u}]++
			}
			out := make([]FrequencyResult, campaigns)
			over := 0
			for u := range users {
				if err := tr.Frequency([]byte(fmt.Sprint("u", u)), ids, out); err != nil {
					t.Fatal(err)
				}
				for c, r := range out {
					got, want := r.Exposures[0].Count, truth[[2]int{c, u}]
					switch {
					case got < want:
						t.Fatalf("c%d/u%d: count %d, below the %d exposures", c, u, got, want)
					case got > want && mode == "exact":
						t.Fatalf("c%d/u%d: count %d, want exactly %d", c, u, got, want)
					case got > want:
						over++
					}
				}
			}
			t.Logf("%s: %d of %d counts overestimated", mode, over, campaigns*users)
		})
	}
}
