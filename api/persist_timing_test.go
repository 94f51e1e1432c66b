package api

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

// BenchmarkTrackDurable measures single-impression ingest through the
// handler with persistence off, with the default 1s fsync interval, and with
// fsync 0 (every answer waits for its group commit). Every impression is a
// new pair, so every one is counted and logged. fsync 0 runs 64 goroutines
// per CPU: its throughput is group size × fsyncs per second, and that needs
// concurrent requests to share commits, as they do on a loaded server.
func BenchmarkTrackDurable(b *testing.B) {
	for _, c := range []struct {
		name  string
		dir   bool
		fsync time.Duration
	}{
		{"off", false, 0},
		{"fsync=1s", true, time.Second},
		{"fsync=0", true, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			_, h := newBenchServer(b, "bloom", func(o *Options) {
				if c.dir {
					o.DataDir = b.TempDir()
					o.FsyncInterval = c.fsync
				}
			})
			if c.dir && c.fsync == 0 {
				b.SetParallelism(64)
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var ctx fasthttp.RequestCtx
				ctx.Request.Header.SetMethod("POST")
				ctx.Request.SetRequestURI("/api/v1/impressions")
				base := seq.Add(1) << 40
				body := make([]byte, 0, 128)
				for i := base; pb.Next(); i++ {
					body = append(body[:0], `{"campaign_id":"bench","user_id":"u`...)
					body = strconv.AppendUint(body, i, 10)
					body = append(body, `"}`...)
					ctx.Request.SetBodyRaw(body)
					ctx.Response.Reset()
					h(&ctx)
					if ctx.Response.StatusCode() != 200 {
						b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
					}
				}
			})
		})
	}
}

// BenchmarkRestore measures start-up on a full data directory: 10M dedup
// pairs spread over the TTL and a day of per-minute counters for 1,000
// campaigns, restored from a snapshot, and from the log alone (no snapshot:
// the worst case, a crash before the first snapshot), in each mode. Each op is one New on the directory; the directory is built
// once. Run it with -benchtime 1x: each setup takes seconds and memory.
func BenchmarkRestore(b *testing.B) {
	const pairs, campaigns = 10_000_000, 1000
	for _, c := range []struct {
		mode     string
		snapshot bool
	}{{"bloom", true}, {"exact", true}, {"bloom", false}, {"exact", false}} {
		name := c.mode + "/snapshot"
		if !c.snapshot {
			name = c.mode + "/log-only"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			now := time.Now()
			fillDataDir(b, c.mode, dir, now, pairs, campaigns, c.snapshot)
			b.ResetTimer()
			for range b.N {
				s, err := New(Options{Dedup: newRestoreDedup(b, c.mode), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
				if err != nil {
					b.Fatal(err)
				}
				st := s.Restored()
				b.StopTimer()
				if st.Campaigns != campaigns {
					b.Fatalf("restored %d campaigns, want %d", st.Campaigns, campaigns)
				}
				b.ReportMetric(st.Took.Seconds(), "s/restore")
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func newRestoreDedup(b testing.TB, mode string) sketch.Deduper {
	d, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// fillDataDir leaves in dir the state of a server that counted pairs
// impressions over the last hour and one impression per minute of the last
// day for each campaign: in a snapshot, or only in the log.
func fillDataDir(b testing.TB, mode, dir string, now time.Time, pairs, campaigns int, snapshot bool) {
	b.Helper()
	s, err := New(Options{Dedup: newRestoreDedup(b, mode), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]*campaign, campaigns)
	for i := range ids {
		c := &campaign{id: fmt.Sprintf("campaign-%04d", i), name: "restore benchmark", start: now.Add(-48 * time.Hour)}
		if err := s.addCampaign(c); err != nil {
			b.Fatal(err)
		}
		ids[i] = c
	}
	p := s.persist
	nowMin := stats.Minute(now)
	rec := p.batch()
	flush := func() {
		if err := p.log.Append(rec); err != nil {
			b.Fatal(err)
		}
		rec.Reset()
	}
	user := make([]byte, 0, 32)
	for i := range pairs {
		c := ids[i%campaigns]
		at := now.Add(-time.Hour + time.Duration(i)*(time.Hour/time.Duration(pairs)))
		user = strconv.AppendInt(append(user[:0], "user-"...), int64(i), 10)
		req := trackRequest{campaignID: []byte(c.id), userID: user}
		var last *campaign
		if _, e := s.track(&req, at, &last, rec); e != nil {
			b.Fatal(e)
		}
		if rec.Len() >= 4096 {
			flush()
		}
	}
	for _, c := range ids {
		for m := nowMin - stats.Minutes + 1; m <= nowMin; m++ {
			c.counter.Add(m, nowMin)
			var u []byte // bloom: the key stands for the pair
			if mode == "exact" {
				u = strconv.AppendInt(append(user[:0], "day-"...), m, 10)
			}
			rec.AddImpression(c.index, now, m, uint64(m), uint64(c.index), u)
			if rec.Len() >= 4096 {
				flush()
			}
		}
	}
	flush()
	if snapshot {
		err = s.Shutdown(context.Background())
	} else {
		err = s.Close()
	}
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSnapshotPause measures how long a snapshot holds writes (the log
// rotation and the counter copy) with 1,000 campaigns holding a full day
// of per-minute counters and a full Bloom window at the defaults, and the
// whole snapshot. Run with -benchtime 1x or a few x.
func BenchmarkSnapshotPause(b *testing.B) {
	dir := b.TempDir()
	now := time.Now()
	fillDataDir(b, "bloom", dir, now, 1_000_000, 1000, false)
	s, err := New(Options{Dedup: newRestoreDedup(b, "bloom"), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	var pause time.Duration
	for range b.N {
		if err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
		pause += time.Duration(s.persist.snapshotPause.Load())
	}
	b.ReportMetric(pause.Seconds()*1e3/float64(b.N), "ms-paused/op")
}
