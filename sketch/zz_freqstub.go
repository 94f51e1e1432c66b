package sketch

import (
	"io"
	"sync"
	"time"
)

// TEMPORARY stub of the frequency API; replaced by frequency.go.
type Frequency interface {
	Add(key uint64, at time.Time)
	Count(key uint64, w time.Duration, now time.Time) uint64
	Advance(now time.Time)
	Bytes() int64
	WriteTo(w io.Writer) (int64, error)
	ReadFrom(r io.Reader) (int64, error)
}

const MinFrequencyWindow = time.Minute
const MaxFrequencyWindow = 168 * time.Hour

func FrequencySlice(w time.Duration) time.Duration {
	for _, g := range []time.Duration{6 * time.Hour, time.Hour, 10 * time.Minute} {
		if 6*g <= w {
			return g
		}
	}
	return time.Minute
}

type FrequencyExact struct {
	mu sync.Mutex
	m  map[uint64][]int64
}

func NewFrequencyExact() *FrequencyExact { return &FrequencyExact{m: map[uint64][]int64{}} }
type FrequencySketch struct{ FrequencyExact }

func NewFrequencySketch(capacity int) *FrequencySketch { return &FrequencySketch{*NewFrequencyExact()} }

func (f *FrequencyExact) Add(key uint64, at time.Time) {
	f.mu.Lock()
	f.m[key] = append(f.m[key], at.Unix())
	f.mu.Unlock()
}
func (f *FrequencyExact) Count(key uint64, w time.Duration, now time.Time) uint64 {
	g := int64(FrequencySlice(w) / time.Second)
	lo := floorDiv(now.Add(-w).Unix(), g)
	hi := floorDiv(now.Unix(), g)
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint64
	for _, t := range f.m[key] {
		if s := floorDiv(t, g); s >= lo && s <= hi {
			n++
		}
	}
	return n
}
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
func (f *FrequencyExact) Advance(now time.Time)                { }
func (f *FrequencyExact) Bytes() int64                         { return 0 }
func (f *FrequencyExact) WriteTo(w io.Writer) (int64, error)   { return 0, nil }
func (f *FrequencyExact) ReadFrom(r io.Reader) (int64, error)  { return 0, nil }
