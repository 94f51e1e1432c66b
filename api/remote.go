package api

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store/redisstore"
)

// Shared-store mode (Options.Redis): campaigns, dedup and counters live in
// Redis and this server keeps no state of its own but a cache of
// campaigns, which never change once created. Dedup and count of an
// impression are one Redis script call, so servers sharing a Redis agree.

// remoteCampaigns caches the campaigns read from Redis. It is safe for
// concurrent use.
type remoteCampaigns struct {
	mu sync.RWMutex
	m  map[string]*campaign
}

func (r *remoteCampaigns) get(id []byte) *campaign {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[string(id)]
}

func (r *remoteCampaigns) put(c *campaign) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*campaign)
	}
	r.m[c.id] = c
}

// errRedisUnavailable answers a request that Redis could not serve within
// the timeout. A retry is safe: an impression counted by the failed call is
// a duplicate for the retry. It names no cause: the cause (an address, a
// dial error) is for the operator, and goes to the log (Server.errRedis).
var errRedisUnavailable = newError(fasthttp.StatusServiceUnavailable,
	"shared store unavailable, retry later (a retried impression is never counted twice)")

// errRedis logs err and returns the generic answer to the client. During an
// outage every request fails alike, so the log gets at most one line a
// second (redisLogEvery), with the number of failures it stands for.
func (s *Server) errRedis(err error) *apiError {
	if n, ok := s.redisLog.allow(s.now()); ok {
		s.log.Error("shared store (Redis) request failed; clients get 503", "err", err, "failures", n)
	}
	return errRedisUnavailable
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

// remoteCampaign returns the campaign with the given id from the cache or
// Redis, nil if there is none.
func (s *Server) remoteCampaign(id []byte) (*campaign, *apiError) {
	if c := s.remoteCache.get(id); c != nil {
		return c, nil
	}
	rc, ok, err := s.remote.GetCampaign(string(id))
	if err != nil {
		return nil, s.errRedis(err)
	}
	if !ok {
		return nil, nil
	}
	c := &campaign{id: rc.ID, name: rc.Name, start: rc.Start}
	s.remoteCache.put(c)
	return c, nil
}

func (s *Server) createRemote(c *campaign) error {
	err := s.remote.CreateCampaign(redisstore.Campaign{ID: c.id, Name: c.name, Start: c.start}, int(s.campaigns.max))
	switch {
	case errors.Is(err, redisstore.ErrExists):
		return errCampaignExists
	case errors.Is(err, redisstore.ErrLimit):
		return errCampaignLimit
	}
	return err
}

// listRemote returns every campaign in Redis, ordered by id; the slice is
// shared and must not be modified. Concurrent lists share one read
// (remoteLister), so a burst of them holds one or two copies of the
// campaigns, not one each. They stay redisstore.Campaign values: a
// *campaign carries a day of per-minute counters (12 KiB), which a list
// of 100,000 would allocate a gigabyte of.
func (s *Server) listRemote() ([]redisstore.Campaign, *apiError) {
	return s.remoteLists.list(func() ([]redisstore.Campaign, *apiError) {
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
	err     *apiError
}

func newRemoteLister() *remoteLister { return &remoteLister{turn: make(chan struct{}, 1)} }

func (r *remoteLister) list(read func() ([]redisstore.Campaign, *apiError)) ([]redisstore.Campaign, *apiError) {
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

// remoteMinutes reads the n minutes ending with now and the total.
func (s *Server) remoteMinutes(c *campaign, now int64, n int) ([]uint64, uint64, *apiError) {
	mins, total, err := s.remote.Minutes(c.id, now, n)
	if err != nil {
		return nil, 0, s.errRedis(err)
	}
	return mins, total, nil
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

// trackRemote judges a single impression and has Redis dedup and count it.
func (s *Server) trackRemote(r *trackRequest) (dup bool, e *apiError) {
	now := s.now()
	var last *campaign
	c, at, e := s.judge(r, now, &last)
	if e != nil {
		return false, e
	}
	item := [1]redisstore.Item{{Campaign: c.id, User: r.userID, Minute: stats.Minute(at)}}
	var counted [1]bool
	if err := s.remote.Track(item[:], counted[:]); err != nil {
		return false, s.errRedis(err)
	}
	return !counted[0], nil
}

// batchRemote judges every item of a batch, then has Redis dedup and count
// the valid ones in one round trip per campaign (pipelined). results[i] is
// nil for a counted item, errDuplicate for a repeat, or the item's error.
func (s *Server) batchRemote(items []trackRequest, now time.Time, results []*apiError) *apiError {
	var last *campaign
	valid := make([]redisstore.Item, 0, len(items))
	at := make([]int, 0, len(items))
	for i := range items {
		c, t, e := s.judge(&items[i], now, &last)
		if e != nil {
			if e.code == fasthttp.StatusServiceUnavailable {
				return e
			}
			results[i] = e
			continue
		}
		valid = append(valid, redisstore.Item{Campaign: c.id, User: items[i].userID, Minute: stats.Minute(t)})
		at = append(at, i)
	}
	counted := make([]bool, len(valid))
	if err := s.remote.Track(valid, counted); err != nil {
		return s.errRedis(err)
	}
	for j, i := range at {
		if !counted[j] {
			results[i] = errDuplicate
		}
	}
	return nil
}

// errDuplicate marks a repeat in batchRemote's results; it is never sent.
var errDuplicate = newError(fasthttp.StatusOK, "duplicate")
