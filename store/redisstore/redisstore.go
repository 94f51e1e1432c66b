// Package redisstore keeps impressiond's state in Redis (or Redis Cluster),
// so that any number of stateless impressiond instances behind a load
// balancer agree on campaigns, dedup decisions and counts.
//
// It owns the keys, the Lua scripts and the connection; it imports
// sketch for pair keys and filter sizing only, and must not import tracker
// or api (tracker.shared adapts it to the domain core).
//
// # Keys
//
// Every key of a campaign carries the campaign id as its hash tag, so one
// script can dedup and count an impression atomically even on Redis
// Cluster:
//
//	imp:{id}:total           impressions counted, ever
//	imp:{id}:m:<minute>      impressions of one event minute; expire at least
//	                         26 h after they are created (the day window
//	                         reads a minute for 24 h)
//	imp:{id}:xs:<slice>      exact mode: one generation, the set of user ids
//	                         counted in that slice (Redis's Unix µs divided
//	                         by the slice's µs); expires when the slice
//	                         leaves the window
//	imp:{id}:bp:<i>          bloom mode: sub-filter i of the campaign's
//	                         pool, i in 0..P−1 (see pool.go); expires
//	                         when its last pair is a TTL old
//	imp:{id}:bpm             bloom mode: hash of the pool's metadata (each
//	                         sub-filter's first and last arrival and
//	                         pairs, the open one, pairs added to a full
//	                         pool); expires TTL+TTL/K after the last write
//	imp:{id}:def             the campaign's definition version "<gen> <ver>"
//	                         (see lifecycle.go); checked by every track
//	                         script; counting keys of generation gen > 0
//	                         are named imp:{id}:g<gen>:total and so on
//	imp:{id}:fq:<pair>       the exposures of one (campaign, user) pair, for
//	                         frequency caps (see frequency.go); expires
//	                         175 h after its last exposure
//	imp:campaigns            hash: campaign id → "v3 <start> <end> <gen>
//	                         <ver> <caps> <name>", or "v2 <start> <end>
//	                         <gen> <ver> <name>" for a campaign without
//	                         caps (earlier: "<start> <name>"); one key, so
//	                         that creation checks the limit and the id
//	                         atomically, on a cluster too
//	imp:hashkey              the secret bloom-mode pair keys are hashed
//	                         with (sketch.Hasher): 16 random bytes as 32 hex
//	                         digits, set with NX by the first instance to
//	                         connect and read by every one before its first
//	                         call; no expiry
//
// Keys imp:{id}:bf:<slice> of earlier versions (one bloom generation per
// slice) are no longer read or written; they expire by themselves within
// TTL+TTL/K.
//
// # Guarantees
//
// Dedup and count of one impression are one script call, so two instances
// racing on one pair count it once. Both modes keep the window of the
// in-process ones (package sketch): a repeat is never counted within the
// TTL, always after TTL+TTL/K. That window runs on Redis's clock, read
// inside the script, never on an instance's: instances whose clocks
// disagree by hours still agree on every pair, and every key expires
// relative to Redis's clock, so none is created already expired (see
// clock.go).
//
// Exact mode keeps K+1 generations, one Redis set of user ids per campaign
// and slice, so it never takes a new pair for a repeat; a batch asks each
// generation about all its items with one SMISMEMBER, which is what lets
// a batch beat one SET NX per pair.
//
// Bloom mode keeps, per campaign, a pool of at most P unblocked bitmaps
// (sketch.UnblockedPool), each taking at most Load pairs within one slice
// of time: while no TTL-long interval holds more than Capacity distinct
// pairs of a campaign, however they are spread (evenly, all in one
// minute, in bursts), a new pair is taken for a repeat with probability
// at most FalsePositiveRate, and the campaign's memory is at most P
// bitmaps (MaxBytesPerCampaign). Past that, the pool stops growing and
// its false-positive rate rises instead (PoolFull counts those pairs);
// no pair is ever counted twice.
//
// A request that fails (timeout, Redis down) may or may not have been
// applied; a retry never counts twice, because the pair was recorded by
// the same script that counted it.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/impressiond/impressiond/sketch"
)

const (
	campaignsKey = "imp:campaigns"
	// minuteTTL keeps a minute counter past the 24 h window it serves.
	minuteTTL = 26 * time.Hour
	// maxItemsPerCall bounds one script call, so that a 10,000-item batch
	// does not hold Redis for long.
	maxItemsPerCall = 1000
	// maxBatchesInFlight bounds concurrent batch calls: enough to keep
	// Redis busy while replies travel (8 concurrent 1000-item batches
	// reach its peak on a 2-core machine), few enough that a burst queues
	// in impressiond instead of behind Redis's single thread.
	maxBatchesInFlight = 8
	// largeBatch is the size from which a batch takes one of those slots.
	largeBatch = 100
)

