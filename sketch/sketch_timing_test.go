package sketch

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// benchPairs are (campaign, user) pairs; walking them in order and wrapping
// around mixes fresh pairs (first lap) with repeats (later laps).
type benchPair struct{ campaign, user []byte }

var (
	benchOnce  sync.Once
	benchData  []benchPair
	benchStart = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
)

const benchN = 1 << 20

func pairs() []benchPair {
	benchOnce.Do(func() {
		benchData = make([]benchPair, benchN)
		for i := range benchData {
			benchData[i] = benchPair{[]byte(fmt.Sprintf("campaign-%d", i%100)), []byte(fmt.Sprintf("user-%08d", i*7919%benchN))}
		}
	})
	return benchData
}

// BenchmarkTestAndAdd measures one dedup decision from raw ids, hashing
// included, on every core, in two workloads measured apart: fresh, every
// pair never seen before (its user id made in the loop, about 10 ns paid by
// every contender alike), the clock crossing a slice boundary every 2^16
// operations per goroutine so rotation is part of the cost; and repeat,
// every pair one of 65,536 added before the timer starts, at one instant.
func BenchmarkTestAndAdd(b *testing.B) {
	opts := Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001}
	contenders := []struct {
		name string
		make func(b *testing.B) func(campaign, user []byte, now time.Time) bool
	}{
		{"bloom", func(b *testing.B) func([]byte, []byte, time.Time) bool {
			return newDeduper(b, "bloom", opts).TestAndAdd
		}},
		{"exact", func(b *testing.B) func([]byte, []byte, time.Time) bool {
			return newDeduper(b, "exact", opts).TestAndAdd
		}},
		// The naive design: 64 bloom/v3 filters of capacity/64 behind one
		// mutex each, TestAndAdd, a single generation (no TTL at all).
		{"naive-baseline", func(b *testing.B) func([]byte, []byte, time.Time) bool {
			n := newNaive(10_000_000, 0.001)
			return func(c, u []byte, _ time.Time) bool { return n.testAndAdd(benchPair{c, u}) }
		}},
	}
	for _, c := range contenders {
		b.Run(c.name+"/fresh", func(b *testing.B) { benchFresh(b, c.make(b)) })
		b.Run(c.name+"/repeat", func(b *testing.B) { benchRepeat(b, c.make(b)) })
	}
}

// benchFresh sends pairs never sent before: user ids made of the
// goroutine's number and a counter, on one of 100 campaigns.
func benchFresh(b *testing.B, op func(campaign, user []byte, now time.Time) bool) {
	campaigns := make([][]byte, 100)
	for i := range campaigns {
		campaigns[i] = fmt.Appendf(nil, "campaign-%d", i)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := seq.Add(1)
		var buf [32]byte
		var i uint64
		for pb.Next() {
			user := strconv.AppendUint(append(strconv.AppendUint(buf[:0], g, 10), '-'), i, 10)
			op(campaigns[i%100], user, benchStart.Add(time.Duration(i>>16)*time.Minute))
			i++
		}
	})
}

// benchRepeat sends repeats of 65,536 pairs added before the timer starts.
func benchRepeat(b *testing.B, op func(campaign, user []byte, now time.Time) bool) {
	ps := pairs()[:1<<16]
	for _, p := range ps {
		op(p.campaign, p.user, benchStart)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(1) * 104729
		for pb.Next() {
			p := ps[i%uint64(len(ps))]
			if !op(p.campaign, p.user, benchStart) {
				b.Fatal("a repeat was counted")
			}
			i++
		}
	})
}

type naiveShard struct {
	mu sync.Mutex
	f  *bloom.BloomFilter
}

type naive struct {
	seed   maphash.Seed
	shards [64]naiveShard
	buf    sync.Pool
}

func newNaive(capacity uint, p float64) *naive {
	n := &naive{seed: maphash.MakeSeed()}
	for i := range n.shards {
		n.shards[i].f = bloom.NewWithEstimates(capacity/64, p)
	}
	n.buf.New = func() any { b := make([]byte, 0, 64); return &b }
	return n
}

func (n *naive) testAndAdd(p benchPair) bool {
	bp := n.buf.Get().(*[]byte)
	k := append(append(append((*bp)[:0], p.campaign...), 0), p.user...)
	s := &n.shards[maphash.Bytes(n.seed, k)%64]
	s.mu.Lock()
	seen := s.f.TestAndAdd(k)
	s.mu.Unlock()
	*bp = k
	n.buf.Put(bp)
	return seen
}

