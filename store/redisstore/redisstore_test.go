package redisstore

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

func openTest(t *testing.T, srv *redistest.Server, mode string, ttl time.Duration) *Store {
	t.Helper()
	s, err := Open(Options{URL: srv.URL, Mode: mode, Dedup: sketch.Options{TTL: ttl, Slices: 6, Capacity: 10000, FalsePositiveRate: 0.001}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

var now = time.Date(2026, 11, 26, 12, 30, 30, 0, time.UTC)

func TestCampaigns(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.CreateCampaign(Campaign{ID: "a", Name: "A ☀", Start: start}, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCampaign(Campaign{ID: "a", Name: "again"}, 2); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	if err := s.CreateCampaign(Campaign{ID: "b", Name: "B"}, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCampaign(Campaign{ID: "c", Name: "C"}, 2); !errors.Is(err, ErrLimit) {
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
			s := openTest(t, srv, mode, time.Hour)
			m := now.Unix() / 60
			items := []Item{
				{"a", []byte("u1"), m}, {"a", []byte("u2"), m - 1}, {"a", []byte("u1"), m},
				{"b", []byte("u1"), m}, {"b", []byte("u1"), m - 5},
			}
			counted := make([]bool, len(items))
			if err := s.Track(items, now, counted); err != nil {
				t.Fatal(err)
			}
			if want := []bool{true, true, false, true, false}; fmt.Sprint(counted) != fmt.Sprint(want) {
				t.Fatalf("counted %v, want %v", counted, want)
			}
			if err := s.Track(items[:2], now.Add(time.Minute), counted[:2]); err != nil || counted[0] || counted[1] {
				t.Fatalf("repeats a minute later: %v %v", counted[:2], err)
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
			stores := []*Store{openTest(t, srv, mode, time.Hour), openTest(t, srv, mode, time.Hour)}
			const pairs = 2000
			var counted atomic.Int64
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := stores[w%2]
					out := make([]bool, 1)
					for i := range pairs {
						if err := s.Track([]Item{{"c", fmt.Appendf(nil, "u%d", i), now.Unix() / 60}}, now, out); err != nil {
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
			_, total, _ := stores[0].Minutes("c", now.Unix()/60, 1)
			if counted.Load() != pairs || total != pairs {
				t.Fatalf("counted %d answers, total %d; want %d each", counted.Load(), total, pairs)
			}
		})
	}
}

// TestTTLExpiry: in both modes a pair is blocked within the TTL and counted
// again after TTL + TTL/K, by the arrival clock; and Redis frees the keys of
// generations that left the window, by its own clock.
func TestTTLExpiry(t *testing.T) {
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			s := openTest(t, srv, mode, time.Hour)
			out := make([]bool, 1)
			item := []Item{{"c", []byte("u"), 1}}
			if s.Track(item, now, out); !out[0] {
				t.Fatal("first sight not counted")
			}
			if s.Track(item, now.Add(59*time.Minute), out); out[0] {
				t.Fatal("repeat within the TTL counted")
			}
			if s.Track(item, now.Add(71*time.Minute), out); !out[0] {
				t.Fatal("pair still blocked after TTL + TTL/K")
			}

			short := openTest(t, srv, mode, 600*time.Millisecond) // 100ms slices
			srv.FlushAll(t)
			short.Track([]Item{{"d", []byte("u"), 1}}, time.Now(), out)
			deadline := time.Now().Add(3 * time.Second)
			for dbsize(t, short) > 2 { // the total and the minute stay
				if time.Now().After(deadline) {
					t.Fatalf("generation keys still in Redis 3s after a 600ms window: %d keys", dbsize(t, short))
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func dbsize(t *testing.T, s *Store) int64 {
	ctx, cancel := s.ctx()
	defer cancel()
	n, err := (*s.client.Load()).Do(ctx, (*s.client.Load()).B().Dbsize().Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedisDown: calls fail fast while Redis is down, Healthy turns false,
// and both recover once it is back.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	srv.Stop()
	out := make([]bool, 1)
	start := time.Now()
	if err := s.Track([]Item{{"c", []byte("u"), 1}}, now, out); err == nil {
		t.Fatal("Track succeeded with Redis down")
	}
	if d := time.Since(start); d > time.Second {
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
	if err := s.Track([]Item{{"c", []byte("u"), 1}}, now, out); err != nil || !out[0] {
		t.Fatalf("Track after recovery: %v, %v", out[0], err)
	}
}

// TestStartBeforeRedis: a store opened while Redis is down still opens;
// calls fail fast until Redis comes up, then work without a restart.
func TestStartBeforeRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s := openTest(t, srv, "exact", time.Hour)
	out := make([]bool, 1)
	if err := s.Track([]Item{{"c", []byte("u"), 1}}, now, out); !errors.Is(err, ErrNotConnected) {
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
	if err := s.Track([]Item{{"c", []byte("u"), 1}}, now, out); err != nil || !out[0] {
		t.Fatalf("Track once Redis is up: %v, %v", out[0], err)
	}
}

// TestMinuteKeysExpire: a minute counter outlives the day window it serves
// (at least 25 h), and the total does not expire.
func TestMinuteKeysExpire(t *testing.T) {
	srv := redistest.Start(t)
	s := openTest(t, srv, "exact", time.Hour)
	out := make([]bool, 2)
	if err := s.Track([]Item{{"c", []byte("u1"), 42}, {"c", []byte("u2"), 42}}, now, out); err != nil {
		t.Fatal(err)
	}
	s.Track([]Item{{"c", []byte("u3"), 43}}, now, out[:1])
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
