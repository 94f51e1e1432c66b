package api

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store"
)

// durableServer serves a Server keeping its state in dir, on clock.
func durableServer(t *testing.T, mode, dir string, clock *fakeClock, fsync time.Duration) *testServer {
	t.Helper()
	ts := newTestServer(t, mode, func(o *testOptions) {
		o.DataDir = dir
		o.FsyncInterval = fsync
		o.SnapshotInterval = time.Hour // tests call Snapshot themselves
		o.Now = clock.Now
	})
	ts.clock = clock
	return ts
}

// state is everything a client can read: the campaigns and their stats.
type state struct {
	campaigns string
	stats     map[string]statsJSON
	series    map[string]string
}

func (ts *testServer) state(ids ...string) state {
	ts.t.Helper()
	s := state{campaigns: string(ts.do("GET", "/api/v1/campaigns", "").want(ts.t, 200).body), stats: map[string]statsJSON{}, series: map[string]string{}}
	for _, id := range ids {
		s.stats[id] = ts.stats(id)
		s.series[id] = string(ts.do("GET", "/api/v1/campaigns/"+id+"/series?window=24h", "").want(ts.t, 200).body)
	}
	return s
}

// load sends a fixed mix of traffic: three campaigns, impressions spread
// over two days of event time, repeats, and a batch. It returns the pairs
// sent.
func load(ts *testServer) []string {
	ts.t.Helper()
	for _, id := range []string{"alpha", "beta", "gamma"} {
		ts.createCampaign(id)
	}
	var pairs []string
	for i := range 60 {
		c := []string{"alpha", "beta", "gamma"}[i%3]
		u := fmt.Sprintf("user-%d", i%40)
		at := testNow.Add(-time.Duration(i) * 47 * time.Minute)
		ts.do("POST", "/api/v1/impressions", trackAt(c, u, at)).want(ts.t, 200)
		pairs = append(pairs, c+"/"+u)
	}
	var batch []string
	for i := range 50 {
		batch = append(batch, fmt.Sprintf(`{"campaign_id":"beta","user_id":"batch-%d"}`, i%30))
		pairs = append(pairs, fmt.Sprintf("beta/batch-%d", i%30))
	}
	ts.do("POST", "/api/v1/impressions/batch", "["+strings.Join(batch, ",")+"]").want(ts.t, 200)
	return pairs
}

// dupAll resends every pair and fails unless each is a duplicate.
func (ts *testServer) dupAll(pairs []string) {
	ts.t.Helper()
	for _, p := range pairs {
		c, u, _ := strings.Cut(p, "/")
		r := ts.do("POST", "/api/v1/impressions", track(c, u)).want(ts.t, 200)
		if !strings.Contains(string(r.body), `"duplicate"`) {
			ts.t.Fatalf("%s after restart: %s, want duplicate", p, r.body)
		}
	}
}

// TestRestartKeepsState: after a graceful stop and a start on the same
// directory, every reading and every dedup decision is the same, in both
// modes, whether the state came from the final snapshot, from the log, or
// from a snapshot plus the log after it.
func TestRestartKeepsState(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, mode := range []string{"bloom", "exact"} {
		for _, how := range []string{"snapshot", "log", "snapshot+log"} {
			t.Run(mode+"/"+how, func(t *testing.T) {
				dir := t.TempDir()
				clock := &fakeClock{t: testNow}
				a := durableServer(t, mode, dir, clock, time.Second)
				var pairs []string
				if how == "snapshot+log" {
					a.createCampaign("early")
					a.do("POST", "/api/v1/impressions", track("early", "u1")).want(t, 200)
					if err := a.srv.Tracker().Snapshot(); err != nil {
						t.Fatal(err)
					}
					pairs = append(pairs, "early/u1")
				}
				pairs = append(pairs, load(a)...)
				ids := []string{"alpha", "beta", "gamma"}
				want := a.state(ids...)
				if how == "snapshot" {
					if err := a.srv.Shutdown(t.Context()); err != nil {
						t.Fatal(err)
					}
				} else {
					if err := a.srv.Close(); err != nil { // log flushed, no snapshot
						t.Fatal(err)
					}
				}

				b := durableServer(t, mode, dir, clock, time.Second)
				if got := b.state(ids...); !reflect.DeepEqual(got, want) {
					t.Fatalf("state after restart:\n got %+v\nwant %+v", got, want)
				}
				st := b.srv.Tracker().Restored()
				wantCampaigns := 3
				if how == "snapshot+log" {
					wantCampaigns = 4
				}
				if st.Campaigns != wantCampaigns {
					t.Fatalf("restored %d campaigns, want %d", st.Campaigns, wantCampaigns)
				}
				if (how == "log") != (st.Snapshot == "") {
					t.Fatalf("restored snapshot %q for %s", st.Snapshot, how)
				}
				b.dupAll(pairs)
				b.do("POST", "/api/v1/impressions", track("alpha", "new-user")).want(t, 200)
				if got := b.stats("alpha").Total; got != want.stats["alpha"].Total+1 {
					t.Fatalf("alpha total after a new pair: %d, want %d", got, want.stats["alpha"].Total+1)
				}
			})
		}
	}
}

