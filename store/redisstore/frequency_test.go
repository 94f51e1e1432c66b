package redisstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// frequency checks user against qs and fails the test on an error.
func frequency(t *testing.T, s *Store, user string, qs ...FrequencyQuery) [][]uint64 {
	t.Helper()
	counts := frequencyCounts(qs)
	if err := s.Frequency([]byte(user), qs, counts); err != nil {
		t.Fatalf("Frequency: %v", err)
	}
	return counts
}

func frequencyCounts(qs []FrequencyQuery) [][]uint64 {
	counts := make([][]uint64, len(qs))
	for i, q := range qs {
		counts[i] = make([]uint64, len(q.Windows))
	}
	return counts
}

func query(campaign string, windows ...time.Duration) FrequencyQuery {
	return FrequencyQuery{Campaign: campaign, Windows: windows}
}

// exposures is the model of the counting rule: the exposures of one pair,
// and Count(w, now) as sketch's exact mode counts it.
type exposures []time.Time

func (e exposures) count(w time.Duration, now time.Time) uint64 {
	g := int64(sketch.FrequencySlice(w) / time.Second)
	lo, hi := floorDiv(now.Add(-w).Unix(), g), floorDiv(now.Unix(), g)
	var n uint64
	for _, t := range e {
		if s := floorDiv(t.Unix(), g); s >= lo && s <= hi {
			n++
		}
	}
	return n
}

// sliceStart is the start of the slice of granularity g that t is in.
func sliceStart(t time.Time, g time.Duration) time.Time {
	us := g.Microseconds()
	return time.UnixMicro(floorDiv(t.UnixMicro(), us) * us).UTC()
}

// TestFrequencyLevels: the levels are those of sketch.FrequencySlice, and
// each level's ring holds more pairs of slices than any of its windows
// reads (one more, for a reader up to a slice behind the writer), so a
// field is rewritten only once no window reads it.
func TestFrequencyLevels(t *testing.T) {
	bounds := []time.Duration{sketch.MinFrequencyWindow, time.Hour, 6 * time.Hour, 36 * time.Hour, sketch.MaxFrequencyWindow + 1}
	base := 0
	for i, l := range freqLevels {
		lo, hi := bounds[i], bounds[i+1]-1
		for _, w := range []time.Duration{lo, hi} {
			if got, err := freqLevelOf(w); err != nil || got != i {
				t.Fatalf("window %v: level %d, %v; want %d", w, got, err, i)
			}
		}
		slices := int((hi+l.g-1)/l.g) + 1 // the most a window reads: ⌈w/g⌉ + 1
		if pairs := slices/2 + 1; l.slots != pairs+1 {
			t.Errorf("level %d (%v): %d fields, want %d (%d slices, %d pairs of them read at most)", i, l.g, l.slots, pairs+1, slices, pairs)
		}
		if l.base != base {
			t.Errorf("level %d starts at field %d, want %d", i, l.base, base)
		}
		base += l.slots
	}
	if base != FrequencyFields {
		t.Errorf("%d fields, FrequencyFields says %d", base, FrequencyFields)
	}
	for _, w := range []time.Duration{time.Minute - 1, sketch.MaxFrequencyWindow + 1, 0} {
		if _, err := freqLevelOf(w); !errors.Is(err, ErrFrequencyWindow) {
			t.Errorf("window %v: %v, want ErrFrequencyWindow", w, err)
		}
	}
}

