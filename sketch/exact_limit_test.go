package sketch

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newBounded(t testing.TB, max int) *Exact {
	t.Helper()
	x, err := NewExact(Options{TTL: time.Hour, Slices: 6, MaxPairs: max})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestExactMaxPairs: up to the bound every new pair is recorded; at it a
// new pair is refused with ErrFull and not recorded, while repeats are
// still answered seen.
func TestExactMaxPairs(t *testing.T) {
	for _, tc := range []struct {
		name        string
		max, offers int // bound, distinct pairs offered
		wantAdded   int
	}{
		{"unbounded", 0, 300, 300},
		{"below the bound", 500, 300, 300},
		{"exactly the bound", 300, 300, 300},
		{"one over", 299, 300, 299},
		{"bound of one", 1, 300, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newBounded(t, tc.max)
			added, full := 0, 0
			for i := range tc.offers {
				seen, err := x.TestAndAddLimited(camp, user(i), t0)
				switch {
				case errors.Is(err, ErrFull):
					full++
					if seen {
						t.Fatalf("user %d: seen with ErrFull", i)
					}
				case err != nil:
					t.Fatalf("user %d: %v", i, err)
				case seen:
					t.Fatalf("user %d: a new pair reported seen", i)
				default:
					added++
				}
			}
			if added != tc.wantAdded || full != tc.offers-tc.wantAdded || x.Len() != tc.wantAdded {
				t.Fatalf("added %d, refused %d, Len %d; want %d, %d, %d", added, full, x.Len(), tc.wantAdded, tc.offers-tc.wantAdded, tc.wantAdded)
			}
			for i := range tc.offers {
				// Repeats are answered at the bound; refused pairs were
				// never recorded.
				seen, err := x.TestAndAddLimited(camp, user(i), t0.Add(time.Minute))
				if in := i < tc.wantAdded; seen != in || (in && err != nil) || (!in && !errors.Is(err, ErrFull)) {
					t.Fatalf("user %d again: seen %v, err %v; want seen %v", i, seen, err, in)
				}
				if got := x.Test(camp, user(i), t0); got != (i < tc.wantAdded) {
					t.Fatalf("Test(user %d): got %v, want %v", i, got, i < tc.wantAdded)
				}
			}
			// TestAndAdd cannot count a refused pair: it reports it seen.
			if tc.max > 0 && tc.offers > tc.max && !x.TestAndAdd(camp, user(tc.offers), t0) {
				t.Fatal("TestAndAdd at the bound: got false (counted), want true")
			}
			if x.Len() != tc.wantAdded {
				t.Fatalf("Len after the repeats: got %d, want %d", x.Len(), tc.wantAdded)
			}
		})
	}
}

// TestExactMaxPairsConcurrent races many goroutines offering new and
// repeated pairs: exactly MaxPairs are recorded, and Len never exceeds
// the bound while they run.
func TestExactMaxPairsConcurrent(t *testing.T) {
	const max, workers, perWorker = 1000, 32, 200
	x := newBounded(t, max)
	var added, full atomic.Int64
	var over atomic.Bool
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				if x.Len() > max {
					over.Store(true)
				}
			}
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Neighbouring workers share half their users: repeats and
				// new pairs race on the same keys.
				seen, err := x.TestAndAddLimited(camp, user(w*perWorker/2+i), t0)
				switch {
				case errors.Is(err, ErrFull):
					full.Add(1)
				case !seen:
					added.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	if over.Load() {
		t.Fatal("Len exceeded MaxPairs while pairs were added")
	}
	if added.Load() != max || x.Len() != max {
		t.Fatalf("recorded %d, Len %d; want %d", added.Load(), x.Len(), max)
	}
	distinct := (workers + 1) * perWorker / 2
	if full.Load() < int64(distinct-max) {
		t.Fatalf("refused %d offers, want at least %d", full.Load(), distinct-max)
	}
}

