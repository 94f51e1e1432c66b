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
// cache of campaigns. Dedup and count of an impression are one Redis
// script call, so trackers sharing a Redis agree.
//
// The cache may lag another instance's change or deletion, but no count
// does: each cached campaign carries the definition version it was read
// at (Campaign.ref), and the track script, in the same call that counts,
// refuses an impression judged by any other version (STALE). The instance
// then reads the campaign again, judges the impression again (not found:
// ErrCampaignNotFound; after the new end: ErrAfterEnd) and retries. So
// every impression tracked after a change or deletion returned, on any
// instance, is judged by the new definition. Reads (Campaign, Stats,
// Series, History) read the campaign from Redis (fresh). A frequency
// check reads each campaign's version with its exposures, and answers
// one that changed by the campaign as it is now (see frequency).
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

func (r *remoteCampaigns) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, id)
}

// put caches c for the judge: with End zero and the end in c.end, so
// that an end another instance changed or removed never refuses an
// impression by this cache alone (see shared.endCheck).
func (r *remoteCampaigns) put(c *Campaign) {
	j := *c
	j.end, j.End = c.End, time.Time{}
	c = &j
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
	return s.fresh(id)
}

// fresh reads the campaign with the given id from Redis and caches it (or
// drops it from the cache when there is none).
func (s *shared) fresh(id []byte) (*Campaign, error) {
	rc, ok, err := s.remote.GetCampaign(string(id))
	if err != nil {
		return nil, s.errRedis(err)
	}
	if !ok {
		s.cache.drop(string(id))
		return nil, nil
	}
	c := fromRemote(rc)
	s.cache.put(c)
	return c, nil
}

// judgeEnd applies the end of c, a campaign the judge had from the cache,
// to an impression at at. A refusal is checked against Redis first: it
// answers ErrAfterEnd only by the end current now; if the campaign
// changed, it answers by the campaign as read again (n, to track by).
func (s *shared) judgeEnd(c *Campaign, at time.Time) (*Campaign, error) {
	for try := 1; ; try++ {
		if c.end.IsZero() || !at.After(c.end) {
			return c, nil
		}
		if c.ref == "" {
			return nil, ErrAfterEnd
		}
		n, err := s.fresh([]byte(c.ID))
		switch {
		case err != nil:
			return nil, err
		case n == nil:
			return nil, ErrCampaignNotFound
		case n.ref == c.ref || try >= maxStaleTries:
			if !n.End.IsZero() && at.After(n.End) {
				return nil, ErrAfterEnd
			}
			return n, nil
		}
		if c = s.cache.get([]byte(c.ID)); c == nil {
			return nil, ErrCampaignNotFound
		}
	}
}

func fromRemote(rc redisstore.Campaign) *Campaign {
	return &Campaign{ID: rc.ID, Name: rc.Name, Start: rc.Start, End: rc.End, Caps: capsFromRemote(rc.Caps), ref: redisstore.Ref(rc.ID, rc.Gen, rc.Ver)}
}

// toRemote is the definition of c that Redis keeps.
func toRemote(c *Campaign) redisstore.Campaign {
	rc := redisstore.Campaign{ID: c.ID, Name: c.Name, Start: c.Start, End: c.End}
	if len(c.Caps) > 0 {
		rc.Caps = make([]redisstore.Cap, len(c.Caps))
		for i, cp := range c.Caps {
			rc.Caps[i] = redisstore.Cap{Max: cp.Max, Window: cp.Window}
		}
	}
	return rc
}

func capsFromRemote(rcs []redisstore.Cap) []FrequencyCap {
	if len(rcs) == 0 {
		return nil
	}
	caps := make([]FrequencyCap, len(rcs))
	for i, cp := range rcs {
		caps[i] = FrequencyCap{Max: cp.Max, Window: cp.Window}
	}
	return caps
}