// TestFrequencyRingCount: a window counts the halves of the pairs of
// slices it covers, and a field only if it holds a pair that maps to it.
func TestFrequencyRingCount(t *testing.T) {
	const m = int64(time.Minute / time.Microsecond)
	now := 1001*m + 5 // slice 1001 of level 0: the second half of pair 500
	for _, tc := range []struct {
		name  string
		field freqField
		w     time.Duration
		want  uint64
	}{
		{"both halves of the current pair", freqField{500 % 32, 500, 3, 4}, time.Minute, 7},
		{"the even half, one slice back", freqField{500 % 32, 500, 3, 0}, time.Minute, 3},
		{"the odd half of the oldest pair read", freqField{499 % 32, 499, 3, 4}, 2 * time.Minute, 4},
		{"both halves of an older pair read", freqField{499 % 32, 499, 3, 4}, 3 * time.Minute, 7},
		{"an older pair left in the field read", freqField{500 % 32, 500 - 32, 3, 4}, time.Minute, 0},
		{"a pair in a field it does not map to", freqField{501 % 32, 500, 3, 4}, time.Minute, 0},
		{"a newer pair than now", freqField{501 % 32, 501, 3, 4}, time.Minute, 0},
		{"a field of another level", freqField{32 + 500%20, 500, 3, 4}, time.Minute, 0},
	} {
		if got := (freqRing{tc.field}).count(0, tc.w, now); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestFrequencyExposures: every item a track script takes is an exposure
// of its pair, counted or duplicate, single or batched, repeated in a
// batch; items refused (STALE, or made again for the slice: EPOCH) are
// none. Windows of every level are read at once, campaigns in one call,
// and a stale Ref is named and the others answered.
func TestFrequencyExposures(t *testing.T) {
	all := []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 168 * time.Hour}
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openClocked(t, srv, mode, time.Hour, clock)
			m := clock.Now().Unix() / 60
			it := func(c, u string) Item { return Item{c, []byte(u), m, m, nil} }
			track(t, s, it("c", "u1"))
			track(t, s, it("c", "u1")) // a duplicate
			track(t, s, it("c", "u1"), it("c", "u2"), it("c", "u1"), it("d", "u1"))
			got := frequency(t, s, "u1", query("c", all...), query("d", time.Hour), query("never", time.Hour), query("c"))
			if want := "[[4 4 4 4] [1] [0] []]"; fmt.Sprint(got) != want {
				t.Fatalf("u1: %v, want %s", got, want)
			}
			if got := frequency(t, s, "u2", query("c", all...)); fmt.Sprint(got) != "[[1 1 1 1]]" {
				t.Fatalf("u2: %v", got)
			}

			c, err := s.CreateCampaign(Campaign{ID: "v", Name: "V", Caps: []Cap{{3, time.Hour}}}, 10)
			if err != nil {
				t.Fatal(err)
			}
			v0 := Ref("v", c.Gen, c.Ver)
			track(t, s, Item{v0, []byte("u1"), m, m, nil})
			c, _, err = s.UpdateCampaign("v", func(c Campaign) (Campaign, error) { c.Caps = nil; return c, nil })
			if err != nil {
				t.Fatal(err)
			}
			v1 := Ref("v", c.Gen, c.Ver)
			var stale *StaleError
			if err := s.Track([]Item{{v0, []byte("u1"), m, m, nil}}, make([]bool, 1)); !errors.As(err, &stale) {
				t.Fatalf("stale track: %v", err)
			}
			if err := s.Track([]Item{{v0, []byte("u1"), m, m, nil}, {v0, []byte("u2"), m, m, nil}}, make([]bool, 2)); !errors.As(err, &stale) {
				t.Fatalf("stale batch: %v", err)
			}
			qs := []FrequencyQuery{query(v0, time.Hour), query(v1, time.Hour), query("c", time.Hour)}
			counts := frequencyCounts(qs)
			err = s.Frequency([]byte("u1"), qs, counts)
			if !errors.As(err, &stale) || fmt.Sprint(stale.Refs) != fmt.Sprint([]string{v0}) {
				t.Fatalf("Frequency with a stale Ref: %v, want a StaleError naming it", err)
			}
			if fmt.Sprint(counts) != "[[0] [1] [4]]" {
				t.Fatalf("counts beside a stale Ref: %v, want [[0] [1] [4]] (the refused tracks are no exposure)", counts)
			}

		})
	}
}

// TestFrequencyEpochRetry: an exact-mode call made again for the shared
// clock's slice (EPOCH) records its exposure once.
func TestFrequencyEpochRetry(t *testing.T) {
	srv := redistest.Start(t)
	var step atomic.Int64
	o := testOptions(t, srv, "exact", time.Hour)
	o.Now = func() time.Time { return time.Now().Add(time.Duration(step.Load())) }
	s := open(t, o)
	step.Store(int64(2 * time.Hour))
	track(t, s, Item{"c", []byte("u"), 1, 1, nil})
	if s.EpochRetries() == 0 {
		t.Fatal("no retry after a two-hour clock step")
	}
	if got := frequency(t, s, "u", query("c", time.Hour)); got[0][0] != 1 {
		t.Fatalf("one impression made again for its slice: %d exposures, want 1", got[0][0])
	}
}

