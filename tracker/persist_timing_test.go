package tracker

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

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
				s, err := Open(Options{Dedup: newRestoreDedup(b, c.mode), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
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
	s, err := Open(Options{Dedup: newRestoreDedup(b, mode), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	l := s.st.(*local)
	ids := make([]*Campaign, campaigns)
	for i := range ids {
		c := &Campaign{ID: fmt.Sprintf("campaign-%04d", i), Name: "restore benchmark", Start: now.Add(-48 * time.Hour)}
		if err := l.create(c, campaigns); err != nil {
			b.Fatal(err)
		}
		if ids[i] = l.campaigns.get([]byte(c.ID)); ids[i] == nil {
			b.Fatal("campaign not created")
		}
	}
	p := l.persist
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
		if _, err := l.apply(c, []byte(c.ID), user, at, at, rec); err != nil {
			b.Fatal(err)
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
			rec.AddImpression(c.index, now, m, uint64(m), uint64(c.index), u, nil)
			if rec.Len() >= 4096 {
				flush()
			}
		}
	}
	flush()
	if snapshot {
		err = s.Shutdown()
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
	s, err := Open(Options{Dedup: newRestoreDedup(b, "bloom"), DataDir: dir, FsyncInterval: time.Second, Now: func() time.Time { return now }})
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
		pause += time.Duration(s.st.(*local).persist.snapshotPause.Load())
	}
	b.ReportMetric(pause.Seconds()*1e3/float64(b.N), "ms-paused/op")
}