// refOf is the Ref a track of c is checked against.
func refOf(c *Campaign) string {
	if c.ref == "" {
		return c.ID // not read from Redis (a test's): unchecked
	}
	return c.ref
}

func (s *shared) create(c *Campaign, max int) error {
	rc, err := s.remote.CreateCampaign(toRemote(c), max)
	switch {
	case err == nil:
		c.ref = redisstore.Ref(rc.ID, rc.Gen, rc.Ver)
		s.cache.put(c)
		return nil
	case errors.Is(err, redisstore.ErrExists):
		return errCampaignExists
	case errors.Is(err, redisstore.ErrLimit):
		return errCampaignLimit
	}
	return s.errRedis(err)
}

// update serialises the changes of one campaign across instances (compare
// and set in Redis, retried on a conflict); once it returns, every
// instance judges impressions by the result.
func (s *shared) update(id []byte, change func(*Campaign) (*Campaign, error)) (*Campaign, error) {
	var changeErr error
	rc, ok, err := s.remote.UpdateCampaign(string(id), func(old redisstore.Campaign) (redisstore.Campaign, error) {
		c, err := change(fromRemote(old))
		if err != nil {
			changeErr = err
			return old, err
		}
		return toRemote(c), nil
	})
	switch {
	case changeErr != nil:
		return nil, changeErr
	case err != nil:
		return nil, s.errRedis(err)
	case !ok:
		s.cache.drop(string(id))
		return nil, nil
	}
	c := fromRemote(rc)
	s.cache.put(c)
	return c, nil
}

// remove deletes the campaign, its definition first: once it returns, no
// instance counts an impression of it, and its keys are gone.
func (s *shared) remove(id []byte) (bool, error) {
	ok, err := s.remote.DeleteCampaign(string(id))
	s.cache.drop(string(id))
	if err != nil {
		return false, s.errRedis(err)
	}
	return ok, nil
}

// rejudge reads the campaign with the given id again after a track script
// found c's version stale, and judges an impression at at by it (the
// start never changes; the end may have).
func (s *shared) rejudge(c *Campaign, at time.Time) (*Campaign, error) {
	n, err := s.fresh([]byte(c.ID))
	switch {
	case err != nil:
		return nil, err
	case n == nil:
		return nil, ErrCampaignNotFound
	case n.ref == c.ref:
		// Redis holds the version refused: a change was interrupted
		// between its writes, or is between them now. Raising the
		// version key never revives a deleted campaign.
		rc, ok, err := s.remote.GetCampaign(c.ID)
		if err != nil {
			return nil, s.errRedis(err)
		}
		if !ok {
			s.cache.drop(c.ID)
			return nil, ErrCampaignNotFound
		}
		if err := s.remote.RaiseVersion(rc); err != nil {
			return nil, s.errRedis(err)
		}
	}
	if !n.End.IsZero() && at.After(n.End) {
		return nil, ErrAfterEnd
	}
	return n, nil
}

// maxStaleTries bounds the reads again of one impression's campaign: each
// follows a change answered meanwhile, so more means a campaign changing
// faster than it can be tracked, or being deleted (its record outlives its
// version key for a moment); the impression is then refused as not found.
const maxStaleTries = 5

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
		out[i] = Campaign{ID: c.ID, Name: c.Name, Start: c.Start, End: c.End, Caps: capsFromRemote(c.Caps)}
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
	r, err := s.remote.Stats(refOf(c), now, stats.DayMinutes)
	if err != nil {
		return Stats{}, s.errRedis(err)
	}
	reach, err := s.remote.Reach(refOf(c), now)
	if err != nil {
		return Stats{}, s.errRedis(err)
	}
	return Stats{Window: windowOf(r.Counted, r.Total), Duplicates: windowOf(r.Duplicates, r.DuplicatesTotal), Reach: &reach}, nil
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
	mins, _, err := s.remote.Minutes(refOf(c), now, len(dst))
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
		counts, err = s.remote.Hours(refOf(c), first, len(dst))
	default:
		counts, err = s.remote.Days(refOf(c), first, len(dst))
	}
	if err != nil {
		return s.errRedis(err)
	}
	copy(dst, counts)
	return nil
}