// TestExactMaxPairsReleased: the pairs of expired generations are released
// from the bound, on traffic or Advance, and RetryAfter points at the
// moment the oldest of them expires.
func TestExactMaxPairsReleased(t *testing.T) {
	const max = 100
	slice := 10 * time.Minute
	start := t0.Truncate(slice) // a slice boundary
	for _, tc := range []struct {
		name    string
		advance bool // release by Advance, not by a new pair's own rotation
	}{
		{"on traffic", false},
		{"on Advance", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newBounded(t, max)
			for i := range max { // half in the first slice, half in the third
				at := start
				if i >= max/2 {
					at = start.Add(2 * slice)
				}
				if seen, err := x.TestAndAddLimited(camp, user(i), at); seen || err != nil {
					t.Fatalf("filling user %d: seen %v, err %v", i, seen, err)
				}
			}
			now := start.Add(2*slice + time.Minute)
			if _, err := x.TestAndAddLimited(camp, user(-1), now); !errors.Is(err, ErrFull) {
				t.Fatalf("at the bound: got %v, want ErrFull", err)
			}
			x.Advance(now)
			// The first slice's pairs leave when the eighth slice begins.
			if got, want := x.RetryAfter(now), 7*slice-(now.Sub(start)); got != want {
				t.Fatalf("RetryAfter: got %s, want %s", got, want)
			}
			free := start.Add(7 * slice)
			if _, err := x.TestAndAddLimited(camp, user(-1), free.Add(-time.Nanosecond)); !errors.Is(err, ErrFull) {
				t.Fatalf("just before the first slice expires: got %v, want ErrFull", err)
			}
			if tc.advance {
				x.Advance(free)
				if got := x.Len(); got != max/2 {
					t.Fatalf("Len after Advance: got %d, want %d", got, max/2)
				}
			}
			for i := range max / 2 {
				if seen, err := x.TestAndAddLimited(camp, user(-1-i), free); seen || err != nil {
					t.Fatalf("new pair %d after the first slice expired: seen %v, err %v", i, seen, err)
				}
			}
			if _, err := x.TestAndAddLimited(camp, user(-1000), free); !errors.Is(err, ErrFull) {
				t.Fatalf("full again: got %v, want ErrFull", err)
			}
			x.Advance(free.Add(3 * time.Hour))
			if got := x.Len(); got != 0 {
				t.Fatalf("Len after every slice expired: got %d, want 0", got)
			}
			if got := x.RetryAfter(free.Add(3*time.Hour + time.Minute)); got != slice-time.Minute {
				t.Fatalf("RetryAfter of an empty window: got %s, want the next boundary, %s", got, slice-time.Minute)
			}
		})
	}
}

// TestExactMaxPairsRestore: pairs restored from a snapshot, a loader or Add
// count against the bound, beyond it too: none is dropped, and new pairs
// are refused until enough expire.
func TestExactMaxPairsRestore(t *testing.T) {
	const held, max = 120, 50
	src := newBounded(t, 0)
	for i := range held {
		src.TestAndAdd(camp, user(i), t0)
	}
	snap := state(t, src)
	for _, tc := range []struct {
		name string
		load func(x *Exact)
	}{
		{"snapshot", func(x *Exact) {
			if _, err := x.ReadFrom(bytes.NewReader(snap)); err != nil {
				t.Fatal(err)
			}
		}},
		{"loader", func(x *Exact) {
			l := x.Loader()
			for i := range held {
				l.Add(camp, user(i), t0)
			}
			l.Close()
		}},
		{"add", func(x *Exact) {
			for i := range held {
				x.Add(camp, user(i), t0)
				x.Add(camp, user(i), t0) // a replayed pair twice is one pair
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newBounded(t, max)
			tc.load(x)
			if got := x.Len(); got != held {
				t.Fatalf("Len after restore: got %d, want %d", got, held)
			}
			for i := range held {
				if seen, err := x.TestAndAddLimited(camp, user(i), t0.Add(time.Minute)); !seen || err != nil {
					t.Fatalf("restored user %d: seen %v, err %v; want seen", i, seen, err)
				}
			}
			if _, err := x.TestAndAddLimited(camp, user(held), t0.Add(time.Minute)); !errors.Is(err, ErrFull) {
				t.Fatalf("new pair over a restored bound: got %v, want ErrFull", err)
			}
			later := t0.Add(2 * time.Hour)
			x.Advance(later)
			if got := x.Len(); got != 0 {
				t.Fatalf("Len after the restored pairs expired: got %d, want 0", got)
			}
			if seen, err := x.TestAndAddLimited(camp, user(held), later); seen || err != nil {
				t.Fatalf("new pair once room is free: seen %v, err %v", seen, err)
			}
		})
	}
}
