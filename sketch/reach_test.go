package sketch

import (
	"math"
	"testing"
	"time"
)

// splitmix64 gives the test's user hashes: uniform, like Hasher.Key's.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

var reachEpoch = time.Date(2031, 5, 6, 10, 0, 0, 0, time.UTC) // on a 5-minute boundary

func TestReachExactWindows(t *testing.T) {
	var r Reach
	now := reachEpoch
	add := func(user uint64, at time.Time) { r.Add(splitmix64(user), at, now) }
	add(1, now)                                // hour, day, total
	add(1, now.Add(-time.Minute))              // a repeat: nothing new
	add(2, now.Add(-time.Hour))                // the hour's first bucket (60 to 65 min)
	add(3, now.Add(-time.Hour-time.Second))    // the bucket before: day only
	add(4, now.Add(-24*time.Hour))             // the day's first bucket
	add(5, now.Add(-24*time.Hour-time.Second)) // older: total only
	add(6, now.Add(time.Hour))                 // ahead of now: counted at now
	add(5, now.Add(-2*time.Hour))              // user 5 seen again, within the day
	add(3, now.Add(-48*time.Hour))             // an older sighting moves nothing
	want := ReachWindow{LastHour: 3, LastDay: 6, Total: 6}
	if got := r.Read(now); got != want {
		t.Fatalf("Read = %+v, want %+v", got, want)
	}
	// 4 minutes 59 later: the same buckets.
	if got := r.Read(now.Add(4*time.Minute + 59*time.Second)); got != want {
		t.Fatalf("Read 4m59s later = %+v, want %+v", got, want)
	}
	// 5 minutes later, user 2's bucket left the hour and user 4's the day.
	want = ReachWindow{LastHour: 2, LastDay: 5, Total: 6}
	if got := r.Read(now.Add(5 * time.Minute)); got != want {
		t.Fatalf("Read 5m later = %+v, want %+v", got, want)
	}
}

func TestReachBeforeEpoch(t *testing.T) {
	if got := ReachBucketOf(time.Unix(-1, 0)); got != -1 {
		t.Fatalf("bucket of -1s = %d, want -1", got)
	}
	if got := ReachBucketOf(time.Unix(-300, 0)); got != -1 {
		t.Fatalf("bucket of -300s = %d, want -1", got)
	}
	if got := ReachBucketOf(time.Unix(299, 0)); got != 0 {
		t.Fatalf("bucket of 299s = %d, want 0", got)
	}
	var r Reach
	now := time.Unix(-600, 0)
	r.Add(1, now, now)
	r.Add(2, now.Add(-time.Minute), now)
	if got := r.Read(now); got != (ReachWindow{LastHour: 2, LastDay: 2, Total: 2}) {
		t.Fatalf("Read = %+v", got)
	}
}

// TestReachExactBelowThreshold: up to ReachExact-1 users the figures are
// exact; the ReachExact-th switches to estimates, which stay close.
func TestReachExactBelowThreshold(t *testing.T) {
	var r Reach
	now := reachEpoch
	for u := range uint64(ReachExact - 1) {
		at := now.Add(-time.Duration(u) * time.Minute) // spread over 16 h
		r.Add(splitmix64(u), at, now)
		r.Add(splitmix64(u), at, now) // repeats change nothing
	}
	got := r.Read(now)
	// Users 0..60 are within the hour's buckets: now is on a bucket
	// boundary, so the window starts exactly an hour back.
	want := ReachWindow{LastHour: 61, LastDay: ReachExact - 1, Total: ReachExact - 1}
	if got != want {
		t.Fatalf("Read = %+v, want %+v", got, want)
	}
	r.Add(splitmix64(ReachExact), now, now)
	got = r.Read(now)
	if !got.Estimated {
		t.Fatalf("Read after %d users = %+v, want estimates", ReachExact, got)
	}
	for _, c := range []struct {
		name      string
		got, want uint64
	}{{"total", got.Total, ReachExact}, {"day", got.LastDay, ReachExact}, {"hour", got.LastHour, 62}} {
		if d := math.Abs(float64(c.got)-float64(c.want)) / float64(c.want); d > 0.05 {
			t.Errorf("%s = %d, want %d within 5%%", c.name, c.got, c.want)
		}
	}
}