func (s *shared) trackOne(c *Campaign, ad, user []byte, at, now time.Time) (bool, error) {
	c, err := s.judgeEnd(c, at)
	if err != nil {
		return false, err
	}
	item := [1]redisstore.Item{{Campaign: refOf(c), User: user, Minute: stats.Minute(at), Arrival: stats.Minute(now), Ad: ad}}
	var counted [1]bool
	for try := 1; ; try++ {
		err := s.remote.Track(item[:], counted[:])
		var stale *redisstore.StaleError
		if !errors.As(err, &stale) {
			if err != nil {
				return false, s.errRedis(err)
			}
			return !counted[0], nil
		}
		if try >= maxStaleTries {
			return false, ErrCampaignNotFound
		}
		if c, err = s.rejudge(c, at); err != nil {
			return false, err
		}
		item[0].Campaign = refOf(c)
	}
}

// track has Redis dedup and count the judged items in one round trip per
// Redis node (pipelined), and again only for the campaigns whose version
// the scripts refused (see rejudge).
func (s *shared) track(items []judged, now time.Time, out []Outcome) error {
	arrival := stats.Minute(now)
	valid := make([]redisstore.Item, 0, len(items))
	pending := make([]int, 0, len(items)) // indexes into items of valid
	cs := make([]*Campaign, len(items))   // the campaign each is judged by
	for j, it := range items {
		c, err := s.judgeEnd(it.c, it.at)
		if err != nil {
			if err == ErrSharedUnavailable {
				return err
			}
			out[it.index].Err = err
			continue
		}
		cs[j] = c
		pending = append(pending, j)
		valid = append(valid, redisstore.Item{Campaign: refOf(c), User: it.user, Minute: stats.Minute(it.at), Arrival: arrival, Ad: it.ad})
	}
	counted := make([]bool, len(valid))
	for try := 1; ; try++ {
		err := s.remote.Track(valid, counted)
		var stale *redisstore.StaleError
		if !errors.As(err, &stale) {
			if err != nil {
				return s.errRedis(err)
			}
			for k, j := range pending {
				out[items[j].index].Dup = !counted[k]
			}
			return nil
		}
		refused := make(map[string]bool, len(stale.Refs))
		for _, r := range stale.Refs {
			refused[r] = true
		}
		// The items of other campaigns are tracked: set their outcomes,
		// and judge the refused ones again by their campaigns as they are.
		again := map[string]*Campaign{}
		againErr := map[string]error{}
		var next []int
		var nextItems []redisstore.Item
		for k, j := range pending {
			ref := valid[k].Campaign
			if !refused[ref] {
				out[items[j].index].Dup = !counted[k]
				continue
			}
			var err error
			if try >= maxStaleTries {
				err = ErrCampaignNotFound
			} else {
				n, seen := again[ref]
				if !seen {
					n, againErr[ref] = s.rejudge(cs[j], time.Time{})
					again[ref] = n
				}
				err = againErr[ref]
				if err == nil && !n.End.IsZero() && items[j].at.After(n.End) {
					err = ErrAfterEnd
				}
				if err == nil {
					cs[j] = n
				}
			}
			if err != nil {
				if err == ErrSharedUnavailable {
					return err
				}
				out[items[j].index].Err = err
				continue
			}
			next = append(next, j)
			nextItems = append(nextItems, redisstore.Item{Campaign: refOf(cs[j]), User: items[j].user, Minute: stats.Minute(items[j].at), Arrival: arrival, Ad: items[j].ad})
		}
		if len(next) == 0 {
			return nil
		}
		pending, valid, counted = next, nextItems, make([]bool, len(nextItems))
	}
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
