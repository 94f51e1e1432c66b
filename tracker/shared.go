package tracker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store/redisstore"
)

// shared is the state in a shared Redis (Options.Redis): campaigns, dedup
// and counters live there, and this process keeps nothing of its own but a
// cache of campaigns, which never change once created. Dedup and count of
// an impression are one Redis script call, so trackers sharing a Redis
// agree.
type shared struct {
	remote *redisstore.Store
	cache  remoteCampaigns // campaigns read from Redis
	lists  *remoteLister   // coalesces lists of every campaign in Redis
	errLog logLimiter      // paces the log lines of failing Redis calls
	now    func() time.Time
	log    *slog.Logger
}

func newShared(r *redisstore.Store, now func() time.Time, log *slog.Logger) *shared {
	return &shared{remote: r, lists: newRemoteLister(), now: now, log: log}
}

// remoteCampaigns caches the campaigns read from Redis. It is safe for
// concurrent use.
type remoteCampaigns struct {
	mu sync.RWMutex
	m  map[string]*Campaign
}

func (r *remoteCampaigns) get(id []byte) *Campaign {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[string(id)]
}

func (r *remoteCampaigns) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

func (r *remoteCampaigns) put(c *Campaign) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*Campaign)
	}
	r.m[c.ID] = c
}

// errRedis logs err and returns the generic answer to the client. During an
// outage every request fails alike, so the log gets at most one line a
// second (redisLogEvery), with the number of failures it stands for.
func (s *shared) errRedis(err error) *Error {
	if n, ok := s.errLog.allow(s.now()); ok {
		s.log.Error("shared store (Redis) request failed; clients get 503", "err", err, "failures", n)
	}
	return ErrSharedUnavailable
}

// redisLogEvery is the least time between two log lines about failing
// Redis calls.
const redisLogEvery = time.Second

// logLimiter lets one log line through per redisLogEvery and counts the
// events it holds back. It is safe for concurrent use.
type logLimiter struct {
	next    atomic.Int64  // Unix nanoseconds before which lines are held back
	pending atomic.Uint64 // events since the last line let through
}

// allow counts one event and reports whether to log it now, with the
// events (this one included) the line stands for.
func (l *logLimiter) allow(now time.Time) (uint64, bool) {
	l.pending.Add(1)
	t, next := now.UnixNano(), l.next.Load()
	if t < next || !l.next.CompareAndSwap(next, t+int64(redisLogEvery)) {
		return 0, false
	}
	return l.pending.Swap(0), true
}

func (s *shared) campaign(id []byte) (*Campaign, error) {
	if c := s.cache.get(id); c != nil {
		return c, nil
	}
	rc, ok, err := s.remote.GetCampaign(string(id))
	if err != nil {
		return nil, s.errRedis(err)
	}
	if !ok {
		return nil, nil
	}
	c := &Campaign{ID: rc.ID, Name: rc.Name, Start: rc.Start}
	s.cache.put(c)
	return c, nil
}

func (s *shared) create(c *Campaign, max int) error {
	if !c.End.IsZero() {
		// Every server caches campaigns for good; an end it could not see
		// change would be judged differently by each.
		return ErrLifecycleUnsupported
	}
	err := s.remote.CreateCampaign(redisstore.Campaign{ID: c.ID, Name: c.Name, Start: c.Start}, max)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redisstore.ErrExists):
		return errCampaignExists
	case errors.Is(err, redisstore.ErrLimit):
		return errCampaignLimit
	}
	return s.errRedis(err)
}

func (s *shared) update([]byte, func(*Campaign) (*Campaign, error)) (*Campaign, error) {
	return nil, ErrLifecycleUnsupported
}

func (s *shared) remove([]byte) (bool, error) { return false, ErrLifecycleUnsupported }

// count is the campaigns this process has read from Redis: counting all
// of them would cost a scan of Redis on every scrape.
func (s *shared) count() int { return s.cache.len() }

func (s *shared) page(prefix, after string, limit int) ([]Campaign, bool, error) {
	all, err := s.listAll()
	if err != nil {
		return nil, false, err
	}
	p, more := pageOf(all, func(c redisstore.Campaign) string { return c.ID }, prefix, after, limit)
	out := make([]Campaign, len(p))
	for i, c := range p {
		out[i] = Campaign{ID: c.ID, Name: c.Name, Start: c.Start}
	}
	return out, more, nil
}

// listAll returns every campaign in Redis, ordered by id; the slice is
// shared and must not be modified. Concurrent lists share one read
// (remoteLister), so a burst of them holds one or two copies of the
// campaigns, not one each. They stay redisstore.Campaign values: a
// local Campaign carries a day of per-minute counters (12 KiB), which a list
// of 100,000 would allocate a gigabyte of.
func (s *shared) listAll() ([]redisstore.Campaign, error) {
	return s.lists.list(func() ([]redisstore.Campaign, error) {
		all, err := s.remote.ListCampaigns()
		if err != nil {
			return nil, s.errRedis(err)
		}
		slices.SortFunc(all, func(a, b redisstore.Campaign) int { return strings.Compare(a.ID, b.ID) })
		return all, nil
	})
}

// remoteLister coalesces concurrent reads of the whole campaign list from
// Redis. Requests that arrive while a read runs form the next group, whose
// first member reads once the running read ends, for all of them: at most
// one read runs and one group waits, however many lists are in flight.
// Every request is answered from a read that started after it arrived, so
// a list sees every campaign whose creation was answered before it. It is
// safe for concurrent use.
type remoteLister struct {
	mu      sync.Mutex // guards pending
	pending *listRead  // the group not yet reading, nil if none
	turn    chan struct{}
}

