package tracker

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/impressiond/impressiond/internal/redistest"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store/redisstore"
)

// The state suite: one set of tests of the seam (state), run against every
// implementation. Each test gets a fresh state and the clock it runs on;
// what a test asserts, every state must do alike.

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// suiteNow is where every suite clock starts: the time the tests run,
// moved as the Redis tests are moved (redistest.ClockShift), half a minute
// into a minute.
func suiteNow(t testing.TB) time.Time {
	return time.Now().Add(redistest.ClockShift(t)).UTC().Truncate(time.Minute).Add(30 * time.Second)
}

var suiteDedup = sketch.Options{TTL: time.Hour, Slices: 6, Capacity: 100000, FalsePositiveRate: 0.001}

// opener returns a new state on clock, closed when the test ends.
type opener func(t *testing.T, mode string, clock *fakeClock) state

var quiet = slog.New(slog.DiscardHandler)

func openMemory(t *testing.T, mode string, clock *fakeClock) state {
	return openLocalTest(t, mode, clock, "")
}

func openDurable(t *testing.T, mode string, clock *fakeClock) state {
	return openLocalTest(t, mode, clock, t.TempDir())
}

func openLocalTest(t *testing.T, mode string, clock *fakeClock, dir string) state {
	t.Helper()
	d, err := sketch.New(mode, suiteDedup)
	if err != nil {
		t.Fatal(err)
	}
	var st RestoreStats
	l, err := openLocal(&Options{Dedup: d, DataDir: dir, FsyncInterval: 0, SnapshotInterval: time.Hour, MaxCampaigns: 100000, Logger: quiet}, clock.Now, &st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.close(true); err != nil {
			t.Error(err)
		}
	})
	return l
}

