package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
)

// BenchmarkRedisFrequencyMemory reports the Redis memory of the exposures
// of one pair (MEMORY USAGE of its hash, and used_memory's growth), for
// 20,000 pairs of one campaign: exposed once ("once"), or in every slice
// of every level's ring, FrequencyFields fields ("full", the bound). Run
// with -benchtime 1x.
func BenchmarkRedisFrequencyMemory(b *testing.B) {
	const pairs = 20_000
	for _, full := range []bool{false, true} {
		name := "once"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			var now atomic.Int64 // the shared clock, Unix µs
			now.Store(time.Now().UnixMicro())
			s, err := Open(Options{URL: srv.URL, Mode: "exact", Timeout: 5 * time.Second, Clock: func() time.Time { return time.UnixMicro(now.Load()) },
				Dedup: sketch.Options{TTL: time.Hour, Slices: 6}})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for range b.N {
				srv.FlushAll(b)
				before := usedMemory(b, s)
				items := make([]Item, 1000)
				counted := make([]bool, len(items))
				exposeAll := func() {
					for i := 0; i < pairs; i += len(items) {
						for j := range items {
							items[j] = Item{Campaign: "c", User: fmt.Appendf(nil, "5f0e8c1a-2b3c-4d5e-8f90-%012d", i+j), Minute: 1, Arrival: 1}
						}
						if err := s.Track(items, counted); err != nil {
							b.Fatal(err)
						}
					}
				}
				if !full {
					exposeAll()
				} else {
					for l := len(freqLevels) - 1; l >= 0; l-- {
						for range 2 * freqLevels[l].slots {
							exposeAll()
							now.Add(freqLevels[l].g.Microseconds())
						}
					}
				}
				// Only the exposures stay: used_memory's growth is theirs,
				// with the keyspace's own overhead.
				cl := *s.client.Load()
				for _, k := range redisKeys(b, s, "imp:{c}:[^f]*") {
					if err := cl.Do(b.Context(), cl.B().Del().Key(k).Build()).Error(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(keysMemory(b, s, "imp:{c}:fq:*"))/pairs, "key-bytes/pair")
				b.ReportMetric(float64(usedMemory(b, s)-before)/pairs, "bytes/pair")
			}
		})
	}
}

// BenchmarkRedisFrequencyCheck measures checks of one user against 1,000
// campaigns with two caps each (a 1 h and a 24 h window), the user
// exposed to each: the time of a check seen by the caller (ns/op), and
// Redis's own time per campaign read (redis-usec/campaign, from INFO
// commandstats; the health checks' TIME included, a few calls).
func BenchmarkRedisFrequencyCheck(b *testing.B) {
	const campaigns = 1000
	srv := redistest.Start(b)
	s, err := Open(Options{URL: srv.URL, Mode: "exact", Timeout: 5 * time.Second, Dedup: sketch.Options{TTL: time.Hour, Slices: 6}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	qs := make([]FrequencyQuery, campaigns)
	for i := range qs {
		rc, err := s.CreateCampaign(Campaign{ID: "c" + strconv.Itoa(i), Name: "C"}, campaigns)
		if err != nil {
			b.Fatal(err)
		}
		c := Ref(rc.ID, rc.Gen, rc.Ver)
		qs[i] = query(c, time.Hour, 24*time.Hour)
		if err := s.Track([]Item{{c, []byte("u"), 1, 1, nil}, {c, []byte("u"), 1, 1, nil}}, make([]bool, 2)); err != nil {
			b.Fatal(err)
		}
	}
	counts := frequencyCounts(qs)
	cl := *s.client.Load()
	if err := cl.Do(b.Context(), cl.B().ConfigResetstat().Build()).Error(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := s.Frequency([]byte("u"), qs, counts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if counts[campaigns-1][1] != 2 {
		b.Fatalf("counts %v, want 2", counts[campaigns-1])
	}
	info, err := cl.Do(b.Context(), cl.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	var usec float64 // Redis's time in the commands of the checks
	for _, line := range strings.Split(info, "\r\n") {
		for _, cmd := range []string{"cmdstat_get:", "cmdstat_hgetall:", "cmdstat_time:"} {
			if rest, ok := strings.CutPrefix(line, cmd); ok {
				for _, f := range strings.Split(rest, ",") {
					if v, ok := strings.CutPrefix(f, "usec="); ok {
						us, _ := strconv.ParseFloat(v, 64)
						usec += us
					}
				}
			}
		}
	}
	b.ReportMetric(usec/float64(b.N)/campaigns, "redis-usec/campaign")
	b.ReportMetric(campaigns, "campaigns/check")
}

// BenchmarkRedisTrack measures the track scripts' throughput, one item
// per call (concurrent calls, auto-pipelined) and 1000-item batches of
// fresh pairs, in both modes: what every impression's exposure costs.
func BenchmarkRedisTrack(b *testing.B) {
	for _, mode := range []string{"exact", "bloom"} {
		for _, size := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/items=%d", mode, size), func(b *testing.B) {
				srv := redistest.Start(b)
				s, err := Open(Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second,
					Dedup: sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001}})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				var seq atomic.Int64
				m := time.Now().Unix() / 60
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					items := make([]Item, size)
					counted := make([]bool, size)
					for pb.Next() {
						for j := range items {
							items[j] = Item{Campaign: "c", User: strconv.AppendInt(nil, seq.Add(1), 10), Minute: m, Arrival: m}
						}
						if err := s.Track(items, counted); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)*float64(size)/b.Elapsed().Seconds(), "impressions/s")
			})
		}
	}
}
