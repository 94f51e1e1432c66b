//go:build !race

package sketch

import (
	"testing"
	"time"
)

// TestFrequencyAddDoesNotAllocate pins the hot path: a sketch Add, and an
// exact Add of a pair already holding a cell for the current minute,
// allocate nothing.
func TestFrequencyAddDoesNotAllocate(t *testing.T) {
	f := NewFrequencySketch(1000)
	at := freqBase.Add(10 * time.Hour)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		i++
		f.Add(fkey(i), at.Add(time.Duration(i)*time.Second))
	}); n != 0 {
		t.Errorf("sketch Add allocates %v times per call, want 0", n)
	}
	x := NewFrequencyExact()
	for k := range 100 {
		x.Add(fkey(k), at.Add(-time.Hour)) // older cells, to be sure they are kept
		x.Add(fkey(k), at)
	}
	if n := testing.AllocsPerRun(1000, func() {
		i++
		x.Add(fkey(i%100), at.Add(time.Duration(i%60)*time.Millisecond))
	}); n != 0 {
		t.Errorf("exact Add in the pair's current minute allocates %v times per call, want 0", n)
	}
}

// TestFrequencyCountDoesNotAllocate pins Count at zero allocations, for
// windows of every level.
func TestFrequencyCountDoesNotAllocate(t *testing.T) {
	now := freqBase.Add(200 * time.Hour)
	for _, k := range freqKinds {
		f := k.make()
		for i := range 2000 {
			f.Add(fkey(i%50), now.Add(-time.Duration(i)*5*time.Minute))
		}
		for _, w := range freqTestWindows {
			i := 0
			if n := testing.AllocsPerRun(200, func() {
				i++
				f.Count(fkey(i%60), w, now)
			}); n != 0 {
				t.Errorf("%s: Count of %v allocates %v times per call, want 0", k.name, w, n)
			}
		}
	}
}