func openRedis(t *testing.T, mode string, clock *fakeClock) state {
	t.Helper()
	srv := redistest.Start(t)
	r, err := redisstore.Open(redisstore.Options{URL: srv.URL, Mode: mode, Timeout: 5 * time.Second, Clock: clock.Now, Dedup: suiteDedup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	s := newShared(r, clock.Now, quiet)
	t.Cleanup(func() { s.close(true) })
	return s
}

// TestStates runs the suite against each state and dedup mode.
func TestStates(t *testing.T) {
	states := []struct {
		name string
		open opener
	}{
		{"memory", openMemory},
		{"durable", openDurable},
		{"redis", openRedis},
	}
	suite := []struct {
		name string
		test func(t *testing.T, s state, clock *fakeClock)
	}{
		{"Campaigns", testStateCampaigns},
		{"CampaignLimit", testStateCampaignLimit},
		{"Pages", testStatePages},
		{"TrackOne", testStateTrackOne},
		{"TrackBatch", testStateTrackBatch},
		{"Window", testStateWindow},
		{"History", testStateHistory},
		{"Concurrent", testStateConcurrent},
		{"Metrics", testStateMetrics},
	}
	for _, st := range states {
		for _, mode := range []string{"bloom", "exact"} {
			t.Run(st.name+"/"+mode, func(t *testing.T) {
				for _, tc := range suite {
					t.Run(tc.name, func(t *testing.T) {
						clock := &fakeClock{t: suiteNow(t)}
						tc.test(t, st.open(t, mode, clock), clock)
					})
				}
			})
		}
	}
}

func mustCreate(t *testing.T, s state, id string, start time.Time) *Campaign {
	t.Helper()
	if err := s.create(&Campaign{ID: id, Name: "Campaign " + id, Start: start}, 100); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	c, err := s.campaign([]byte(id))
	if err != nil || c == nil {
		t.Fatalf("campaign %s after create: %v, %v", id, c, err)
	}
	return c
}

func testStateCampaigns(t *testing.T, s state, clock *fakeClock) {
	if c, err := s.campaign([]byte("nope")); c != nil || err != nil {
		t.Fatalf("unknown campaign: got %v, %v; want nil, nil", c, err)
	}
	start := clock.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	c := mustCreate(t, s, "spring", start)
	if c.ID != "spring" || c.Name != "Campaign spring" || !c.Start.Equal(start) {
		t.Fatalf("campaign read back as %+v", c)
	}
	if err := s.create(&Campaign{ID: "spring", Name: "again", Start: start}, 100); err != errCampaignExists {
		t.Fatalf("second create: %v, want errCampaignExists", err)
	}
	if c, _ := s.campaign([]byte("spring")); c.Name != "Campaign spring" {
		t.Fatalf("a refused create changed the campaign: %+v", c)
	}
}

func testStateCampaignLimit(t *testing.T, s state, clock *fakeClock) {
	for i := range 3 {
		if err := s.create(&Campaign{ID: fmt.Sprint("c", i), Name: "n", Start: clock.Now()}, 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.create(&Campaign{ID: "c3", Name: "n", Start: clock.Now()}, 3); err != errCampaignLimit {
		t.Fatalf("create past the limit: %v, want errCampaignLimit", err)
	}
	if c, err := s.campaign([]byte("c3")); c != nil || err != nil {
		t.Fatalf("the refused campaign exists: %v, %v", c, err)
	}
}

func testStatePages(t *testing.T, s state, clock *fakeClock) {
	ids := []string{"d", "b", "e", "a", "c"}
	for _, id := range ids {
		mustCreate(t, s, id, clock.Now())
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, more, err := s.page("", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > 2 || (more && len(p) != 2) {
			t.Fatalf("page after %q: %d campaigns, more %v", after, len(p), more)
		}
		for _, c := range p {
			got = append(got, c.ID)
		}
		if !more {
			break
		}
		after = p[len(p)-1].ID
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Fatalf("pages hold %v, want a..e in order", got)
	}
	if p, more, _ := s.page("", "bb", 10); len(p) != 3 || p[0].ID != "c" || more {
		t.Fatalf("page after an id between campaigns: %v, more %v", p, more)
	}
	if p, more, _ := s.page("", "e", 10); len(p) != 0 || more {
		t.Fatalf("page after the last: %v, more %v", p, more)
	}
	// A prefix selects the run of ids that start with it, paged alike.
	for _, id := range []string{"spring-1", "spring-2", "spring-3", "spring", "sprint", "summer"} {
		mustCreate(t, s, id, clock.Now())
	}
	ids2 := func(p []Campaign) string {
		var out []string
		for _, c := range p {
			out = append(out, c.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		prefix, after string
		limit         int
		want          string
		more          bool
	}{
		{"spring", "", 10, "spring,spring-1,spring-2,spring-3", false},
		{"spring", "", 2, "spring,spring-1", true},
		{"spring", "spring-1", 2, "spring-2,spring-3", false},
		{"spring", "spring-2", 1, "spring-3", false},
		{"spring-", "", 10, "spring-1,spring-2,spring-3", false},
		{"spr", "spring-3", 10, "sprint", false},
		{"s", "a", 3, "spring,spring-1,spring-2", true},
		{"x", "", 10, "", false},
		{"spring", "zzz", 10, "", false},
	} {
		p, more, err := s.page(tc.prefix, tc.after, tc.limit)
		if err != nil || ids2(p) != tc.want || more != tc.more {
			t.Fatalf("page(%q, %q, %d) = %s, more %v, %v; want %s, more %v", tc.prefix, tc.after, tc.limit, ids2(p), more, err, tc.want, tc.more)
		}
	}
	if s.count() < 0 {
		t.Fatalf("count %d", s.count())
	}
}

func testStateTrackOne(t *testing.T, s state, clock *fakeClock) {
	c := mustCreate(t, s, "c", clock.Now().Add(-24*time.Hour))
	now := clock.Now()
	for i, want := range []bool{false, true, true} {
		dup, err := s.trackOne(c, nil, []byte("u1"), now, now)
		if err != nil || dup != want {
			t.Fatalf("impression %d: dup %v, %v; want %v", i, dup, err, want)
		}
	}
	if dup, err := s.trackOne(c, nil, []byte("u2"), now, now); err != nil || dup {
		t.Fatalf("another user: dup %v, %v", dup, err)
	}
	other := mustCreate(t, s, "other", clock.Now().Add(-24*time.Hour))
	if dup, err := s.trackOne(other, nil, []byte("u1"), now, now); err != nil || dup {
		t.Fatalf("the same user in another campaign: dup %v, %v", dup, err)
	}
	w, err := s.window(c, stats.Minute(now))
	if err != nil || w.LastHour != 2 || w.LastDay != 2 || w.Total != 2 {
		t.Fatalf("window %+v, %v; want 2 everywhere", w, err)
	}
	if w.Duplicates != (stats.Window{LastHour: 2, LastDay: 2, Total: 2}) {
		t.Fatalf("duplicates %+v, want the 2 repeats of u1 everywhere", w.Duplicates)
	}
	if w, _ := s.window(other, stats.Minute(now)); w.Duplicates != (stats.Window{}) {
		t.Fatalf("another campaign's duplicates %+v, want none", w.Duplicates)
	}
	// The pair is blocked for the TTL at least, free after TTL + TTL/K.
	clock.Add(time.Hour - time.Second)
	if dup, _ := s.trackOne(c, nil, []byte("u1"), clock.Now(), clock.Now()); !dup {
		t.Fatal("a repeat within the TTL was counted")
	}
	clock.Add(time.Hour/6 + 2*time.Second)
	if dup, _ := s.trackOne(c, nil, []byte("u1"), clock.Now(), clock.Now()); dup {
		t.Fatal("a repeat after TTL + TTL/K was taken for a duplicate")
	}
}

func testStateTrackBatch(t *testing.T, s state, clock *fakeClock) {
	c := mustCreate(t, s, "c", clock.Now().Add(-24*time.Hour))
	now := clock.Now()
	items := []judged{
		{c: c, user: []byte("a"), at: now, index: 0},
		{c: c, user: []byte("b"), at: now, index: 2},
		{c: c, user: []byte("a"), at: now, index: 3},
	}
	out := make([]Outcome, 4)
	out[1] = Outcome{Err: ErrUserIDRequired} // an item the tracker refused
	if err := s.track(items, now, out); err != nil {
		t.Fatal(err)
	}
	want := []Outcome{{}, {Err: ErrUserIDRequired}, {}, {Dup: true}}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("outcomes %+v, want %+v", out, want)
		}
	}
	if err := s.track(nil, now, nil); err != nil {
		t.Fatalf("an empty batch: %v", err)
	}
	if w, _ := s.window(c, stats.Minute(now)); w.Total != 2 || w.Duplicates.Total != 1 || w.Duplicates.LastHour != 1 {
		t.Fatalf("window %+v after a batch of two pairs and a repeat, want total 2 and 1 duplicate", w)
	}
}

func testStateWindow(t *testing.T, s state, clock *fakeClock) {
	c := mustCreate(t, s, "c", clock.Now().Add(-48*time.Hour))
	now := clock.Now()
	// Event times: now, 30 minutes ago, 3 hours ago, 30 hours ago.
	for i, ago := range []time.Duration{0, 30 * time.Minute, 3 * time.Hour, 30 * time.Hour} {
		if dup, err := s.trackOne(c, nil, []byte(fmt.Sprint("u", i)), now.Add(-ago), now); dup || err != nil {
			t.Fatalf("impression %d: %v, %v", i, dup, err)
		}
	}
	nowMin := stats.Minute(now)
	w, err := s.window(c, nowMin)
	if err != nil || w.LastHour != 2 || w.LastDay != 3 || w.Total != 4 {
		t.Fatalf("window %+v, %v; want last hour 2, last day 3, total 4", w, err)
	}
	series := make([]uint64, 60)
	if err := s.series(c, nowMin, series); err != nil {
		t.Fatal(err)
	}
	if series[59] != 1 || series[29] != 1 {
		t.Fatalf("series of the last hour %v: want 1 at the current minute and 30 minutes before", series)
	}
	var sum uint64
	for _, v := range series {
		sum += v
	}
	if sum != 2 {
		t.Fatalf("series sums to %d, want 2", sum)
	}
	// Duplicates fall in the windows of their event times, one at a time
	// and in a batch alike; they change no count and no series.
	var items []judged
	for i, ago := range []time.Duration{0, 30 * time.Minute, 3 * time.Hour, 30 * time.Hour} {
		if dup, err := s.trackOne(c, nil, []byte(fmt.Sprint("u", i)), now.Add(-ago), now); !dup || err != nil {
			t.Fatalf("repeat %d: %v, %v", i, dup, err)
		}
		items = append(items, judged{c: c, user: []byte(fmt.Sprint("u", i)), at: now.Add(-ago), index: i})
	}
	out := make([]Outcome, len(items))
	if err := s.track(items, now, out); err != nil {
		t.Fatal(err)
	}
	w, err = s.window(c, nowMin)
	if err != nil || w.Window != (stats.Window{LastHour: 2, LastDay: 3, Total: 4}) || w.Duplicates != (stats.Window{LastHour: 4, LastDay: 6, Total: 8}) {
		t.Fatalf("window %+v, %v; want counts 2/3/4 and duplicates 4/6/8", w, err)
	}
	if err := s.series(c, nowMin, series); err != nil || series[59] != 1 {
		t.Fatalf("series after the duplicates: %v, %v", series, err)
	}
}

func testStateConcurrent(t *testing.T, s state, clock *fakeClock) {
	c := mustCreate(t, s, "c", clock.Now().Add(-time.Hour))
	const workers, users = 8, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	counted := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range users {
				now := clock.Now()
				dup, err := s.trackOne(c, nil, []byte(fmt.Sprint("u", u)), now, now)
				if err != nil {
					t.Error(err)
					return
				}
				if !dup {
					mu.Lock()
					counted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if counted != users {
		t.Fatalf("%d workers tracking the same %d users counted %d, want each once", workers, users, counted)
	}
	if w, _ := s.window(c, stats.Minute(clock.Now())); w.Total != users {
		t.Fatalf("total %d, want %d", w.Total, users)
	}
}

func testStateMetrics(t *testing.T, s state, clock *fakeClock) {
	mustCreate(t, s, "c", clock.Now())
	var b strings.Builder
	helped := map[string]bool{}
	s.writeMetrics(&b, func(name, typ, text string) {
		if helped[name] || (typ != "gauge" && typ != "counter") || text == "" {
			t.Errorf("help %q %q %q: repeated or malformed", name, typ, text)
		}
		helped[name] = true
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
	})
	if !strings.Contains(b.String(), "\nimpressiond_campaigns 1\n") {
		t.Fatalf("metrics do not count the one campaign:\n%s", b.String())
	}
	for line := range strings.SplitSeq(strings.TrimSpace(b.String()), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		if !helped[name] {
			t.Errorf("sample %q has no HELP", line)
		}
	}
}

// testStateHistory: counted impressions land in their event hour and day;
// duplicates do not.
func testStateHistory(t *testing.T, s state, clock *fakeClock) {
	c := mustCreate(t, s, "c", clock.Now().Add(-400*24*time.Hour))
	now := clock.Now()
	ago := []time.Duration{0, 3 * time.Hour, 50 * 24 * time.Hour, 150 * 24 * time.Hour}
	for i, a := range ago {
		for range 2 { // the second is a duplicate
			if _, err := s.trackOne(c, nil, []byte(fmt.Sprint("u", i)), now.Add(-a), now); err != nil {
				t.Fatal(err)
			}
		}
	}
	nowMin := stats.Minute(now)
	hours := make([]uint64, 60*24)
	firstHour := stats.HourOf(nowMin) - int64(len(hours)) + 1
	if err := s.history(c, time.Hour, firstHour, hours); err != nil {
		t.Fatal(err)
	}
	days := make([]uint64, 200)
	firstDay := stats.DayOf(nowMin) - int64(len(days)) + 1
	if err := s.history(c, 24*time.Hour, firstDay, days); err != nil {
		t.Fatal(err)
	}
	want := func(got []uint64, first int64, at map[int64]uint64) {
		t.Helper()
		for i, v := range got {
			if v != at[first+int64(i)] {
				t.Fatalf("point %d (of %d from %d): %d, want %d", i, len(got), first, v, at[first+int64(i)])
			}
		}
	}
	hourAt, dayAt := map[int64]uint64{}, map[int64]uint64{}
	for _, a := range ago {
		m := stats.Minute(now.Add(-a))
		if h := stats.HourOf(m); h >= firstHour {
			hourAt[h]++
		}
		dayAt[stats.DayOf(m)]++
	}
	want(hours, firstHour, hourAt)
	want(days, firstDay, dayAt)
}
