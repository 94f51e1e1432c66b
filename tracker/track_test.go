package tracker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

// Unit tests of the track decision through the package API: the rules of
// judge in the order the DESIGN's request flow checks them, and what
// Track and TrackBatch answer. The HTTP tests make the same promises on
// the wire; these hold the domain core to them on its own.

// newDedup returns a fresh window of mode with the suite's options and
// maxPairs (exact mode's bound, 0 unbounded).
func newDedup(t testing.TB, mode string, maxPairs int) sketch.Deduper {
	t.Helper()
	o := suiteDedup
	o.MaxPairs = maxPairs
	d, err := sketch.New(mode, o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// openTracker opens a Tracker on clock, adjusted by set, and closes it
// when the test ends (Close after Close is harmless, so a test may stop
// it itself).
func openTracker(t *testing.T, clock *fakeClock, set func(o *Options)) *Tracker {
	t.Helper()
	o := Options{Dedup: newDedup(t, "exact", 0), Now: clock.Now, Logger: quiet, SnapshotInterval: time.Hour}
	if set != nil {
		set(&o)
	}
	tr, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func create(t *testing.T, tr *Tracker, id string, start time.Time) Campaign {
	t.Helper()
	c, err := tr.Create(CampaignSpec{ID: []byte(id), Name: []byte("Campaign " + id), Start: []byte(start.Format(time.RFC3339Nano))})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return c
}

func imp(campaign, user string) *Impression {
	return &Impression{CampaignID: []byte(campaign), UserID: []byte(user)}
}

func stamped(campaign, user string, ts time.Time) *Impression {
	i := imp(campaign, user)
	i.Timestamp, i.HasTimestamp = []byte(ts.Format(time.RFC3339Nano)), true
	return i
}

func total(t *testing.T, tr *Tracker, id string) uint64 {
	t.Helper()
	_, w, err := tr.Stats(id)
	if err != nil {
		t.Fatalf("stats %s: %v", id, err)
	}
	return w.Total
}

// TestJudgeRules: each rule refuses with its own sentinel (compared with
// ==, as front ends do), and when several are broken the first in the
// documented order answers. Nothing refused is counted.
func TestJudgeRules(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = time.Minute })
	now := clock.Now()
	create(t, tr, "c", now.Add(-time.Hour))
	long := strings.Repeat("u", MaxIDBytes+1)
	bad := "\x01"
	cases := []struct {
		name string
		imp  Impression
		want error
	}{
		{"no campaign id", Impression{UserID: []byte("u")}, ErrCampaignIDRequired},
		{"empty campaign id", Impression{CampaignID: []byte{}, UserID: []byte("u")}, ErrCampaignIDRequired},
		{"no campaign id before no user id", Impression{}, ErrCampaignIDRequired},
		{"no user id", Impression{CampaignID: []byte("c")}, ErrUserIDRequired},
		{"empty user id", Impression{CampaignID: []byte("c"), UserID: []byte{}}, ErrUserIDRequired},
		{"user id too long", Impression{CampaignID: []byte("c"), UserID: []byte(long)}, ErrUserIDTooLong},
		{"user length before ad length", Impression{CampaignID: []byte("c"), UserID: []byte(long), AdID: []byte(long)}, ErrUserIDTooLong},
		{"ad id too long", Impression{CampaignID: []byte("c"), UserID: []byte("u"), AdID: []byte(long)}, ErrAdIDTooLong},
		{"lengths before chars", Impression{CampaignID: []byte("c"), UserID: []byte(bad), AdID: []byte(long)}, ErrAdIDTooLong},
		{"user chars", Impression{CampaignID: []byte("c"), UserID: []byte(bad)}, ErrUserIDChars},
		{"user chars before ad chars", Impression{CampaignID: []byte("c"), UserID: []byte(bad), AdID: []byte(bad)}, ErrUserIDChars},
		{"ad chars", Impression{CampaignID: []byte("c"), UserID: []byte("u"), AdID: []byte(bad)}, ErrAdIDChars},
		{"ad chars before timestamp", Impression{CampaignID: []byte("c"), UserID: []byte("u"), AdID: []byte(bad), Timestamp: []byte("x"), HasTimestamp: true}, ErrAdIDChars},
		{"timestamp format", Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte("yesterday"), HasTimestamp: true}, ErrTimestampFormat},
		{"empty timestamp", Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte{}, HasTimestamp: true}, ErrTimestampFormat},
		{"timestamp before campaign lookup", Impression{CampaignID: []byte("nope"), UserID: []byte("u"), Timestamp: []byte("x"), HasTimestamp: true}, ErrTimestampFormat},
		{"skew before campaign lookup", *stamped("nope", "u", now.Add(time.Hour)), tr.TooFarAhead()},
		{"unknown campaign", *imp("nope", "u"), ErrCampaignNotFound},
		{"unknown campaign before start", *stamped("nope", "u", now.Add(-48*time.Hour)), ErrCampaignNotFound},
		{"before start", *stamped("c", "u", now.Add(-2*time.Hour)), ErrBeforeStart},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dup, err := tr.Track(&tc.imp)
			if err != tc.want || dup {
				t.Fatalf("Track = %v, %v; want false, %v", dup, err, tc.want)
			}
			var out [1]Outcome
			if err := tr.TrackBatch([]Impression{tc.imp}, out[:]); err != nil || out[0].Err != tc.want || out[0].Dup {
				t.Fatalf("TrackBatch = %v, %+v; want outcome %v", err, out[0], tc.want)
			}
		})
	}
	if got := total(t, tr, "c"); got != 0 {
		t.Fatalf("refused impressions counted: total %d", got)
	}
	// A timestamp is read only when the front end says there is one.
	if dup, err := tr.Track(&Impression{CampaignID: []byte("c"), UserID: []byte("u"), Timestamp: []byte("yesterday")}); err != nil || dup {
		t.Fatalf("Track with an unflagged timestamp = %v, %v; want counted", dup, err)
	}
}

