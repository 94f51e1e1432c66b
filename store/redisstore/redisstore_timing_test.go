package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// BenchmarkRedisMemoryPerPair counts 210,000 distinct pairs of one campaign
// in batches of 1000, their arrival times spread over one TTL (so every one
// of the K+1 generations holds its share, as in steady traffic), and
// reports Redis's used_memory growth per pair, for each mode. Bloom is
// sized for 210,000 pairs per TTL; its memory is bounded by that size (at
// most P sub-filters, "bound-bytes"), not by the pairs; "campaign-bytes"
// is what the campaign's keys hold once the TTL is full. Run with
// -benchtime 1x.
func BenchmarkRedisMemoryPerPair(b *testing.B) {
	const pairs = 210_000
	for _, mode := range []string{"exact", "bloom"} {
		b.Run(mode, func(b *testing.B) {
			srv := redistest.Start(b)
			var now time.Time // the shared clock, moved over one TTL below
			s, err := Open(Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: func() time.Time { return now }, Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: pairs, FalsePositiveRate: 0.001}})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for range b.N {
				srv.FlushAll(b)
				before := usedMemory(b, s)
				items := make([]Item, 1000)
				counted := make([]bool, len(items))
				start := time.Now()
				for i := 0; i < pairs; i += len(items) {
					now = start.Add(time.Duration(i) * time.Hour / pairs)
					for j := range items {
						items[j] = Item{Campaign: "c", User: fmt.Appendf(nil, "5f0e8c1a-2b3c-4d5e-8f90-%012d", i+j), Minute: now.Unix() / 60, Arrival: now.Unix() / 60}
					}
					if err := s.Track(items, counted); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(usedMemory(b, s)-before)/pairs, "bytes/pair")
				b.ReportMetric(float64(keysMemory(b, s, "imp:{c}:*"))/pairs, "key-bytes/pair")
				if mode == "bloom" {
					b.ReportMetric(float64(keysMemory(b, s, "imp:{c}:bp*")), "campaign-bytes")
					b.ReportMetric(float64(s.MaxBytesPerCampaign()), "bound-bytes")
				}
			}
		})
	}
}

// BenchmarkRedisPoolMemory reports, for bloom mode at the default
// -dedup-capacity and -dedup-fp and at the pool tests' capacity, the Redis
// memory of one sub-filter (MEMORY USAGE of its key, once one pair opened
// it), the pool's P, and the bound P × that per campaign. Run with
// -benchtime 1x.
func BenchmarkRedisPoolMemory(b *testing.B) {
	for _, tc := range []struct {
		name string
		d    sketch.Options
	}{
		{"defaults", sketch.Options{}},
		{"capacity=20000,fp=0.01", sketch.Options{Capacity: 20_000, FalsePositiveRate: 0.01}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := redistest.Start(b)
			s, err := Open(Options{URL: srv.URL, Mode: "bloom", Timeout: 5 * time.Second, Dedup: tc.d})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for range b.N {
				srv.FlushAll(b)
				if err := s.Track([]Item{{Campaign: "c", User: []byte("u"), Minute: 1}}, make([]bool, 1)); err != nil {
					b.Fatal(err)
				}
				one := keysMemory(b, s, "imp:{c}:bp:*")
				b.ReportMetric(float64(one), "bytes/sub-filter")
				b.ReportMetric(float64(s.Layout().Slots), "P")
				b.ReportMetric(float64(one)*float64(s.Layout().Slots), "bytes/campaign-bound")
				b.ReportMetric(float64(keysMemory(b, s, "imp:{c}:bpm")), "meta-bytes")
			}
		})
	}
}

func usedMemory(b *testing.B, s *Store) int64 {
	ctx, cancel := s.ctx()
	defer cancel()
	info, err := (*s.client.Load()).Do(ctx, (*s.client.Load()).B().Info().Section("memory").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}

// keysMemory sums MEMORY USAGE over the keys matching pattern: the data
// itself, without the server's buffers and caches that used_memory counts.
func keysMemory(b *testing.B, s *Store, pattern string) int64 {
	ctx, cancel := s.ctx()
	defer cancel()
	keys, err := (*s.client.Load()).Do(ctx, (*s.client.Load()).B().Keys().Pattern(pattern).Build()).AsStrSlice()
	if err != nil {
		b.Fatal(err)
	}
	var sum int64
	for _, k := range keys {
		n, err := (*s.client.Load()).Do(ctx, (*s.client.Load()).B().MemoryUsage().Key(k).Samples(0).Build()).AsInt64()
		if err != nil {
			b.Fatal(err)
		}
		sum += n
	}
	return sum
}
