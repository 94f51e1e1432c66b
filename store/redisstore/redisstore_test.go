package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// testOptions are the options of the stores under test: a 1 h window of
// 6 slices, on Redis's clock moved by the test run's clock shift. The
// timeout is generous: these tests check answers under -race on a busy
// machine, not Redis's latency (TestRedisDown checks the default's).
func testOptions(t *testing.T, srv *redistest.Server, mode string, ttl time.Duration) Options {
	return Options{URL: srv.URL, Mode: mode, ClockOffset: redistest.ClockShift(t), Timeout: 5 * time.Second,
		Dedup: sketch.Options{TTL: ttl, Slices: 6, Capacity: 10000, FalsePositiveRate: 0.001}}
}

func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func openTest(t *testing.T, srv *redistest.Server, mode string, ttl time.Duration) *Store {
	t.Helper()
	return open(t, testOptions(t, srv, mode, ttl))
}

// fakeClock is a shared clock that tests move by hand. It starts at the
// test run's time (the wall clock moved by its clock shift), half a minute
// into a minute, so that no fixed date is ever compared with Redis's.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t *testing.T) *fakeClock {
	return &fakeClock{t: time.Now().Add(redistest.ClockShift(t)).Truncate(time.Minute).Add(30 * time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openClocked opens a store whose shared clock is clock instead of Redis's.
func openClocked(t *testing.T, srv *redistest.Server, mode string, ttl time.Duration, clock *fakeClock) *Store {
	t.Helper()
	o := testOptions(t, srv, mode, ttl)
	o.Clock, o.ClockOffset = clock.Now, 0
	return open(t, o)
}

// track tracks items and fails the test on an error.
func track(t *testing.T, s *Store, items ...Item) []bool {
	t.Helper()
	counted := make([]bool, len(items))
	if err := s.Track(items, counted); err != nil {
		t.Fatalf("Track: %v", err)
	}
	return counted
}

func TestCampaigns(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.CreateCampaign(Campaign{ID: "a", Name: "A ☀", Start: start}, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCampaign(Campaign{ID: "a", Name: "again"}, 2); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if _, err := s.CreateCampaign(Campaign{ID: "b", Name: "B"}, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCampaign(Campaign{ID: "c", Name: "C"}, 2); !errors.Is(err, ErrLimit) {
		t.Fatalf("third create with max 2: %v, want ErrLimit", err)
	}
	c, ok, err := s.GetCampaign("a")
	if err != nil || !ok || c.Name != "A ☀" || !c.Start.Equal(start) {
		t.Fatalf("GetCampaign = %+v, %v, %v", c, ok, err)
	}
	if _, ok, err := s.GetCampaign("zzz"); ok || err != nil {
		t.Fatalf("GetCampaign(unknown) = %v, %v", ok, err)
	}
	all, err := s.ListCampaigns()
	if err != nil || len(all) != 2 {
		t.Fatalf("ListCampaigns = %v, %v", all, err)
	}
}

// TestTrackCountsOnce: in both modes, a batch with repeats (inside it and
// of earlier calls) over two campaigns counts each pair once, in its
// minute, and the total agrees.
func TestTrackCountsOnce(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openClocked(t, srv, mode, time.Hour, clock)
			m := clock.Now().Unix() / 60
			items := []Item{
				{"a", []byte("u1"), m, m, nil}, {"a", []byte("u2"), m - 1, m, nil}, {"a", []byte("u1"), m, m, nil},
				{"b", []byte("u1"), m, m, nil}, {"b", []byte("u1"), m - 5, m, nil},
			}
			if got, want := track(t, s, items...), []bool{true, true, false, true, false}; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("counted %v, want %v", got, want)
			}
			clock.Add(time.Minute)
			if got := track(t, s, items[:2]...); got[0] || got[1] {
				t.Fatalf("repeats a minute later counted: %v", got)
			}
			mins, total, err := s.Minutes("a", m, 60)
			if err != nil || total != 2 || mins[59] != 1 || mins[58] != 1 {
				t.Fatalf("a: total %d, last minutes %v, err %v", total, mins[55:], err)
			}
		})
	}
}