// TestFrequencyWindowBoundaries: for windows at both ends of every level,
// an exposure at T is counted by every check from T until the end of T's
// slice plus the window, and by none from then on, by explicit values of
// the shared clock; checks read every window of a campaign at once.
func TestFrequencyWindowBoundaries(t *testing.T) {
	windows := []time.Duration{
		time.Minute, 5*time.Minute + 59*time.Second, // 1m slices
		6 * time.Minute, time.Hour - time.Microsecond, // 1m
		time.Hour, 90 * time.Minute, 6*time.Hour - 1, // 10m
		6 * time.Hour, 24 * time.Hour, 36*time.Hour - time.Second, // 1h
		36 * time.Hour, 168 * time.Hour, // 6h
	}
	srv := redistest.Start(t)
	clock := newFakeClock(t)
	s := openClocked(t, srv, "exact", time.Hour, clock)
	// T: 7 minutes and 1.5 seconds into a 6-hour slice, so in the middle
	// of a slice at every level.
	T := sliceStart(clock.Now(), 6*time.Hour).Add(6*time.Hour + 7*time.Minute + 1500*time.Millisecond)
	clock.t = T
	track(t, s, Item{"c", []byte("u"), 1, 1, nil})
	e := exposures{T}
	type check struct {
		at   time.Time
		want uint64
		w    time.Duration
	}
	var checks []check
	for _, w := range windows {
		g := sketch.FrequencySlice(w)
		end := sliceStart(T, g).Add(g).Add(w) // the first instant that no longer counts T
		for _, at := range []time.Time{T, T.Add(w - time.Microsecond), end.Add(-time.Microsecond), end} {
			at = at.Truncate(time.Microsecond) // the shared clock's resolution
			want := e.count(w, at)
			if (at.Before(end)) != (want == 1) {
				t.Fatalf("BUG: the model counts %d at T%+v for %v", want, at.Sub(T), w)
			}
			checks = append(checks, check{at, want, w})
		}
	}
	for _, c := range checks {
		clock.t = c.at
		got := frequency(t, s, "u", query("c", c.w, sketch.MaxFrequencyWindow))
		if week := e.count(sketch.MaxFrequencyWindow, c.at); got[0][0] != c.want || got[0][1] != week {
			t.Errorf("window %v at T%+v: %v, want [%d %d]", c.w, c.at.Sub(T), got[0], c.want, week)
		}
	}
}

// TestFrequencySlotReuse: at every level, a field that held an older
// pair of slices is not counted, and is rewritten from zero by the next
// exposure that maps to it.
func TestFrequencySlotReuse(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock(t)
	s := openClocked(t, srv, "exact", time.Hour, clock)
	for i, l := range freqLevels {
		u := fmt.Sprint("u", i)
		T := sliceStart(clock.Now(), 6*time.Hour).Add(2 * time.Second)
		clock.t = T
		track(t, s, Item{"c", []byte(u), 1, 1, nil})
		w := 6 * l.g // the level's shortest window (1m at level 0)
		if i == 0 {
			w = time.Minute
		}
		// 2R slices on, the field of T's pair of slices is the one read.
		later := T.Add(time.Duration(2*l.slots) * l.g)
		clock.t = later
		if got := frequency(t, s, u, query("c", w)); got[0][0] != 0 {
			t.Fatalf("level %d: an exposure %v old counted in a %v window: %d", i, later.Sub(T), w, got[0][0])
		}
		track(t, s, Item{"c", []byte(u), 1, 1, nil})
		if got := frequency(t, s, u, query("c", w)); got[0][0] != 1 {
			t.Fatalf("level %d: the field kept the old pair's count: %d, want 1", i, got[0][0])
		}
		clock.t = later.Add(time.Duration(2*l.slots) * 6 * time.Hour) // past every level's ring
	}
}