// TestIDLengths: MaxIDBytes is the longest id that passes, in bytes, for
// both ids; one byte more is refused. An absent or empty ad id is fine.
func TestIDLengths(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	max := strings.Repeat("é", MaxIDBytes/2) // MaxIDBytes bytes, half as many runes
	for _, tc := range []struct {
		user, ad string
		want     error
	}{
		{max, "", nil},
		{"u1", max, nil},
		{max + "x", "", ErrUserIDTooLong},
		{"u2", max + "x", ErrAdIDTooLong},
	} {
		i := imp("c", tc.user)
		if tc.ad != "" {
			i.AdID = []byte(tc.ad)
		}
		if _, err := tr.Track(i); err != tc.want {
			t.Errorf("user %d bytes, ad %d bytes: %v, want %v", len(tc.user), len(tc.ad), err, tc.want)
		}
	}
	i := imp("c", "u3")
	i.AdID = []byte{}
	if _, err := tr.Track(i); err != nil {
		t.Errorf("empty ad id: %v", err)
	}
	if got := total(t, tr, "c"); got != 3 {
		t.Fatalf("total %d, want 3", got)
	}
}

// TestIDChars: ids are valid UTF-8 without C0, DEL or C1 controls; every
// other character, U+FFFD written out included, passes.
func TestIDChars(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	refused := []string{"\x00", "\x80", "a\x80b", "\xbf", "a\x1f", "\x1fa", "a\x7fb", "\u0080", "x\u009f", "\xff", "a\xc3", "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80"}
	passed := []string{" ", "~", "a b", "\u00a0", "\u00ff", "\ufffd", "日本", "\U0001F600", "\x7e\x20"}
	for _, s := range refused {
		if _, err := tr.Track(imp("c", s)); err != ErrUserIDChars {
			t.Errorf("user %q: %v, want ErrUserIDChars", s, err)
		}
		i := imp("c", "u")
		i.AdID = []byte(s)
		if _, err := tr.Track(i); err != ErrAdIDChars {
			t.Errorf("ad %q: %v, want ErrAdIDChars", s, err)
		}
	}
	for _, s := range passed {
		if dup, err := tr.Track(imp("c", s)); err != nil || dup {
			t.Errorf("user %q: %v, %v; want counted", s, dup, err)
		}
		i := imp("c", "ad user "+s)
		i.AdID = []byte(s)
		if dup, err := tr.Track(i); err != nil || dup {
			t.Errorf("ad %q: %v, %v; want counted", s, dup, err)
		}
	}
	if got := total(t, tr, "c"); got != uint64(2*len(passed)) {
		t.Fatalf("total %d, want %d", got, 2*len(passed))
	}
}