// TestConcurrentInstances: two stores on one Redis (two instances) racing
// on the same pairs count each exactly once.
func TestConcurrentInstances(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			// Filters far larger than the pairs: keys are random per Redis
			// (imp:hashkey), and at the default test capacity a false
			// positive among 2000 fresh pairs is likely.
			o := testOptions(t, srv, mode, time.Hour)
			o.Dedup.Capacity = 1_000_000
			stores := []*Store{open(t, o), open(t, o)}
			const pairs = 2000
			minute := time.Now().Unix() / 60
			var counted atomic.Int64
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := stores[w%2]
					out := make([]bool, 1)
					for i := range pairs {
						if err := s.Track([]Item{{"c", fmt.Appendf(nil, "u%d", i), minute, minute, nil}}, out); err != nil {
							t.Error(err)
							return
						}
						if out[0] {
							counted.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			_, total, err := stores[0].Minutes("c", minute, 1)
			if err != nil {
				t.Fatal(err)
			}
			if counted.Load() != pairs || total != pairs {
				t.Fatalf("counted %d answers, total %d; want %d each", counted.Load(), total, pairs)
			}
		})
	}
}

// TestTTLExpiry: in both modes a pair is blocked within the TTL and counted
// again after TTL + TTL/K, by the shared clock; and Redis frees the keys of
// generations that left the window, by its own clock.
func TestTTLExpiry(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			clock := newFakeClock(t)
			s := openClocked(t, srv, mode, time.Hour, clock)
			item := Item{"c", []byte("u"), 1, 1, nil}
			if !track(t, s, item)[0] {
				t.Fatal("first sight not counted")
			}
			clock.Add(59 * time.Minute)
			if track(t, s, item)[0] {
				t.Fatal("repeat within the TTL counted")
			}
			clock.Add(12 * time.Minute)
			if !track(t, s, item)[0] {
				t.Fatal("pair still blocked after TTL + TTL/K")
			}

			short := openTest(t, srv, mode, 600*time.Millisecond) // 100ms slices, Redis's clock
			srv.FlushAll(t)
			track(t, short, Item{"d", []byte("u"), 1, 1, nil})
			if mode == "bloom" && len(redisKeys(t, short, "imp:{d}:bp*")) != 2 {
				t.Fatalf("bloom keys after one pair: %v, want a sub-filter and the pool's hash", redisKeys(t, short, "imp:{d}:*"))
			}
			deadline := time.Now().Add(5 * time.Second) // a real Redis expires them: bounded generously
			// The total, the minute, its hour and its day stay, the
			// reach of its user (rx, rt and its bucket's, kept a day) and
			// the pair's exposures (kept 175 h).
			for dbsize(t, short) > 8 {
				if time.Now().After(deadline) {
					t.Fatalf("generation keys still in Redis 5s after a 600ms window: %d keys", dbsize(t, short))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// skewedClock is an instance clock off the real one by skew.
func skewedClock(skew time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(skew) }
}

// TestSkewedInstances: instances whose clocks are off by −2 h, −70 min and
// +2 h share one window on Redis's clock. A pair sent to each of them in
// turn is counted once; every generation key is created with the time left
// in its slice's window, never already expired; and once the shared clock
// has moved TTL + TTL/K on (instances run with that much more offset), the
// pair is counted again, once.
func TestSkewedInstances(t *testing.T) {
	skews := []time.Duration{-2 * time.Hour, -70 * time.Minute, 2 * time.Hour, 0}
	const ttl = time.Hour
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			instances := func(later time.Duration) []*Store {
				var out []*Store
				for _, skew := range skews {
					o := testOptions(t, srv, mode, ttl)
					o.Now, o.ClockOffset = skewedClock(skew), o.ClockOffset+later
					out = append(out, open(t, o))
				}
				return out
			}
			for _, later := range []time.Duration{0, ttl + ttl/6 + time.Second} {
				stores := instances(later)
				for i, s := range stores {
					if d := s.ClockSkew() + skews[i]; d.Abs() > time.Second {
						t.Fatalf("instance %s off measures Redis's clock %s off it", skews[i], s.ClockSkew())
					}
				}
				counted := 0
				for round := range 3 {
					for i, s := range stores {
						if track(t, s, Item{"c", []byte("u"), 1, 1, nil})[0] {
							counted++
						}
						if round == 0 && i == 0 { // a batch goes the same way
							for j, c := range track(t, s, Item{"c", []byte("u"), 1, 1, nil}, Item{"c", []byte("v"), 1, 1, nil}) {
								if c != (j == 1) {
									t.Fatalf("batch on an instance %s off: counted %v", skews[i], c)
								}
							}
						}
					}
				}
				if counted != 1 {
					t.Fatalf("shared clock +%s: pair counted %d times across instances %v off, want once", later, counted, skews)
				}
				checkGenerationTTLs(t, stores[0], ttl, 6)
			}
			mins, total, err := instances(0)[0].Minutes("c", 1, 1)
			if err != nil || total != 4 || mins[0] != 4 {
				t.Fatalf("total %d, minute %v, err %v; want 4 (u and v, in each window)", total, mins, err)
			}
		})
	}
}