// Options configure a Store.
type Options struct {
	// URL is redis://[user:pass@]host:port/db, rediss://... for TLS, or a
	// comma-separated list of seeds (URLs or host:port) of a Redis Cluster.
	URL string
	// Timeout bounds every call. By default 200ms.
	Timeout time.Duration
	// Mode is "bloom" or "exact", as sketch.New.
	Mode string
	// Dedup sizes the window; in bloom mode Capacity is per campaign.
	Dedup sketch.Options
	// Now is this instance's clock, by default time.Now. The dedup window
	// never trusts it: it only seeds the guess of the shared clock's slice
	// (see Track), so a wrong or stepped instance clock costs a round trip,
	// not a wrong count.
	Now func() time.Time
	// Clock, if set, replaces Redis's TIME as the shared clock of the dedup
	// window: every instance on one Redis must then be given the same
	// clock. For tests that move time by hand; by default Redis's own
	// clock is the one every instance shares.
	Clock func() time.Time
	// ClockOffset is added to the shared clock (Redis's TIME, or Clock). By
	// default 0. It relabels time without changing how long anything
	// lives, since key expiries are relative, so tests can run the store
	// at any date; instances on one Redis must use the same offset.
	ClockOffset time.Duration
}

// Errors callers tell apart.
var (
	ErrExists = errors.New("redisstore: campaign already exists")
	ErrLimit  = errors.New("redisstore: campaign limit reached")
)

// Store is the Redis client of one impressiond instance. It is safe for
// concurrent use.
type Store struct {
	opt     rueidis.ClientOption
	client  atomic.Pointer[rueidis.Client] // nil until the first dial succeeds
	timeout time.Duration
	exact   bool
	slices  int
	// sliceUS is one slice of the window in µs (sliceMicros); the
	// *Arg fields are the script arguments that never change.
	sliceUS                        int64
	sliceArg, slicesArg, offsetArg string
	now, clock                     func() time.Time
	offset                         int64        // ClockOffset in µs
	skew                           atomic.Int64 // Redis's clock minus now's, µs, as last measured
	epochRetries                   atomic.Uint64
	// pool sizes a campaign's bloom sub-filters (zero in exact mode);
	// slotKeys are their key suffixes, poolArgv the bloom scripts'
	// arguments that never change (see poolArgs).
	pool     sketch.Pool
	slotKeys []string
	poolArgv [6]string
	poolFull atomic.Uint64
	// maxAds is the per-ad limit the scripts get (SetMaxAds).
	maxAds string
	// hasher keys bloom-mode pairs with the secret in imp:hashkey; nil
	// until it is loaded, and calls fail with ErrNotConnected until then.
	hasher         atomic.Pointer[sketch.Hasher]
	hashKeyChanges atomic.Uint64

	// batchSlots bounds the batches in flight to Redis (see Track).
	batchSlots chan struct{}

	healthy atomic.Bool
	stopCh  chan struct{}
	wg      sync.WaitGroup
}

// ErrNotConnected is returned by calls made before the first connection to
// Redis succeeded.
var ErrNotConnected = errors.New("redisstore: not connected to Redis yet")