// listRead is one read shared by a group; all and err are set before done
// is closed and never change after.
type listRead struct {
	done    chan struct{}
	members int // guarded by remoteLister.mu
	all     []redisstore.Campaign
	err     error
}

func newRemoteLister() *remoteLister { return &remoteLister{turn: make(chan struct{}, 1)} }

func (r *remoteLister) list(read func() ([]redisstore.Campaign, error)) ([]redisstore.Campaign, error) {
	r.mu.Lock()
	g := r.pending
	leader := g == nil
	if leader {
		g = &listRead{done: make(chan struct{})}
		r.pending = g
	}
	g.members++
	r.mu.Unlock()
	if !leader {
		<-g.done
		return g.all, g.err
	}
	r.turn <- struct{}{} // wait for the running read, if any
	r.mu.Lock()
	r.pending = nil // requests from now on form the next group
	r.mu.Unlock()
	g.all, g.err = read()
	<-r.turn
	close(g.done)
	return g.all, g.err
}

func (s *shared) window(c *Campaign, now int64) (Stats, error) {
	r, err := s.remote.Stats(c.ID, now, stats.DayMinutes)
	if err != nil {
		return Stats{}, s.errRedis(err)
	}
	return Stats{Window: windowOf(r.Counted, r.Total), Duplicates: windowOf(r.Duplicates, r.DuplicatesTotal)}, nil
}

func windowOf(mins []uint64, total uint64) stats.Window {
	var w stats.Window
	for i, v := range mins {
		if i >= len(mins)-stats.HourMinutes {
			w.LastHour += v
		}
		w.LastDay += v
	}
	w.Total = max(total, w.LastDay)
	return w
}

func (s *shared) series(c *Campaign, now int64, dst []uint64) error {
	mins, _, err := s.remote.Minutes(c.ID, now, len(dst))
	if err != nil {
		return s.errRedis(err)
	}
	copy(dst, mins)
	return nil
}

// history reads the minute, hour or day keys the scripts count into.
func (s *shared) history(c *Campaign, step time.Duration, first int64, dst []uint64) error {
	var counts []uint64
	var err error
	switch step {
	case time.Minute:
		return s.series(c, first+int64(len(dst))-1, dst)
	case time.Hour:
		counts, err = s.remote.Hours(c.ID, first, len(dst))
	default:
		counts, err = s.remote.Days(c.ID, first, len(dst))
	}
	if err != nil {
		return s.errRedis(err)
	}
	copy(dst, counts)
	return nil
}

func (s *shared) trackOne(c *Campaign, _, user []byte, at, _ time.Time) (bool, error) {
	item := [1]redisstore.Item{{Campaign: c.ID, User: user, Minute: stats.Minute(at)}}
	var counted [1]bool
	if err := s.remote.Track(item[:], counted[:]); err != nil {
		return false, s.errRedis(err)
	}
	return !counted[0], nil
}

// track has Redis dedup and count the judged items in one round trip per
// campaign (pipelined).
func (s *shared) track(items []judged, _ time.Time, out []Outcome) error {
	valid := make([]redisstore.Item, len(items))
	for j, it := range items {
		valid[j] = redisstore.Item{Campaign: it.c.ID, User: it.user, Minute: stats.Minute(it.at)}
	}
	counted := make([]bool, len(valid))
	if err := s.remote.Track(valid, counted); err != nil {
		return s.errRedis(err)
	}
	for j, it := range items {
		out[it.index].Dup = !counted[j]
	}
	return nil
}

// retryAfter is zero: the shared window does not bound its pairs.
func (s *shared) retryAfter(time.Time) time.Duration { return 0 }

func (s *shared) snapshot() error {
	return errors.New("tracker: Snapshot needs Options.DataDir; the shared state is Redis's to persist")
}

// errRedisDown is Ready's answer while Redis does not answer its pings.
var errRedisDown = errors.New("the shared store (Redis) does not answer")

func (s *shared) ready() error {
	if !s.remote.Healthy() {
		return errRedisDown
	}
	return nil
}

// close leaves the Redis store open: it was given, not opened, here.
func (s *shared) close(bool) error { return nil }

func (s *shared) writeMetrics(w io.Writer, help func(name, typ, text string)) {
	help("impressiond_campaigns", "gauge", "Campaigns registered; with a shared Redis, the campaigns this instance has read from it (counting them all would scan Redis on every scrape).")
	fmt.Fprintf(w, "impressiond_campaigns %d\n", s.count())
	up := 0
	if s.remote.Healthy() {
		up = 1
	}
	help("impressiond_redis_up", "gauge", "1 while the shared Redis answers its pings; 0 while requests that need it get 503.")
	fmt.Fprintf(w, "impressiond_redis_up %d\n", up)
	help("impressiond_redis_clock_offset_seconds", "gauge", "This instance's clock minus Redis's, as last measured; the dedup window runs on Redis's clock, so an offset costs retries, never wrong counts.")
	fmt.Fprintf(w, "impressiond_redis_clock_offset_seconds %g\n", -s.remote.ClockSkew().Seconds())
	help("impressiond_redis_slice_retries_total", "counter", "Dedup calls made again because this instance guessed the shared clock's slice wrong (near a slice boundary, or after its clock stepped).")
	fmt.Fprintf(w, "impressiond_redis_slice_retries_total %d\n", s.remote.EpochRetries())
	help("impressiond_redis_bloom_pool_full_total", "counter", "Pairs this instance added to a campaign's full pool of bloom sub-filters (more than -dedup-capacity distinct pairs within a TTL): counted, but the campaign's false-positive rate rises above -dedup-fp while it lasts.")
	fmt.Fprintf(w, "impressiond_redis_bloom_pool_full_total %d\n", s.remote.PoolFull())
}