// checkGenerationTTLs fails unless every dedup key in Redis expires within
// the window. Exact mode: every generation within the window its slice has
// left, more than (K−1)·TTL/K (the oldest live one was created at least
// that long before it leaves) and at most (K+1)·TTL/K. Bloom mode: see
// checkPoolTTLs.
func checkGenerationTTLs(t *testing.T, s *Store, ttl time.Duration, k int) {
	t.Helper()
	if !s.exact {
		checkPoolTTLs(t, s, ttl, k)
		return
	}
	slice := ttl / time.Duration(k)
	keys := redisKeys(t, s, "imp:{*}:xs:*")
	if len(keys) == 0 {
		t.Fatal("no generation keys")
	}
	for _, key := range keys {
		if d := pttl(t, s, key); d <= time.Duration(k-1)*slice || d > time.Duration(k+1)*slice {
			t.Fatalf("generation %s expires in %s; want within (%s, %s]", key, d, time.Duration(k-1)*slice, time.Duration(k+1)*slice)
		}
	}
}

// checkPoolTTLs fails unless every campaign's pool is consistent and
// expires within the window: the metadata hash and every sub-filter it
// lists exist with a TTL in (0, TTL + TTL/K], and no sub-filter key exists
// that the hash does not list.
func checkPoolTTLs(t *testing.T, s *Store, ttl time.Duration, k int) {
	t.Helper()
	max := ttl + ttl/time.Duration(k)
	metas := redisKeys(t, s, "imp:{*}:bpm")
	if len(metas) == 0 {
		t.Fatal("no pool metadata keys")
	}
	listed := map[string]bool{}
	for _, meta := range metas {
		prefix := strings.TrimSuffix(meta, "bpm")
		c := *s.client.Load()
		h, err := c.Do(t.Context(), c.B().Hgetall().Key(meta).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		for f := range h {
			if strings.HasPrefix(f, "l") {
				listed[prefix+"bp:"+f[1:]] = true
			}
		}
		if d := pttl(t, s, meta); d <= 0 || d > max {
			t.Fatalf("pool metadata %s expires in %s; want within (0, %s]", meta, d, max)
		}
	}
	for key := range listed {
		if d := pttl(t, s, key); d <= 0 || d > max {
			t.Fatalf("sub-filter %s expires in %s; want within (0, %s]", key, d, max)
		}
	}
	for _, key := range redisKeys(t, s, "imp:{*}:bp:*") {
		if !listed[key] {
			t.Fatalf("sub-filter %s is in Redis but not in its pool's metadata", key)
		}
	}
}

// redisKeys returns the keys matching pattern.
func redisKeys(t testing.TB, s *Store, pattern string) []string {
	t.Helper()
	c := *s.client.Load()
	keys, err := c.Do(context.Background(), c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// pttl returns the time key has left to live, negative if it has no expiry
// (−1ms) or does not exist (−2ms).
func pttl(t testing.TB, s *Store, key string) time.Duration {
	t.Helper()
	c := *s.client.Load()
	ms, err := c.Do(context.Background(), c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(ms) * time.Millisecond
}

// TestSteppedClock: an instance whose clock steps two hours after it
// measured Redis's guesses the wrong slice once, is told the right one by
// the script, and still answers right: the pair counted once, then a
// duplicate.
func TestSteppedClock(t *testing.T) {
	srv := redistest.Start(t)
	var step atomic.Int64
	o := testOptions(t, srv, "exact", time.Hour)
	o.Now = func() time.Time { return time.Now().Add(time.Duration(step.Load())) }
	s := open(t, o)
	step.Store(int64(2 * time.Hour))
	if !track(t, s, Item{"c", []byte("u"), 1, 1, nil})[0] {
		t.Fatal("first sight after the clock step not counted")
	}
	if s.EpochRetries() == 0 {
		t.Fatal("no retry after a two-hour clock step: the guess was not checked")
	}
	if track(t, s, Item{"c", []byte("u"), 1, 1, nil})[0] {
		t.Fatal("repeat counted after the clock step")
	}
	got := track(t, s, Item{"c", []byte("u"), 1, 1, nil}, Item{"c", []byte("w"), 1, 1, nil})
	if got[0] || !got[1] {
		t.Fatalf("batch after the step: counted %v, want [false true]", got)
	}
}

func TestSliceMicros(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		k    int
		want int64
	}{
		{time.Hour, 6, 600_000_000},       // whole: the slice numbers of the in-process window
		{time.Hour, 7, 514_285_715},       // 514285714.28… µs, rounded up
		{6 * time.Millisecond, 6, 1000},   // the smallest slice allowed
		{6*time.Millisecond + 1, 6, 1001}, // a nanosecond more is a microsecond more
		{time.Duration(1<<62) / 1000 * 1000, 1, 1 << 62 / 1000},
	} {
		if got := sliceMicros(tc.ttl, tc.k); got != tc.want {
			t.Errorf("sliceMicros(%s, %d) = %d, want %d", tc.ttl, tc.k, got, tc.want)
		}
	}
}

func TestFloorDiv(t *testing.T) {
	for _, tc := range []struct{ a, b, want int64 }{
		{7, 2, 3}, {6, 2, 3}, {-1, 2, -1}, {-2, 2, -1}, {-3, 2, -2}, {0, 5, 0},
	} {
		if got := floorDiv(tc.a, tc.b); got != tc.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// dbsize counts the keys in Redis but imp:hashkey, which the stores put
// back within a health check of a flush.
func dbsize(t *testing.T, s *Store) int64 {
	ctx, cancel := s.ctx()
	defer cancel()
	c := *s.client.Load()
	res := c.DoMulti(ctx, c.B().Dbsize().Build(), c.B().Exists().Key(hashKey).Build())
	n, err := res[0].AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	k, err := res[1].AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n - k
}

// TestRedisDown: calls fail fast while Redis is down, Healthy turns false,
// and both recover once it is back.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	o := testOptions(t, srv, "exact", time.Hour)
	o.Timeout = 0 // the default, 200ms
	s := open(t, o)
	srv.Stop()
	out := make([]bool, 1)
	start := time.Now()
	if err := s.Track([]Item{{"c", []byte("u"), 1, 1, nil}}, out); err == nil {
		t.Fatal("Track succeeded with Redis down")
	}
	// Generous on a loaded machine: this tells failing fast from hanging,
	// not how fast.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Track took %s to fail, want about the 200ms timeout", d)
	}
	if s.Healthy() {
		t.Fatal("Healthy with Redis down")
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("not healthy within 5s of Redis coming back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The health check's connection is a new one, but a client connection
	// that was open when Redis stopped fails its next call once (EOF)
	// before it reconnects, as any call in flight during an outage does:
	// the caller gets an error (a 503 to the client) and may retry. So
	// recovery is: within a few calls, a fresh pair is counted.
	for i := 0; ; i++ {
		err := s.Track([]Item{{"c", []byte(fmt.Sprint("u", i)), 1, 1, nil}}, out)
		if err == nil {
			if !out[0] {
				t.Fatalf("a fresh pair after recovery was not counted")
			}
			break
		}
		if i >= 8 || time.Now().After(deadline) {
			t.Fatalf("Track after recovery, call %d: %v", i, err)
		}
	}
}

// TestStartBeforeRedis: a store opened while Redis is down still opens;
// calls fail fast until Redis comes up, then work without a restart.
func TestStartBeforeRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s := openTest(t, srv, "exact", time.Hour)
	out := make([]bool, 1)
	if err := s.Track([]Item{{"c", []byte("u"), 1, 1, nil}}, out); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Track before Redis: %v, want ErrNotConnected", err)
	}
	if s.Healthy() {
		t.Fatal("healthy before Redis is up")
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("not healthy within 5s of Redis starting")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Track([]Item{{"c", []byte("u"), 1, 1, nil}}, out); err != nil || !out[0] {
		t.Fatalf("Track once Redis is up: %v, %v", out[0], err)
	}
}

// TestMinuteKeysExpire: a minute counter outlives the day window it serves
// (at least 25 h), and the total does not expire.
func TestMinuteKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	out := make([]bool, 2)
	if err := s.Track([]Item{{"c", []byte("u1"), 42, 42, nil}, {"c", []byte("u2"), 42, 42, nil}}, out); err != nil {
		t.Fatal(err)
	}
	track(t, s, Item{"c", []byte("u3"), 43, 43, nil})
	c := *s.client.Load()
	for _, k := range []string{"imp:{c}:m:42", "imp:{c}:m:43"} {
		ttl, err := c.Do(t.Context(), c.B().Ttl().Key(k).Build()).AsInt64()
		if err != nil || ttl < 25*3600 {
			t.Fatalf("TTL %s = %d s, %v; want at least 25 h", k, ttl, err)
		}
	}
	if ttl, _ := c.Do(t.Context(), c.B().Ttl().Key("imp:{c}:total").Build()).AsInt64(); ttl != -1 {
		t.Fatalf("total has TTL %d, want none (-1)", ttl)
	}
}

// TestSharedHashKey: every store on one Redis adopts the secret the first
// one set in imp:hashkey, so a pair counted through one is a duplicate
// through the other; if Redis loses the key, the stores put theirs back.
func TestSharedHashKey(t *testing.T) {
	srv := redistest.Start(t)
	a := openTest(t, srv, "bloom", time.Hour)
	b := openTest(t, srv, "bloom", time.Hour)
	sa, sb := a.keys().Secret(), b.keys().Secret()
	if sa != sb {
		t.Fatalf("two stores on one Redis: secrets %x and %x", sa, sb)
	}
	c := *a.client.Load()
	v, err := c.Do(t.Context(), c.B().Get().Key(hashKey).Build()).ToString()
	if err != nil || v != hex.EncodeToString(sa[:]) {
		t.Fatalf("%s = %q, %v; want %x", hashKey, v, err, sa)
	}
	if a.keys().KeyString("c", "u") == sketch.KeyOfString("c", "u") {
		t.Fatal("the store hashes pairs without its secret")
	}
	if got := track(t, a, Item{"c", []byte("u"), 1, 1, nil}); !got[0] {
		t.Fatal("first impression not counted")
	}
	if got := track(t, b, Item{"c", []byte("u"), 1, 1, nil}); got[0] {
		t.Fatal("a pair counted through one store counts again through the other")
	}
	srv.FlushAll(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := c.Do(t.Context(), c.B().Get().Key(hashKey).Build()).ToString()
		if v == hex.EncodeToString(sa[:]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q 5s after a flush, want the stores' %x back", hashKey, v, sa)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.HashKeyChanges() != 0 || b.HashKeyChanges() != 0 {
		t.Fatalf("secret changes %d, %d, want none", a.HashKeyChanges(), b.HashKeyChanges())
	}
}

// TestMalformedHashKey: a store does not serve with a secret it cannot
// read.
func TestMalformedHashKey(t *testing.T) {
	srv := redistest.Start(t)
	a := openTest(t, srv, "bloom", time.Hour)
	c := *a.client.Load()
	srv.FlushAll(t)
	if err := c.Do(t.Context(), c.B().Set().Key(hashKey).Value("not hex").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	b := openTest(t, srv, "bloom", time.Hour)
	out := make([]bool, 1)
	if err := b.Track([]Item{{"c", []byte("u"), 1, 1, nil}}, out); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Track with a malformed %s: %v, want ErrNotConnected", hashKey, err)
	}
}
