package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/faultfs"
	"github.com/impressiond/impressiond/store"
)

// faultyDisk makes the durable servers of this test write their log to a
// fault-injecting disk that reserves space in steps of 64 KiB.
func faultyDisk(t *testing.T) *faultfs.Disk {
	fs := faultfs.NewDisk(1 << 40)
	testHookOpenLogFile = func(p string) (store.File, error) {
		f, err := fs.Open(p)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	testHookLogReserve = 64 << 10
	t.Cleanup(func() { testHookOpenLogFile, testHookLogReserve = nil, 0 })
	return fs
}

// TestFullDiskRefusesBeforeCounting: once the disk is full, writes are
// refused with 503 before anything changes, after the space reserved
// before them is used up; every impression acknowledged until then is
// durable, and the 503'd ones and the refused campaign never appear,
// before or after a restart.
func TestFullDiskRefusesBeforeCounting(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, fsync := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprint("fsync-interval=", fsync), func(t *testing.T) {
			fs := faultyDisk(t)
			dir := t.TempDir()
			clock := &fakeClock{t: testNow}
			a := durableServer(t, "exact", dir, clock, fsync)
			a.createCampaign("c")
			fs.Set(func(d *faultfs.Disk) { d.Capacity = d.Used }) // full: only the reservation is left

			counted := 0
			// Batches use up most of the reservation quickly; then singles.
			user := 0
			for {
				var items []string
				for range 100 {
					items = append(items, track("c", fmt.Sprintf("u%d", user)))
					user++
				}
				r := a.do("POST", "/api/v1/impressions/batch", "["+strings.Join(items, ",")+"]")
				if r.status != 200 {
					r.want(t, 503)
					break
				}
				var res struct{ Counted int }
				r.decode(t, &res)
				if res.Counted != 100 {
					t.Fatalf("batch counted %d of 100", res.Counted)
				}
				counted += 100
			}
			var refused response
			for i := user; ; i++ {
				if i > 100000 {
					t.Fatal("impressions never refused on a full disk")
				}
				r := a.do("POST", "/api/v1/impressions", track("c", fmt.Sprintf("u%d", i)))
				if r.status != 200 {
					refused = r.want(t, 503)
					break
				}
				counted++
			}
			if !strings.Contains(string(refused.body), "nothing was counted") || !strings.Contains(string(refused.body), "no space left on device") {
				t.Fatalf("503 body %s does not say nothing was counted, and why", refused.body)
			}
			a.do("POST", "/api/v1/impressions/batch", `[`+track("c", "b1")+`,`+track("c", "b2")+`]`).want(t, 503)
			a.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 503)
			a.do("GET", "/api/v1/campaigns/d", "").want(t, 404)
			if got := a.stats("c").Total; got != uint64(counted) {
				t.Fatalf("total on a full disk %d, want the %d acknowledged", got, counted)
			}
			if m := string(a.do("GET", "/metrics", "").want(t, 200).body); !strings.Contains(m, "impressiond_storage_healthy 0") {
				t.Fatal("metrics do not show the storage as unhealthy")
			}
			// A shutdown on the full disk is clean: its snapshot cannot be
			// written, the log holds everything.
			if err := a.srv.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown on a full disk: %v", err)
			}
			fs.Set(func(d *faultfs.Disk) { d.Capacity = 1 << 40 })
			b := durableServer(t, "exact", dir, clock, fsync)
			if got := b.stats("c").Total; got != uint64(counted) {
				t.Fatalf("total after restart %d, want the %d acknowledged", got, counted)
			}
			b.do("GET", "/api/v1/campaigns/d", "").want(t, 404)
			b.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 201)
			b.do("POST", "/api/v1/impressions", track("c", "after")).want(t, 200)
			if err := b.srv.Close(); err != nil {
				t.Fatal(err)
			}
			c := durableServer(t, "exact", dir, clock, fsync)
			if got := c.stats("c").Total; got != uint64(counted)+1 {
				t.Fatalf("total after the second restart %d, want %d", got, counted+1)
			}
			c.do("GET", "/api/v1/campaigns/d", "").want(t, 200)
		})
	}
}

