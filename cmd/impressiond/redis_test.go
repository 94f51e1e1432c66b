package main

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
)

// TestTwoProcessesOneRedis runs two impressiond processes on one Redis and
// sends the same pairs through both at once: each pair is counted exactly
// once, and both report the same totals.
func TestTwoProcessesOneRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	rs := redistest.Start(t)
	bin := buildBinary(t)
	for _, mode := range []string{"exact", "bloom"} {
		t.Run(mode, func(t *testing.T) {
			rs.FlushAll(t)
			// A generous -redis-timeout: this tests agreement between two
			// processes under -race on two cores, not Redis's latency (a
			// bloom generation at the default capacity is megabytes, created
			// by the first impression of its slice).
			procs := []*proc{
				startProc(t, bin, "-store", rs.URL, "-dedup", mode, "-redis-timeout", "5s"),
				startProc(t, bin, "-store", rs.URL, "-dedup", mode, "-redis-timeout", "5s"),
			}
			procs[0].mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 201)
			procs[1].mustCall("POST", "/api/v1/campaigns", `{"id":"c","name":"C"}`, 409)
			const pairs = 500
			var counted atomic.Int64
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range pairs {
						// call, not mustCall: t.Fatal must not run on a worker goroutine.
						code, body, err := procs[(w+i)%2].call("POST", "/api/v1/impressions", impression("c", fmt.Sprintf("u%d", i), time.Time{}))
						if err != nil || code != 200 {
							t.Errorf("POST /api/v1/impressions: %d %s %v, want 200", code, body, err)
							return
						}
						if strings.Contains(body, `"counted"`) {
							counted.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			if counted.Load() != pairs {
				t.Fatalf("%d answers counted for %d pairs sent 8 times through two processes", counted.Load(), pairs)
			}
			for _, p := range procs {
				if st := p.stats("c"); st.Total != pairs || st.LastHour != pairs {
					t.Fatalf("stats %+v, want %d", st, pairs)
				}
				p.mustCall("GET", "/readyz", "", 200)
			}
		})
	}
}