// TestRestartExpiresDedup: generations older than the TTL are dropped on
// restore, so a pair counted more than TTL + TTL/K ago counts again.
func TestRestartExpiresDedup(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	dir := t.TempDir()
	clock := &fakeClock{t: testNow}
	a := durableServer(t, "exact", dir, clock, time.Second)
	a.createCampaign("c")
	a.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	if err := a.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	clock.Add(2 * time.Hour)
	b := durableServer(t, "exact", dir, clock, time.Second)
	r := b.do("POST", "/api/v1/impressions", track("c", "u")).want(t, 200)
	if !strings.Contains(string(r.body), `"counted"`) {
		t.Fatalf("pair repeated 2h later (TTL 1h): %s, want counted", r.body)
	}
	if got := b.stats("c").Total; got != 2 {
		t.Fatalf("total %d, want 2", got)
	}
}

// TestSnapshotUnderLoad takes snapshots while writers count fresh pairs:
// after a restart from the last snapshot and the log after it, the total is
// exactly the number of 200 "counted" answers — the cut between snapshot
// and log loses nothing and counts nothing twice.
func TestSnapshotUnderLoad(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, mode := range []string{"bloom", "exact"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			clock := &fakeClock{t: testNow}
			a := durableServer(t, mode, dir, clock, time.Second)
			a.createCampaign("c")
			var counted atomic.Int64
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						body := track("c", fmt.Sprintf("w%d-%d", w, i))
						if i%5 == 4 {
							body = track("c", fmt.Sprintf("w%d-%d", w, i-1)) // a repeat
						}
						r := a.do("POST", "/api/v1/impressions", body)
						if r.status == 200 && strings.Contains(string(r.body), `"counted"`) {
							counted.Add(1)
						}
					}
				}()
			}
			for range 5 {
				time.Sleep(20 * time.Millisecond)
				if err := a.srv.Tracker().Snapshot(); err != nil {
					t.Error(err)
				}
			}
			close(stop)
			wg.Wait()
			if err := a.srv.Close(); err != nil {
				t.Fatal(err)
			}
			b := durableServer(t, mode, dir, clock, time.Second)
			if got, want := b.stats("c").Total, uint64(counted.Load()); got != want {
				t.Fatalf("total after restart %d, want %d counted answers", got, want)
			}
			if snaps, _ := filepath.Glob(filepath.Join(dir, "snapshot-*")); len(snaps) != 1 {
				t.Fatalf("snapshots kept: %v, want only the newest", snaps)
			}
		})
	}
}