// TestFailedCampaignNeverAppears: a campaign create whose log write fails
// is answered 503 and never exists, not even after a restart; its retry
// creates it once, and the data directory starts again.
func TestFailedCampaignNeverAppears(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, fault := range []func(d *faultfs.Disk){
		func(d *faultfs.Disk) { d.WriteErr = 1 },
		func(d *faultfs.Disk) { d.WriteErr, d.Partial = 1, 1<<20 },
		func(d *faultfs.Disk) { d.SyncErr = 1 },
	} {
		fs := faultyDisk(t)
		dir := t.TempDir()
		clock := &fakeClock{t: testNow}
		a := durableServer(t, "exact", dir, clock, time.Second)
		fs.Set(fault)
		a.do("POST", "/api/v1/campaigns", `{"id":"ghost","name":"Ghost"}`).want(t, 503)
		a.do("GET", "/api/v1/campaigns/ghost", "").want(t, 404)
		deadline := time.Now().Add(10 * time.Second)
		for !a.storageHealthy() {
			if time.Now().After(deadline) {
				t.Fatal("the log did not recover within 10s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		a.do("POST", "/api/v1/campaigns", `{"id":"ghost","name":"Ghost"}`).want(t, 201)
		if err := a.srv.Close(); err != nil {
			t.Fatal(err)
		}
		b := durableServer(t, "exact", dir, clock, time.Second)
		if got := b.do("GET", "/api/v1/campaigns", "").want(t, 200).body; strings.Count(string(got), `"ghost"`) != 1 {
			t.Fatalf("campaigns after restart: %s, want ghost once", got)
		}
		b.srv.Close()
	}
}

// TestIdleServerWritesNothing: the periodic snapshot is skipped while
// nothing changed since the last one — an idle server writes no byte —
// and while the log written since is smaller than that snapshot; then it
// is written.
func TestIdleServerWritesNothing(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	fs := faultyDisk(t)
	dir := t.TempDir()
	clock := &fakeClock{t: testNow}
	a := newTestServer(t, "exact", func(o *testOptions) {
		o.DataDir = dir
		o.SnapshotInterval = 5 * time.Millisecond
		o.Now = clock.Now
	})
	a.clock = clock
	a.createCampaign("c")
	a.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	deadline := time.Now().Add(10 * time.Second)
	waitTicks := func(n float64) {
		t.Helper()
		for s0 := a.metric("impressiond_snapshot_skipped_total"); a.metric("impressiond_snapshot_skipped_total") < s0+n; {
			if time.Now().After(deadline) {
				t.Fatal("periodic snapshots stopped")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The first snapshot is due at once: there is none.
	for a.metric("impressiond_snapshot_last_success_timestamp_seconds") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first change was not snapshotted within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	waitTicks(1)
	snaps, segs := snapshotFiles(t, dir)
	// Nothing was written since the snapshot's cut.
	walAtSnapshot := int64(a.metric("impressiond_wal_bytes_total"))
	snapFiles, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
	if len(snapFiles) != 1 {
		t.Fatalf("snapshots %q, want one", snapFiles)
	}
	fi, err := os.Stat(snapFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	snapSize := fi.Size()
	var written int64
	fs.Set(func(d *faultfs.Disk) { written = d.Written })
	waitTicks(20)
	if s2, g2 := snapshotFiles(t, dir); s2 != snaps || g2 != segs {
		t.Fatalf("an idle server wrote files: snapshots %q → %q, segments %q → %q", snaps, s2, segs, g2)
	}
	fs.Set(func(d *faultfs.Disk) {
		if d.Written != written {
			t.Errorf("an idle server wrote %d bytes to its log", d.Written-written)
		}
	})

	// A change smaller than the snapshot waits for more.
	a.do("POST", "/api/v1/impressions", track("c", "v")).want(t, 200)
	waitTicks(20)
	if s2, _ := snapshotFiles(t, dir); s2 != snaps {
		t.Fatalf("a snapshot of %d bytes was rewritten for one impression", snapSize)
	}
	// Once the log since is as large as the snapshot, it is written.
	for u := 0; int64(a.metric("impressiond_wal_bytes_total"))-walAtSnapshot < snapSize; u++ {
		a.do("POST", "/api/v1/impressions", track("c", fmt.Sprint("w", u))).want(t, 200)
	}
	for s2, _ := snapshotFiles(t, dir); s2 == snaps; s2, _ = snapshotFiles(t, dir) {
		if time.Now().After(deadline) {
			t.Fatal("a log as large as the snapshot was not snapshotted")
		}
		time.Sleep(time.Millisecond)
	}
}

// snapshotFiles names the snapshots and log segments in dir, with their
// sizes and modification times.
func snapshotFiles(t *testing.T, dir string) (snaps, segs string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		snap, seg := strings.HasSuffix(e.Name(), ".snap"), strings.HasSuffix(e.Name(), ".log")
		if !snap && !seg {
			continue // a snapshot being written (.tmp) may be renamed by now
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		desc := fmt.Sprintf("%s:%d:%d ", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		if snap {
			snaps += desc
		} else {
			segs += desc
		}
	}
	return snaps, segs
}