// TestReachError measures the relative error at 1k, 100k and 10M users
// (DESIGN.md quotes these runs): within four standard errors of the
// precision, 0.81% for the total and 1.63% for the windows.
func TestReachError(t *testing.T) {
	sizes := []int{1000, 100_000, 10_000_000}
	if testing.Short() {
		sizes = sizes[:2]
	}
	now := reachEpoch
	for _, n := range sizes {
		var r Reach
		for u := range uint64(n) {
			// Half the users in the last hour, all in the last day.
			at := now.Add(-time.Duration(u%2) * 2 * time.Hour)
			r.AddBucket(splitmix64(u), ReachBucketOf(at), ReachBucketOf(now))
		}
		w := r.Read(now)
		for _, c := range []struct {
			name  string
			got   uint64
			want  int
			sigma float64
		}{
			{"total", w.Total, n, 1.04 / math.Sqrt(1<<reachTotalPrecision)},
			{"last_day", w.LastDay, n, 1.04 / math.Sqrt(1<<reachWindowPrecision)},
			{"last_hour", w.LastHour, n / 2, 1.04 / math.Sqrt(1<<reachWindowPrecision)},
		} {
			rel := (float64(c.got) - float64(c.want)) / float64(c.want)
			t.Logf("%d users: %s %d, error %+.3f%%", n, c.name, c.got, 100*rel)
			if math.Abs(rel) > 4*c.sigma {
				t.Errorf("%d users: %s = %d, error %.3f%% beyond 4σ (%.2f%%)", n, c.name, c.got, 100*rel, 400*c.sigma)
			}
		}
	}
}

func TestReachBinaryRoundTrip(t *testing.T) {
	now := reachEpoch
	for _, n := range []int{0, 10, ReachExact - 1, 5000} {
		var r Reach
		for u := range uint64(n) {
			r.Add(splitmix64(u), now.Add(-time.Duration(u)*time.Minute), now)
		}
		b, err := r.AppendBinary([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:6]) != "prefix" {
			t.Fatal("AppendBinary overwrote the prefix")
		}
		var back Reach
		if err := back.UnmarshalBinary(b[6:]); err != nil {
			t.Fatalf("%d users: %v", n, err)
		}
		for _, at := range []time.Time{now, now.Add(3 * time.Hour), now.Add(30 * time.Hour)} {
			if got, want := back.Read(at), r.Read(at); got != want {
				t.Fatalf("%d users at %v: read back %+v, want %+v", n, at, got, want)
			}
		}
		// The restored state keeps counting where the original would.
		r.Add(splitmix64(1<<40), now, now)
		back.Add(splitmix64(1<<40), now, now)
		if got, want := back.Read(now), r.Read(now); got != want {
			t.Fatalf("%d users, one more: %+v, want %+v", n, got, want)
		}
		for cut := range len(b) - 6 {
			var bad Reach
			if bad.UnmarshalBinary(b[6:6+cut]) == nil {
				t.Fatalf("%d users: a form cut to %d of %d bytes was accepted", n, cut, len(b)-6)
			}
			if n > 20 && cut > 40 {
				break // the prefixes are what matter
			}
		}
	}
	var r Reach
	if err := r.UnmarshalBinary([]byte{2, 0, 0}); err == nil {
		t.Fatal("version 2 accepted")
	}
	if err := r.UnmarshalBinary([]byte{1, 2}); err == nil {
		t.Fatal("mode 2 accepted")
	}
	if err := r.UnmarshalBinary([]byte{1, 0, 0, 0}); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// TestReachConcurrent: adds from many goroutines lose no user (-race).
func TestReachConcurrent(t *testing.T) {
	var r Reach
	now := reachEpoch
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for u := range uint64(200) {
				r.Add(splitmix64(uint64(g)*1000+u), now, now)
				r.Read(now)
			}
		}()
	}
	for range 4 {
		<-done
	}
	if got := r.Read(now); got != (ReachWindow{LastHour: 800, LastDay: 800, Total: 800}) {
		t.Fatalf("Read = %+v, want 800 users in every window", got)
	}
}

func BenchmarkReachAdd(b *testing.B) {
	now := reachEpoch
	nb := ReachBucketOf(now)
	b.Run("fresh", func(b *testing.B) {
		var r Reach
		for i := range b.N {
			r.AddBucket(splitmix64(uint64(i)), nb, nb)
		}
	})
	b.Run("repeat", func(b *testing.B) {
		var r Reach
		for i := range 100_000 {
			r.AddBucket(splitmix64(uint64(i)), nb, nb)
		}
		b.ResetTimer()
		for i := range b.N {
			r.AddBucket(splitmix64(uint64(i%100_000)), nb, nb)
		}
	})
}