// TestMaxSkew: a timestamp exactly MaxSkew ahead passes, a nanosecond more
// is refused with TooFarAhead's error, which names the skew. With no skew
// only the present and the past pass.
func TestMaxSkew(t *testing.T) {
	for _, skew := range []time.Duration{0, time.Minute} {
		t.Run(skew.String(), func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = skew })
			now := clock.Now()
			create(t, tr, "c", now.Add(-time.Hour))
			if e := tr.TooFarAhead(); e.Kind != Invalid || e.Msg != "timestamp is more than "+skew.String()+" in the future" {
				t.Fatalf("TooFarAhead = %+v", e)
			}
			if _, err := tr.Track(stamped("c", "at", now.Add(skew))); err != nil {
				t.Fatalf("timestamp exactly MaxSkew ahead: %v", err)
			}
			if _, err := tr.Track(stamped("c", "beyond", now.Add(skew+time.Nanosecond))); err != tr.TooFarAhead() {
				t.Fatalf("timestamp MaxSkew+1ns ahead: %v, want TooFarAhead", err)
			}
			if _, err := tr.Track(stamped("c", "past", now.Add(-time.Nanosecond))); err != nil {
				t.Fatalf("timestamp 1ns ago: %v", err)
			}
			if got := total(t, tr, "c"); got != 2 {
				t.Fatalf("total %d, want 2", got)
			}
		})
	}
	if _, err := Open(Options{Dedup: newDedup(t, "exact", 0), MaxSkew: -time.Nanosecond, Logger: quiet}); err == nil {
		t.Fatal("Open accepted a negative MaxSkew")
	}
}

// TestFutureTimestampTakesArrival: within the skew, a timestamp ahead of
// the clock is a drifting client clock and the impression counts at its
// arrival; a past timestamp counts in its own minute.
func TestFutureTimestampTakesArrival(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = 10 * time.Minute })
	now := clock.Now()
	// Starts just after now: an impression judged at its (future)
	// timestamp would pass; judged at its arrival, it is before the start.
	create(t, tr, "later", now.Add(time.Millisecond))
	if _, err := tr.Track(stamped("later", "u", now.Add(5*time.Minute))); err != ErrBeforeStart {
		t.Fatalf("future timestamp of a campaign starting after the arrival: %v, want ErrBeforeStart", err)
	}
	create(t, tr, "c", now.Add(-time.Hour))
	if _, err := tr.Track(stamped("c", "future", now.Add(5*time.Minute))); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Track(stamped("c", "past", now.Add(-3*time.Minute))); err != nil {
		t.Fatal(err)
	}
	_, first, counts, err := tr.Series("c", 4)
	if err != nil {
		t.Fatal(err)
	}
	if first != stats.Minute(now)-3 || len(counts) != 4 || counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] != 1 {
		t.Fatalf("series from %d: %v; want one impression 3 minutes ago and one now (from %d)", first, counts, stats.Minute(now)-3)
	}
}

// TestBeforeStart: the start instant itself is in the campaign, a
// nanosecond before it is not; without a timestamp the arrival is judged.
func TestBeforeStart(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	now := clock.Now()
	start := now.Add(-time.Minute)
	create(t, tr, "c", start)
	if _, err := tr.Track(stamped("c", "a", start.Add(-time.Nanosecond))); err != ErrBeforeStart {
		t.Fatalf("1ns before the start: %v, want ErrBeforeStart", err)
	}
	if _, err := tr.Track(stamped("c", "b", start)); err != nil {
		t.Fatalf("at the start: %v", err)
	}
	create(t, tr, "soon", now.Add(time.Second))
	if _, err := tr.Track(imp("soon", "a")); err != ErrBeforeStart {
		t.Fatalf("untimed impression before the start: %v, want ErrBeforeStart", err)
	}
	clock.Add(time.Second)
	if _, err := tr.Track(imp("soon", "a")); err != nil {
		t.Fatalf("untimed impression at the start: %v", err)
	}
}

// TestTrackDedup: a repeat within the window is a duplicate and is not
// counted; the same user in another campaign is a new pair.
func TestTrackDedup(t *testing.T) {
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, mode, 0) })
			now := clock.Now()
			create(t, tr, "a", now.Add(-time.Hour))
			create(t, tr, "b", now.Add(-time.Hour))
			for i, tc := range []struct {
				campaign, user string
				dup            bool
			}{{"a", "u", false}, {"a", "u", true}, {"b", "u", false}, {"a", "v", false}, {"b", "u", true}} {
				dup, err := tr.Track(imp(tc.campaign, tc.user))
				if err != nil || dup != tc.dup {
					t.Fatalf("#%d %s/%s: %v, %v; want dup %v", i, tc.campaign, tc.user, dup, err, tc.dup)
				}
			}
			if a, b := total(t, tr, "a"), total(t, tr, "b"); a != 2 || b != 1 {
				t.Fatalf("totals a %d, b %d; want 2, 1", a, b)
			}
		})
	}
}