// TestFsyncZeroWaitsForCommit: with -fsync-interval 0 answers come only
// after a group commit; concurrent requests share fsyncs.
func TestFsyncZeroWaitsForCommit(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	dir := t.TempDir()
	a := durableServer(t, "bloom", dir, &fakeClock{t: testNow}, 0)
	a.createCampaign("c")
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if !a.do("POST", "/api/v1/impressions", track("c", fmt.Sprintf("%d-%d", w, i))).ok(t, 200) {
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	records, fsyncs := a.metric("impressiond_wal_records_total"), a.metric("impressiond_wal_fsyncs_total")
	if records != 321 {
		t.Fatalf("log records %g, want 321", records)
	}
	if fsyncs == 0 || fsyncs > 321 {
		t.Fatalf("fsyncs %g for 321 records", fsyncs)
	}
	t.Logf("321 records in %g fsyncs", fsyncs)
}

// TestDiskFull: while the log cannot write, writes get 503 JSON errors and
// reads keep working; once the disk has room again writes succeed, and
// nothing counted before is lost or counted twice.
func TestDiskFull(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	var mu sync.Mutex
	full := false
	testHookOpenLogFile = func(p string) (store.File, error) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		return fullFile{f, &full, &mu}, err
	}
	defer func() { testHookOpenLogFile = nil }()
	dir := t.TempDir()
	clock := &fakeClock{t: testNow}
	a := durableServer(t, "exact", dir, clock, 0)
	a.createCampaign("c")
	a.do("POST", "/api/v1/impressions", track("c", "before")).want(t, 200)

	mu.Lock()
	full = true
	mu.Unlock()
	r := a.do("POST", "/api/v1/impressions", track("c", "during")).want(t, 503)
	if !strings.Contains(string(r.body), "no space left on device") {
		t.Fatalf("503 body %s does not say why", r.body)
	}
	a.do("POST", "/api/v1/impressions", track("c", "during")).want(t, 503)
	a.do("POST", "/api/v1/impressions/batch", `[`+track("c", "b1")+`]`).want(t, 503)
	a.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 503)
	if got := a.stats("c").Total; got != 2 {
		t.Fatalf("total while the disk is full: %d, want 2 (before, and during: applied, not yet durable)", got)
	}
	a.do("GET", "/api/v1/campaigns", "").want(t, 200)
	metrics := string(a.do("GET", "/metrics", "").want(t, 200).body)
	if !strings.Contains(metrics, "impressiond_storage_healthy 0") {
		t.Fatal("metrics do not show the storage as unhealthy")
	}

	mu.Lock()
	full = false
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !a.storageHealthy() {
		if time.Now().After(deadline) {
			t.Fatal("the log did not recover within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r = a.do("POST", "/api/v1/impressions", track("c", "during")).want(t, 200)
	if !strings.Contains(string(r.body), `"duplicate"`) {
		t.Fatalf("retry of the 503'd impression: %s, want duplicate", r.body)
	}
	a.do("POST", "/api/v1/impressions", track("c", "after")).want(t, 200)
	a.do("POST", "/api/v1/campaigns", `{"id":"d","name":"D"}`).want(t, 201)
	if err := a.srv.Close(); err != nil {
		t.Fatal(err)
	}
	b := durableServer(t, "exact", dir, clock, 0)
	if got := b.stats("c").Total; got != 3 {
		t.Fatalf("total after restart %d, want 3", got)
	}
	b.do("GET", "/api/v1/campaigns/d", "").want(t, 200)
}

type fullFile struct {
	*os.File
	full *bool
	mu   *sync.Mutex
}

func (f fullFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f fullFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *f.full {
		return syscall.ENOSPC
	}
	return f.File.Sync()
}

// TestRestoreRefusesDamage: a damaged snapshot or log, a snapshot of other
// dedup options, or a log of the other mode stop New with an error naming
// the file; a torn log tail is cut and reported.
func TestRestoreRefusesDamage(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	setup := func(t *testing.T, mode string, snapshot bool) string {
		dir := t.TempDir()
		a := durableServer(t, mode, dir, &fakeClock{t: testNow}, time.Second)
		load(a)
		if snapshot {
			if err := a.srv.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := a.srv.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	open := func(mode, dir string, capacity int) error {
		o := testOptions{coreOptions: coreOptions{Dedup: newDedup(t, mode, capacity), DataDir: dir, Now: (&fakeClock{t: testNow}).Now}}
		s, err := newServer(o)
		if err != nil {
			return err
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close after opening %s: %v", dir, err)
		}
		return nil
	}
	flip := func(t *testing.T, pattern string, at func(n int) int) string {
		files, _ := filepath.Glob(pattern)
		if len(files) == 0 {
			t.Fatalf("no file %s", pattern)
		}
		f := files[len(files)-1]
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b[at(len(b))] ^= 0x10
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Run("snapshot byte flipped", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		f := flip(t, filepath.Join(dir, "snapshot-*"), func(n int) int { return n / 2 })
		var ce *store.CorruptError
		if err := open("bloom", dir, 100000); !errors.As(err, &ce) || ce.File != f {
			t.Fatalf("New = %v, want a CorruptError in %s", err, f)
		}
	})
	t.Run("log byte flipped", func(t *testing.T) {
		dir := setup(t, "exact", false)
		f := flip(t, filepath.Join(dir, "wal-*"), func(n int) int { return n / 2 })
		var ce *store.CorruptError
		if err := open("exact", dir, 100000); !errors.As(err, &ce) || ce.File != f {
			t.Fatalf("New = %v, want a CorruptError in %s", err, f)
		}
	})
	t.Run("torn tail", func(t *testing.T) {
		dir := setup(t, "exact", false)
		files, _ := filepath.Glob(filepath.Join(dir, "wal-*"))
		f := files[len(files)-1]
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b[:len(b)-3], 0o644); err != nil {
			t.Fatal(err)
		}
		clock := &fakeClock{t: testNow}
		s := durableServer(t, "exact", dir, clock, time.Second)
		if s.srv.Tracker().Restored().Torn == nil {
			t.Fatal("torn tail not reported")
		}
		// The last record was the batch's last duplicate (batch-19 again).
		if got := s.stats("beta"); got.Total != 20+30 || got.Duplicates.Total != 20-1 {
			t.Fatalf("beta %+v, want 50 counted and 19 duplicates", got)
		}
	})
	t.Run("other capacity", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		err := open("bloom", dir, 200000)
		if err == nil || !strings.Contains(err.Error(), "different options") || !strings.Contains(err.Error(), "snapshot-") {
			t.Fatalf("New = %v, want a layout mismatch naming the snapshot", err)
		}
	})
	t.Run("other capacity, reset", func(t *testing.T) {
		dir := setup(t, "bloom", true)
		clock := &fakeClock{t: testNow}
		s := newTestServer(t, "bloom", func(o *testOptions) {
			o.Dedup = newDedup(t, "bloom", 200000)
			o.DataDir, o.ResetDedup, o.Now = dir, true, clock.Now
			o.FsyncInterval, o.SnapshotInterval = time.Second, time.Hour
		})
		if st := s.srv.Tracker().Restored(); !strings.Contains(st.DedupReset, "different options") || st.NewSecret {
			t.Fatalf("restored %+v; want the window reset for its options, the secret kept", st)
		}
		if got := s.stats("beta").Total; got != 20+30 {
			t.Fatalf("beta total %d after the reset, want 50: counts are kept", got)
		}
	})
	t.Run("bloom log, exact server", func(t *testing.T) {
		dir := setup(t, "bloom", false)
		err := open("exact", dir, 100000)
		if err == nil || !strings.Contains(err.Error(), "-dedup bloom") {
			t.Fatalf("New = %v, want it to say the log was written in bloom mode", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		durableServer(t, "bloom", dir, &fakeClock{t: testNow}, time.Second)
		if err := open("bloom", dir, 100000); !errors.Is(err, store.ErrLocked) {
			t.Fatalf("second server on one directory: %v, want ErrLocked", err)
		}
	})
}

func newDedup(t *testing.T, mode string, capacity int) sketch.Deduper {
	t.Helper()
	d, err := sketch.New(mode, sketch.Options{TTL: time.Hour, Slices: 6, Capacity: capacity, FalsePositiveRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStartTimeSurvivesRestart: the start_times at the edges of the stored
// range come back unchanged after a restart, from the log and from a
// snapshot.
func TestStartTimeSurvivesRestart(t *testing.T) {
	memoryOnly(t, "persistence to -data-dir")
	for _, how := range []string{"log", "snapshot"} {
		t.Run(how, func(t *testing.T) {
			dir := t.TempDir()
			clock := &fakeClock{t: testNow}
			a := durableServer(t, "exact", dir, clock, time.Second)
			for i, tc := range startTimes {
				a.do("POST", "/api/v1/campaigns", fmt.Sprintf(`{"id":"s%d","name":"x","start_time":"%s"}`, i, tc.in)).want(t, 201)
			}
			if how == "snapshot" {
				if err := a.srv.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := a.srv.Close(); err != nil {
					t.Fatal(err)
				}
			}
			b := durableServer(t, "exact", dir, clock, time.Second)
			for i, tc := range startTimes {
				var got campaignJSON
				b.do("GET", fmt.Sprintf("/api/v1/campaigns/s%d", i), "").want(t, 200).decode(t, &got)
				if got.StartTime != tc.want {
					t.Errorf("start_time %s after a restart from the %s: %s, want %s", tc.in, how, got.StartTime, tc.want)
				}
			}
		})
	}
}