// Open starts a Store and a health checker that reads Redis's clock every
// quarter second (Healthy, and the offset of this instance's clock to it). If Redis cannot be reached yet, Open still succeeds:
// the checker keeps dialling, and calls fail with ErrNotConnected until a
// connection is made, so a server started before its Redis serves 503s,
// then recovers by itself. Only a malformed URL or bad options fail Open.
func Open(o Options) (*Store, error) {
	if o.Timeout <= 0 {
		o.Timeout = 200 * time.Millisecond
	}
	opt, err := clientOptions(o.URL)
	if err != nil {
		return nil, err
	}
	opt.Dialer.Timeout = o.Timeout
	opt.ConnWriteTimeout = o.Timeout
	opt.DisableCache = true // no client-side caching: counters change all the time
	d := o.Dedup
	if d.TTL == 0 {
		d.TTL = time.Hour
	}
	if d.Slices == 0 {
		d.Slices = 6
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Store{
		opt:     opt,
		timeout: o.Timeout,
		exact:   o.Mode == "exact",
		slices:  d.Slices,
		sliceUS: sliceMicros(d.TTL, d.Slices),
		now:     o.Now,
		maxAds:  "1000",
		clock:   o.Clock,
		offset:  o.ClockOffset.Microseconds(),
		stopCh:  make(chan struct{}),

		batchSlots: make(chan struct{}, maxBatchesInFlight),
	}
	s.sliceArg = strconv.FormatInt(s.sliceUS, 10)
	s.slicesArg = strconv.Itoa(s.slices)
	s.offsetArg = strconv.FormatInt(s.offset, 10)
	if !s.exact {
		if err := s.initPool(d, (int64(d.TTL)+999)/1000); err != nil {
			return nil, err
		}
	}
	s.check()
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

// conn returns the client, or ErrNotConnected before the first successful
// dial and the first read of the shared secret (imp:hashkey).
func (s *Store) conn() (rueidis.Client, error) {
	if s.hasher.Load() == nil {
		return nil, ErrNotConnected // stored after the client
	}
	return *s.client.Load(), nil
}

// check dials Redis if no client exists yet, then reads its clock (which
// also tells whether it answers) and the shared secret, and records
// whether it answered.
func (s *Store) check() {
	if s.client.Load() == nil {
		c, err := rueidis.NewClient(s.opt)
		if err != nil {
			s.healthy.Store(false)
			return
		}
		s.client.Store(&c)
	}
	c := *s.client.Load()
	err := s.measureSkew(c)
	if err == nil {
		err = s.loadHashKey(c)
	}
	s.healthy.Store(err == nil)
}

// clientOptions parses one URL, or a comma-separated list of cluster seeds.
func clientOptions(url string) (rueidis.ClientOption, error) {
	seeds := strings.Split(url, ",")
	first := strings.TrimSpace(seeds[0])
	if !strings.Contains(first, "://") {
		first = "redis://" + first
	}
	opt, err := rueidis.ParseURL(first)
	if err != nil {
		return opt, fmt.Errorf("redisstore: bad -store URL %q: %w", Redact(url), err)
	}
	for _, s := range seeds[1:] {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "://") {
			o, err := rueidis.ParseURL(s)
			if err != nil {
				return opt, fmt.Errorf("redisstore: bad seed %q: %w", Redact(s), err)
			}
			opt.InitAddress = append(opt.InitAddress, o.InitAddress...)
		} else if s != "" {
			opt.InitAddress = append(opt.InitAddress, s)
		}
	}
	return opt, nil
}

// Redact hides a password in a -store URL (or list of seeds), for logs.
func Redact(url string) string {
	if at := strings.LastIndex(url, "@"); at >= 0 {
		if scheme := strings.Index(url, "://"); scheme >= 0 && scheme < at {
			return url[:scheme+3] + "***" + url[at:]
		}
	}
	return url
}

// Close stops the health checker and the client.
func (s *Store) Close() {
	close(s.stopCh)
	s.wg.Wait()
	if c := s.client.Load(); c != nil {
		(*c).Close()
	}
}

// Healthy reports whether the last health check, at most a quarter second
// ago, succeeded.
func (s *Store) Healthy() bool { return s.healthy.Load() }

// EpochRetries returns how many script calls were made again because this
// instance guessed the shared clock's slice wrong (see Track), in exact
// mode (bloom mode never guesses): a handful per slice boundary is
// normal, a steady rate means a clock that jumps.
func (s *Store) EpochRetries() uint64 { return s.epochRetries.Load() }

// ClockSkew returns Redis's clock minus this instance's, as last measured
// (a health check reads TIME every quarter second).
func (s *Store) ClockSkew() time.Duration { return time.Duration(s.skew.Load()) * time.Microsecond }

// Layout returns the pool of bloom sub-filters of one campaign (the zero
// Pool in exact mode).
func (s *Store) Layout() sketch.Pool { return s.pool }

// MaxBytesPerCampaign returns the most Redis memory the bloom sub-filters
// of one campaign take, their bitmaps' bytes: Slots × Bits/8, whatever the
// traffic (0 in exact mode).
func (s *Store) MaxBytesPerCampaign() uint64 {
	return uint64(s.pool.Slots) * uint64((s.pool.Bits+7)/8)
}

func (s *Store) watch() {
	defer s.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			return
		case <-t.C:
			s.check()
		}
	}
}

func (s *Store) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.timeout)
}