// TestFrequencyModel: a seeded random run of exposures (single, batched,
// repeated in a batch, several users) over more than a week, the shared
// clock now and then stepping back a little, and checks of random
// windows, against the model of the counting rule: every count exact, in
// both modes.
func TestFrequencyModel(t *testing.T) {
	windows := []time.Duration{time.Minute, 2 * time.Minute, 5*time.Minute + 59*time.Second, 6 * time.Minute,
		59 * time.Minute, time.Hour, 90*time.Minute + 500*time.Millisecond, 5 * time.Hour, 6 * time.Hour, 24 * time.Hour,
		35 * time.Hour, 36 * time.Hour, 100 * time.Hour, 168 * time.Hour}
	gaps := []time.Duration{0, time.Second, 17 * time.Second, time.Minute, time.Minute, 7 * time.Minute, 7 * time.Minute,
		40 * time.Minute, 40 * time.Minute, 3 * time.Hour, 11 * time.Hour}
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openClocked(t, srv, mode, time.Hour, clock)
			users := []string{"u0", "u1", "u2"}
			model := map[string]exposures{}
			rng := rand.New(rand.NewPCG(7, 11))
			start := clock.Now()
			steps := 0
			for clock.Now().Sub(start) < 20*24*time.Hour {
				steps++
				clock.Add(gaps[rng.IntN(len(gaps))] + time.Duration(rng.Int64N(1e6))*time.Microsecond)
				if rng.IntN(8) == 0 { // the shared clock steps back: exposures after it are not counted until it is back
					clock.Add(-time.Duration(rng.Int64N(int64(3*time.Minute/time.Microsecond))) * time.Microsecond)
				}
				now := clock.Now().Truncate(time.Microsecond)
				var batch []Item
				for range 1 + rng.IntN(3) {
					u := users[rng.IntN(len(users))]
					batch = append(batch, Item{"c", []byte(u), 1, 1, nil})
					model[u] = append(model[u], now)
				}
				track(t, s, batch...)
				u := users[rng.IntN(len(users))]
				var ws []time.Duration
				for range 1 + rng.IntN(4) {
					ws = append(ws, windows[rng.IntN(len(windows))])
				}
				got := frequency(t, s, u, query("c", ws...))
				for j, w := range ws {
					if want := model[u].count(w, now); got[0][j] != want {
						t.Fatalf("step %d, %s, window %v at +%v: %d, want %d", steps, u, w, now.Sub(start), got[0][j], want)
					}
				}
			}
			t.Logf("%d steps", steps)
		})
	}
}