// TestTrackBatch: every item gets its own outcome, in order; repeats
// within the batch are duplicates; a refused item does not stop the rest;
// items of alternating campaigns are each counted in their own.
func TestTrackBatch(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "durable"}[durable], func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			tr := openTracker(t, clock, func(o *Options) {
				if durable {
					o.DataDir = t.TempDir()
				}
			})
			now := clock.Now()
			create(t, tr, "a", now.Add(-time.Hour))
			create(t, tr, "b", now.Add(-time.Minute))
			items := []Impression{
				*imp("a", "u1"),
				*imp("b", "u1"),
				*imp("a", "u1"),
				*imp("nope", "u1"),
				*imp("a", ""),
				*stamped("b", "u2", now.Add(-time.Hour)),
				*imp("b", "u3"),
				*imp("a", "u3"),
				*imp("b", "u1"),
			}
			want := []Outcome{{}, {}, {Dup: true}, {Err: ErrCampaignNotFound}, {Err: ErrUserIDRequired}, {Err: ErrBeforeStart}, {}, {}, {Dup: true}}
			out := make([]Outcome, len(items)+1)
			out[len(items)] = Outcome{Dup: true} // past the items: untouched
			for i := range items {
				out[i] = Outcome{Dup: true, Err: errors.New("stale")} // every outcome is set
			}
			if err := tr.TrackBatch(items, out); err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				if out[i] != w {
					t.Errorf("item %d: %+v, want %+v", i, out[i], w)
				}
			}
			if !out[len(items)].Dup {
				t.Error("TrackBatch wrote past the items")
			}
			if a, b := total(t, tr, "a"), total(t, tr, "b"); a != 2 || b != 2 {
				t.Fatalf("totals a %d, b %d; want 2, 2", a, b)
			}
			// An empty batch changes nothing.
			if err := tr.TrackBatch(nil, nil); err != nil {
				t.Fatal(err)
			}
			// The pool's buffers are reused: a second batch is judged afresh.
			out2 := make([]Outcome, 2)
			if err := tr.TrackBatch([]Impression{*imp("b", "u9"), *imp("a", "u1")}, out2); err != nil || out2[0] != (Outcome{}) || out2[1] != (Outcome{Dup: true}) {
				t.Fatalf("second batch: %v, %+v", err, out2)
			}
		})
	}
}

// TestDedupLimit: an exact window at its bound refuses new pairs with
// ErrDedupLimit, counting nothing; repeats of held pairs are still
// duplicates; RetryAfter says when room frees. Without a bound it is 0.
func TestDedupLimit(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, "exact", 2) })
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	for _, u := range []string{"u1", "u2"} {
		if _, err := tr.Track(imp("c", u)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tr.Track(imp("c", "u3")); err != ErrDedupLimit {
		t.Fatalf("a new pair at the bound: %v, want ErrDedupLimit", err)
	}
	if dup, err := tr.Track(imp("c", "u1")); err != nil || !dup {
		t.Fatalf("a held pair at the bound: %v, %v; want duplicate", dup, err)
	}
	out := make([]Outcome, 2)
	if err := tr.TrackBatch([]Impression{*imp("c", "u4"), *imp("c", "u2")}, out); err != nil || out[0] != (Outcome{Err: ErrDedupLimit}) || out[1] != (Outcome{Dup: true}) {
		t.Fatalf("batch at the bound: %v, %+v", err, out)
	}
	if got := total(t, tr, "c"); got != 2 {
		t.Fatalf("total %d, want 2", got)
	}
	if ra := tr.RetryAfter(); ra <= 0 || ra > time.Hour+10*time.Minute {
		t.Fatalf("RetryAfter = %v, want a wait within the window", ra)
	}
	free := openTracker(t, clock, func(o *Options) { o.Dedup = newDedup(t, "bloom", 0) })
	if ra := free.RetryAfter(); ra != 0 {
		t.Fatalf("RetryAfter of an unbounded window = %v, want 0", ra)
	}
}

// TestOpenOptions: Open refuses options that name no state or two.
func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{Logger: quiet}); err == nil || !strings.Contains(err.Error(), "Dedup is required") {
		t.Fatalf("Open without Dedup: %v", err)
	}
	// The default clock and logger serve when none is given.
	tr, err := Open(Options{Dedup: newDedup(t, "bloom", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(tr.Now()); d < -time.Minute || d > time.Minute {
		t.Errorf("the default clock reads %v", tr.Now())
	}
	if err := tr.Ready(); err != nil {
		t.Errorf("Ready = %v", err)
	}
	if err := tr.Snapshot(); err == nil {
		t.Error("Snapshot without a data directory succeeded")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal("Shutdown after Close:", err)
	}
}

// TestCloseIsIdempotent: the first of Close and Shutdown decides, and
// later calls answer the same.
func TestCloseIsIdempotent(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	dir := t.TempDir()
	tr := openTracker(t, clock, func(o *Options) { o.DataDir = dir })
	create(t, tr, "c", clock.Now().Add(-time.Hour))
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
