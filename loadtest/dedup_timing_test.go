package main

import (
	"encoding/binary"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

// The dedup every sub-benchmark is sized for: the defaults of impressiond.
const (
	dedupBenchCapacity = 10_000_000
	dedupBenchFP       = 0.001
)

// dedupBenchPairs is the number of distinct pre-generated pairs walked.
const dedupBenchPairs = 1 << 20

// dedupBenchWorkload holds the pre-generated pairs: realistic ids, built
// once so that generating them is not part of the measurement.
type dedupBenchWorkload struct {
	campaigns [][]byte // campaign-0000 … campaign-0099
	campaign  []uint8  // campaign index of pair i
	users     []byte   // user id of pair i: users[i*uuidLen : (i+1)*uuidLen]
}

var (
	dedupBenchOnce  sync.Once
	dedupBenchLoad  dedupBenchWorkload
	dedupBenchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func dedupWorkload() *dedupBenchWorkload {
	dedupBenchOnce.Do(func() {
		w := &dedupBenchLoad
		w.campaigns = campaignIDs(memoryCampaigns)
		w.campaign = make([]uint8, dedupBenchPairs)
		w.users = make([]byte, 0, dedupBenchPairs*uuidLen)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range w.campaign {
			w.campaign[i] = uint8(r.IntN(memoryCampaigns))
			w.users = appendUUID(w.users, r.Uint64(), r.Uint64())
		}
	})
	return &dedupBenchLoad
}

// BenchmarkDedupCount measures the work impressiond does for one impression
// once it is parsed: the dedup decision from raw ids, hashing included, and
// for a new pair the per-minute count of its campaign. Every sub-benchmark
// runs on all cores (GOMAXPROCS goroutines) and reports ops/s and new/op,
// the fraction of operations that counted a new pair.
//
// Each goroutine walks the 2^20 pre-generated pairs in order from its own
// offset and wraps around, so fresh pairs and repeats mix. Each goroutine's
// clock advances one minute every 2^14 of its operations: a lap of the
// pairs is 64 minutes of arrival time, against a 1h TTL cut into 10-minute
// slices, so rotation is part of the cost and pairs expire and count again.
// With two goroutines 0.62 laps apart, about 40% of the operations of a 1s
// run count a new pair in impressiond's modes and the rest are repeats; the
// naive baseline never forgets, so after its first lap it sees only repeats
// and counts fewer (new/op reports the exact mix of each run).
func BenchmarkDedupCount(b *testing.B) {
	opts := sketch.Options{TTL: time.Hour, Slices: 6, Capacity: dedupBenchCapacity, FalsePositiveRate: dedupBenchFP}
	for _, mode := range []string{"bloom", "exact"} {
		b.Run("impressiond-"+mode, func(b *testing.B) {
			d, err := sketch.New(mode, opts)
			if err != nil {
				b.Fatal(err)
			}
			benchDedupCount(b, d.TestAndAdd)
		})
	}
	b.Run("naive-baseline", func(b *testing.B) {
		benchDedupCount(b, newNaiveDedup(dedupBenchCapacity, dedupBenchFP).testAndAdd)
	})
}

// benchDedupCount runs testAndAdd on the workload on every core and counts
// each new pair in its campaign's stats.Counter, as the server does.
func benchDedupCount(b *testing.B, testAndAdd func(campaign, user []byte, now time.Time) bool) {
	w := dedupWorkload()
	counters := make([]stats.Counter, len(w.campaigns))
	var goroutines, added atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Offsets by the golden ratio spread any number of goroutines
		// evenly over the pairs.
		g := goroutines.Add(1) - 1
		off := g * 0x9e3779b97f4a7c15 >> (64 - 20)
		var i, n uint64
		for pb.Next() {
			j := (off + i) & (dedupBenchPairs - 1)
			now := dedupBenchStart.Add(time.Duration(i>>14) * time.Minute)
			i++
			c := w.campaign[j]
			if !testAndAdd(w.campaigns[c], w.users[j*uuidLen:(j+1)*uuidLen], now) {
				m := stats.Minute(now)
				counters[c].Add(m, m)
				n++
			}
		}
		added.Add(n)
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(added.Load())/float64(b.N), "new/op")
}

// naiveDedup is the baseline, not part of impressiond: the obvious design
// of 64 bloom/v3 filters of capacity/64 pairs each, one mutex per filter, a
// filter chosen by a hash of the pair, and TestAndAdd. It has a single
// generation, no TTL: pairs are never forgotten, so it is not a correct
// dedup window and its filters only stay within their false-positive rate
// until capacity pairs have been seen in total. It shows what impressiond's
// K+1 generations and their rotation cost.
type naiveDedup struct {
	seed   maphash.Seed
	shards [64]naiveShard
}

type naiveShard struct {
	mu sync.Mutex
	f  *bloom.BloomFilter
	_  [48]byte // keeps neighbouring shards' locks off one cache line, as impressiond does
}

func newNaiveDedup(capacity int, p float64) *naiveDedup {
	n := &naiveDedup{seed: maphash.MakeSeed()}
	for i := range n.shards {
		n.shards[i].f = bloom.NewWithEstimates(uint(capacity/len(n.shards)), p)
	}
	return n
}

// testAndAdd has the signature of sketch.Deduper.TestAndAdd and ignores the
// time. The pair is length-prefixed, as impressiond encodes it.
func (n *naiveDedup) testAndAdd(campaign, user []byte, _ time.Time) bool {
	var buf [128]byte
	pair := binary.LittleEndian.AppendUint16(buf[:0], uint16(len(campaign)))
	pair = append(append(pair, campaign...), user...)
	s := &n.shards[maphash.Bytes(n.seed, pair)%uint64(len(n.shards))]
	s.mu.Lock()
	seen := s.f.TestAndAdd(pair)
	s.mu.Unlock()
	return seen
}
