package main

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

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
// The workload, the same for every contender: each goroutine sends, in
// turn, a fresh pair (a new UUID user, never sent before, on one of 100
// campaigns) and a repeat of one of the last 4096 fresh pairs it sent, so
// exactly half the operations are fresh and half are repeats within the
// TTL. Ids are generated in the loop (about 20 ns, paid by all
// contenders alike) so the filters fill as they would in production rather
// than cycling over a small precomputed universe. The arrival clock moves
// one minute per 2^17 operations of a goroutine, so each ten-minute slice
// takes about 1.3M fresh pairs, within the 1.67M it is sized for.
const recentPairs = 4096

var dedupBenchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

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
		benchDedupCount(b, newNaiveDedup(dedupBenchCapacity, dedupBenchFP, false).testAndAdd)
	})
	b.Run("naive-baseline-padded", func(b *testing.B) {
		benchDedupCount(b, newNaiveDedup(dedupBenchCapacity, dedupBenchFP, true).testAndAdd)
	})
}

func benchDedupCount(b *testing.B, testAndAdd func(campaign, user []byte, now time.Time) bool) {
	campaigns := campaignIDs(memoryCampaigns)
	counters := make([]stats.Counter, len(campaigns))
	var goroutines, added atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := goroutines.Add(1)
		var recent [recentPairs][uuidLen]byte
		var recentCampaign [recentPairs]uint8
		var user []byte
		var i, fresh, n uint64
		for pb.Next() {
			now := dedupBenchStart.Add(time.Duration(i>>17) * time.Minute)
			var c uint8
			if i%2 == 0 {
				h := mix(g<<48 ^ fresh)
				c = uint8(h % memoryCampaigns)
				slot := fresh % recentPairs
				user = appendUUID(recent[slot][:0], h, mix(h))
				recentCampaign[slot] = c
				fresh++
			} else {
				slot := mix(i) % min(fresh, recentPairs)
				c, user = recentCampaign[slot], recent[slot][:]
			}
			i++
			if !testAndAdd(campaigns[c], user, now) {
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

type naiveDedup struct {
	seed   maphash.Seed
	shards []naiveShard
	stride int // distance between used shards: 1 packs them as a plain array does
}

// naiveShard is what the typical implementation declares; four fit in a
// cache line, so neighbouring locks share it.
type naiveShard struct {
	mu sync.Mutex
	f  *bloom.BloomFilter
}

// newNaiveDedup builds the baseline: 64 filters of capacity/64. padded
// spaces the shards a cache line apart, an improvement the typical
// implementation does not have, measured too so the comparison does not
// rest on false sharing.
func newNaiveDedup(capacity int, p float64, padded bool) *naiveDedup {
	const shards = 64
	n := &naiveDedup{seed: maphash.MakeSeed(), stride: 1}
	if padded {
		n.stride = 64 / int(unsafe.Sizeof(naiveShard{}))
	}
	n.shards = make([]naiveShard, shards*n.stride)
	for i := 0; i < shards; i++ {
		n.shards[i*n.stride].f = bloom.NewWithEstimates(uint(capacity/shards), p)
	}
	return n
}

// testAndAdd has the signature of sketch.Deduper.TestAndAdd and ignores the
// time. The pair is length-prefixed, as impressiond encodes it.
func (n *naiveDedup) testAndAdd(campaign, user []byte, _ time.Time) bool {
	var buf [128]byte
	pair := binary.LittleEndian.AppendUint16(buf[:0], uint16(len(campaign)))
	pair = append(append(pair, campaign...), user...)
	s := &n.shards[int(maphash.Bytes(n.seed, pair)%64)*n.stride]
	s.mu.Lock()
	seen := s.f.TestAndAdd(pair)
	s.mu.Unlock()
	return seen
}