// TestFrequencyMemoryBounded: a pair exposed in every slice of every
// level's ring fills its hash to FrequencyFields fields and no more,
// whatever comes after; the hash stays a listpack and expires 175 h after
// the last exposure.
func TestFrequencyMemoryBounded(t *testing.T) {
	srv := redistest.Start(t)
	clock := newFakeClock(t)
	s := openClocked(t, srv, "exact", time.Hour, clock)
	key := freqKey("imp:{c}:", s.pairLo("c", []byte("u")))
	cl := *s.client.Load()
	expose := func(n int, every time.Duration) {
		for range n {
			track(t, s, Item{"c", []byte("u"), 1, 1, nil})
			clock.Add(every)
		}
	}
	// Each phase fills a level's ring: 2R slices of it, one exposure each.
	for i := len(freqLevels) - 1; i >= 0; i-- {
		l := freqLevels[i]
		expose(2*l.slots, l.g)
	}
	hlen := func() int64 {
		n, err := cl.Do(t.Context(), cl.B().Hlen().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := hlen(); n != FrequencyFields {
		t.Fatalf("%d fields after filling every ring, want %d", n, FrequencyFields)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for range 300 {
		clock.Add(time.Duration(rng.Int64N(int64(3 * time.Hour))))
		expose(1, 0)
	}
	if n := hlen(); n > FrequencyFields {
		t.Fatalf("%d fields, more than %d", n, FrequencyFields)
	}
	enc, err := cl.Do(t.Context(), cl.B().ObjectEncoding().Key(key).Build()).ToString()
	if err != nil || enc != "listpack" {
		t.Fatalf("encoding %q, %v; want listpack", enc, err)
	}
	if d := pttl(t, s, key); d <= 174*time.Hour || d > 175*time.Hour {
		t.Fatalf("expires in %v, want 175h", d)
	}
	n, err := cl.Do(t.Context(), cl.B().MemoryUsage().Key(key).Samples(0).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a full pair's hash: %d fields, %d bytes (MEMORY USAGE)", hlen(), n)
}

// TestFrequencySkewedInstances: on Redis's own clock, an exposure tracked
// through an instance whose clock is 2 h ahead is counted at once by a
// check through one 2 h behind, in the shortest window, and the other
// way round.
func TestFrequencySkewedInstances(t *testing.T) {
	srv := redistest.Start(t)
	var stores []*Store
	for _, skew := range []time.Duration{2 * time.Hour, -2 * time.Hour} {
		o := testOptions(t, srv, "exact", time.Hour)
		o.Now = skewedClock(skew)
		stores = append(stores, open(t, o))
	}
	for i := range 3 {
		a, b := stores[i%2], stores[1-i%2]
		track(t, a, Item{"c", []byte("u"), 1, 1, nil})
		if got := frequency(t, b, "u", query("c", time.Minute, sketch.MaxFrequencyWindow)); got[0][0] < 1 || got[0][1] != uint64(i+1) {
			t.Fatalf("exposure %d through one instance, checked through the other: %v", i+1, got[0])
		}
	}
}

// TestFrequencyDeleted: deleting a campaign removes its exposures; a
// check by its Ref is refused as stale, and the campaign made again
// starts from none.
func TestFrequencyDeleted(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	c, err := s.CreateCampaign(Campaign{ID: "c", Name: "C"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	ref := Ref("c", c.Gen, c.Ver)
	track(t, s, Item{ref, []byte("u"), 1, 1, nil})
	if got := frequency(t, s, "u", query(ref, time.Hour)); got[0][0] != 1 {
		t.Fatalf("before delete: %v", got)
	}
	if ok, err := s.DeleteCampaign("c"); err != nil || !ok {
		t.Fatalf("DeleteCampaign = %v, %v", ok, err)
	}
	if keys := redisKeys(t, s, "imp:{c}:*fq:*"); len(keys) != 0 {
		t.Fatalf("exposure keys after delete: %v", keys)
	}
	var stale *StaleError
	if err := s.Frequency([]byte("u"), []FrequencyQuery{query(ref, time.Hour)}, [][]uint64{{0}}); !errors.As(err, &stale) {
		t.Fatalf("check of a deleted campaign: %v, want a StaleError", err)
	}
	c, err = s.CreateCampaign(Campaign{ID: "c", Name: "C"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := frequency(t, s, "u", query(Ref("c", c.Gen, c.Ver), time.Hour)); got[0][0] != 0 {
		t.Fatalf("made again: %v", got)
	}
}

// TestFrequencyOnCluster: exposures are kept in each campaign's slot and
// one check reads campaigns on every node.
func TestFrequencyOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	s := open(t, Options{URL: cl.URL, Mode: "exact", ClockOffset: redistest.ClockShift(t), Timeout: 5 * time.Second,
		Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10000, FalsePositiveRate: 0.001}})
	var qs []FrequencyQuery
	for i := range 12 {
		c, err := s.CreateCampaign(Campaign{ID: fmt.Sprint("k", i), Name: "K"}, 100)
		if err != nil {
			t.Fatal(err)
		}
		ref := Ref(c.ID, c.Gen, c.Ver)
		var batch []Item
		for range i {
			batch = append(batch, Item{ref, []byte("u"), 1, 1, nil})
		}
		if len(batch) > 0 {
			track(t, s, batch...)
		}
		qs = append(qs, query(ref, time.Hour))
	}
	got := frequency(t, s, "u", qs...)
	var want []string
	for i := range 12 {
		want = append(want, fmt.Sprint(i))
	}
	if g := strings.Trim(strings.ReplaceAll(fmt.Sprint(got), "] [", " "), "[]"); g != strings.Join(want, " ") {
		t.Fatalf("counts %v, want 0..11", got)
	}
}