// BenchmarkKey compares the keyed hash windows use (SipHash-2-4-128) with
// the unkeyed murmur3-128 baseline, for a UUID user on a 10-byte campaign
// id and for a 200-byte user.
func BenchmarkKey(b *testing.B) {
	h := NewHasher(NewSecret())
	c := []byte("campaign-1")
	for _, u := range []struct {
		name string
		id   []byte
	}{
		{"uuid", []byte("0b7c4a9e-3f1d-4c2a-9d8e-6a5b4c3d2e1f")},
		{"200B", bytes.Repeat([]byte("u"), 200)},
	} {
		b.Run("murmur/"+u.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				KeyOf(c, u.id)
			}
		})
		b.Run("siphash/"+u.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.Key(c, u.id)
			}
		})
	}
}

// BenchmarkPoolStats is the cost of the pool gauges a metrics scrape
// computes, at the default layout.
func BenchmarkPoolStats(b *testing.B) {
	bl, err := NewBloom(Options{})
	if err != nil {
		b.Fatal(err)
	}
	bl.Advance(benchStart)
	b.ReportAllocs()
	for b.Loop() {
		bl.Stats()
	}
}

// BenchmarkRepeats measures repeats of pairs counted long before, so their
// blocks are no longer in cache: n pairs are counted, then walked over
// again in a scattered order, one goroutine, hashing excluded. With a
// million pairs this is the cold path of production repeats; with 64Ki it
// is what the handler benchmarks see.
func BenchmarkRepeats(b *testing.B) {
	for _, n := range []int{1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			d, err := NewBloom(Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001})
			if err != nil {
				b.Fatal(err)
			}
			keys := make([]Key, n)
			for i := range keys {
				keys[i] = KeyOfString("campaign", fmt.Sprint(i))
				d.TestAndAddKey(keys[i], benchStart)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if !d.TestAndAddKey(keys[(i*7919)&(n-1)], benchStart) {
					b.Fatal("a repeat was counted")
				}
			}
		})
	}
}

// BenchmarkFreshLookup measures the lookup of a fresh pair (the costly
// case: every live sub-filter is probed) at the default layout in three
// states of the window: empty; holding the whole capacity spread evenly
// over the TTL (steady traffic at capacity: about G + 2 live sub-filters per
// shard); and holding the most sub-filters the capacity allows (a sixth of
// it spread over the TTL, so every slice closes a sub-filter by the clock,
// then the other five sixths in one minute). Keys are pre-hashed; nothing
// is added, so the state stays as built. Burst ingest must stay within
// half of steady.
func BenchmarkFreshLookup(b *testing.B) {
	const c, ttl = 10_000_000, time.Hour
	fill := map[string]func(bl *Bloom) time.Time{
		"empty": func(*Bloom) time.Time { return benchStart },
		"steady": func(bl *Bloom) time.Time {
			for i := range c + c/6 {
				bl.TestAndAddKey(benchKey(i), benchStart.Add(time.Duration(i)*ttl/c))
			}
			return benchStart.Add(ttl + ttl/6)
		},
		"fullest": func(bl *Bloom) time.Time {
			for i := range c / 6 {
				bl.TestAndAddKey(benchKey(i), benchStart.Add(time.Duration(i)*(ttl-time.Minute)/(c/6)))
			}
			for i := range c - c/6 {
				bl.TestAndAddKey(benchKey(c+i), benchStart.Add(ttl-time.Minute+time.Duration(i)*time.Minute/c))
			}
			return benchStart.Add(ttl)
		},
	}
	for _, state := range []string{"empty", "steady", "fullest"} {
		b.Run(state, func(b *testing.B) {
			bl, err := NewBloom(Options{TTL: ttl, Capacity: c})
			if err != nil {
				b.Fatal(err)
			}
			now := fill[state](bl)
			live := float64(bl.Stats().Live) / float64(bl.Shards())
			var seq atomic.Uint64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) << 40
				for pb.Next() {
					bl.TestKey(benchKey(i), now)
					i++
				}
			})
			b.ReportMetric(live, "live/shard")
		})
	}
}

// benchKey is a pseudo-random key, the i-th of a fixed sequence.
func benchKey(i int) Key {
	x := uint64(i)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	y := (x ^ x>>31) * 0xbf58476d1ce4e5b9
	return Key{Lo: y ^ y>>29, Hi: (y ^ y>>33) * 0x94d049bb133111eb}
}