// fail marks Redis unhealthy at once, so /readyz turns 503 without waiting
// for the next ping, and wraps err.
func (s *Store) fail(op string, err error) error {
	if !rueidis.IsRedisNil(err) {
		var re *rueidis.RedisError
		if !errors.As(err, &re) { // a Redis error reply means Redis is up
			s.healthy.Store(false)
		}
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// tag is the prefix of the counting keys of ref, a campaign id or a Ref.
func tag(ref string) string {
	_, t, _ := parseRef(ref)
	return t
}

// Campaign is a registered campaign.
type Campaign struct {
	ID, Name string
	Start    time.Time
	End      time.Time // zero: none
	// Gen namespaces the campaign's counting keys; Ver counts the changes
	// of its definition (see Ref). Both are 0 for a campaign of an earlier
	// version.
	Gen, Ver int64
	// Caps are its frequency caps, in their order; none in a record of an
	// earlier version (see formatMeta).
	Caps []Cap
}

// Cap is a frequency cap: at most Max exposures of a user in any Window.
type Cap struct {
	Max    uint64
	Window time.Duration
}

// createScript adds a campaign unless its id exists (0) or max campaigns
// exist (-1).
var createScript = rueidis.NewLuaScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// GetCampaign returns the campaign with the given id, and false if there is
// none.
func (s *Store) GetCampaign(id string) (Campaign, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return Campaign{}, false, s.fail("get campaign", err)
	}
	v, err := c.Do(ctx, c.B().Hget().Key(campaignsKey).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return Campaign{}, false, nil
	}
	if err != nil {
		return Campaign{}, false, s.fail("get campaign", err)
	}
	camp, err := parseMeta(id, v)
	return camp, err == nil, err
}

// ListCampaigns returns every campaign, in no particular order.
func (s *Store) ListCampaigns() ([]Campaign, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return nil, s.fail("list campaigns", err)
	}
	all, err := c.Do(ctx, c.B().Hgetall().Key(campaignsKey).Build()).AsStrMap()
	if err != nil {
		return nil, s.fail("list campaigns", err)
	}
	out := make([]Campaign, 0, len(all))
	for id, v := range all {
		camp, err := parseMeta(id, v)
		if err != nil {
			return nil, err
		}
		out = append(out, camp)
	}
	return out, nil
}

// Stats are a campaign's counts and duplicates per minute, oldest first,
// and their totals.
type Stats struct {
	Counted, Duplicates    []uint64
	Total, DuplicatesTotal uint64
}

// Stats returns the counts and duplicates of the n minutes ending with
// minute now, and their totals, in one read.
func (s *Store) Stats(id string, now int64, n int) (Stats, error) {
	t := tag(id)
	keys := make([]string, 0, 2*n+2)
	for _, kind := range []string{"m:", "d:"} {
		for m := now - int64(n) + 1; m <= now; m++ {
			keys = append(keys, t+kind+strconv.FormatInt(m, 10))
		}
	}
	keys = append(keys, t+"total", t+"dtotal")
	counts, err := s.mget("read stats", keys)
	if err != nil {
		return Stats{}, err
	}
	return Stats{Counted: counts[:n], Duplicates: counts[n : 2*n], Total: counts[2*n], DuplicatesTotal: counts[2*n+1]}, nil
}

// mget reads counters; a missing key reads 0.
func (s *Store) mget(op string, keys []string) ([]uint64, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return nil, s.fail(op, err)
	}
	vals, err := c.Do(ctx, c.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return nil, s.fail(op, err)
	}
	counts := make([]uint64, len(vals))
	for i, v := range vals {
		if v.IsNil() {
			continue
		}
		c, err := v.AsUint64()
		if err != nil {
			return nil, s.fail(op, err)
		}
		counts[i] = c
	}
	return counts, nil
}

// Hours returns the counts of the n Unix hours from first; Days those of
// the n Unix days from first. Hours are kept 91 days, days for good.
func (s *Store) Hours(id string, first int64, n int) ([]uint64, error) {
	return s.series(id, "h:", first, n)
}

// Days: see Hours.
func (s *Store) Days(id string, first int64, n int) ([]uint64, error) {
	return s.series(id, "day:", first, n)
}

func (s *Store) series(id, kind string, first int64, n int) ([]uint64, error) {
	t := tag(id)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = t + kind + strconv.FormatInt(first+int64(i), 10)
	}
	if n == 0 {
		return nil, nil
	}
	return s.mget("read history", keys)
}

// Minutes returns the counts of the n minutes ending with minute now,
// oldest first, and the campaign's total.
func (s *Store) Minutes(id string, now int64, n int) ([]uint64, uint64, error) {
	keys := make([]string, 0, n+1)
	t := tag(id)
	for m := now - int64(n) + 1; m <= now; m++ {
		keys = append(keys, t+"m:"+strconv.FormatInt(m, 10))
	}
	keys = append(keys, t+"total")
	counts, err := s.mget("read stats", keys)
	if err != nil {
		return nil, 0, err
	}
	return counts[:n], counts[n], nil
}
