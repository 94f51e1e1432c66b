package tracker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
)

// local is the in-process state: a campaign table, a dedup window and a
// counter per campaign, made durable by a write-ahead log and snapshots
// when persist is set (persist.go).
type local struct {
	dedup     sketch.Deduper
	keyed     keyedDeduper   // dedup, when it takes pre-hashed keys (bloom)
	limited   limitedDeduper // dedup, when it bounds the pairs it holds (exact)
	hasher    sketch.Hasher  // dedup's, which keys the pairs given to keyed
	freq      sketch.Frequency
	campaigns *campaignTable
	maxAds    int        // Options.MaxAdsPerCampaign
	persist   *persister // nil without a data directory
	now       func() time.Time
	log       *slog.Logger

	stopCh chan struct{}
	wg     sync.WaitGroup
}

// keyedDeduper is a window that takes pre-hashed pairs: Bloom. Its log
// records carry the 16-byte key instead of the user id.
type keyedDeduper interface {
	TestAndAddKey(key sketch.Key, now time.Time) bool
	AddKey(key sketch.Key, at time.Time)
}

// limitedDeduper is a window that bounds the pairs it holds: Exact, whose
// refusals (sketch.ErrFull) are ErrDedupLimit.
type limitedDeduper interface {
	TestAndAddLimited(campaign, user []byte, now time.Time) (seen bool, err error)
	RetryAfter(now time.Time) time.Duration
}

// localCampaign is a Campaign with its counter and deletion flag in the
// same allocation. Every version of a campaign (Update) points to the
// first one's.
type localCampaign struct {
	Campaign
	counter lazyCounter
	dups    lazyCounter
	hist    stats.History
	reach   lazyReach
	ads     adTable
	gone    atomic.Bool
}

// lazyCounter is a stats.Counter allocated by its first Add: a campaign
// without impressions, or without duplicates, costs a pointer for them,
// not 11 KiB. It is safe for concurrent use.
type lazyCounter struct{ p atomic.Pointer[stats.Counter] }

func (l *lazyCounter) counter() *stats.Counter {
	if c := l.p.Load(); c != nil {
		return c
	}
	l.p.CompareAndSwap(nil, new(stats.Counter))
	return l.p.Load()
}

// Add counts as stats.Counter.Add does, allocating the counter first.
func (l *lazyCounter) Add(m, now int64) { l.counter().Add(m, now) }

// Read reads the windows, all zero before the first Add.
func (l *lazyCounter) Read(now int64) stats.Window {
	if c := l.p.Load(); c != nil {
		return c.Read(now)
	}
	return stats.Window{}
}

// At returns the count of minute m, 0 before the first Add.
func (l *lazyCounter) At(m int64) uint64 {
	if c := l.p.Load(); c != nil {
		return c.At(m)
	}
	return 0
}

// emptyCounter is what a lazyCounter without adds encodes as.
var emptyCounter stats.Counter

// encoded returns the counter to encode: the empty one before any Add.
func (l *lazyCounter) encoded() *stats.Counter {
	if c := l.p.Load(); c != nil {
		return c
	}
	return &emptyCounter
}

// newLocalCampaign returns c with a counter of its own, keyed in dedup by
// keyTail (see Campaign.key; empty: by its id alone).
func newLocalCampaign(c Campaign, keyTail string) *Campaign {
	lc := &localCampaign{Campaign: c}
	lc.Campaign.counter = &lc.counter
	lc.Campaign.dups = &lc.dups
	lc.Campaign.hist = &lc.hist
	lc.Campaign.reach = &lc.reach
	lc.Campaign.ads = &lc.ads
	lc.Campaign.gone = &lc.gone
	lc.Campaign.keyTail = keyTail
	if keyTail == "" {
		lc.Campaign.key = []byte(c.ID)
	} else {
		lc.Campaign.key = append(append([]byte(c.ID), 0), keyTail...)
	}
	return &lc.Campaign
}

// newKeyTail draws the dedup key tail of a new campaign: 64 random bits
// in hex. A test makes campaigns as an earlier version did with one that
// returns "".
var newKeyTail = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func openLocal(o *Options, now func() time.Time, st *RestoreStats) (*local, error) {
	l := &local{
		dedup:     o.Dedup,
		hasher:    o.Dedup.Hasher(), // a data directory's replaces it (adoptSecret)
		campaigns: newCampaignTable(),
		freq:      o.Frequency,
		maxAds:    o.MaxAdsPerCampaign,
		now:       now,
		log:       o.Logger,
		stopCh:    make(chan struct{}),
	}
	if l.freq == nil {
		l.freq = sketch.NewFrequencyExact()
	}
	l.keyed, _ = o.Dedup.(keyedDeduper)
	l.limited, _ = o.Dedup.(limitedDeduper)
	if o.DataDir != "" {
		if err := l.openStore(o, st); err != nil {
			return nil, err
		}
	}
	// Idle shards rotate (and, in exact mode, free memory) without traffic.
	l.every(time.Second, func() {
		now := l.now()
		l.dedup.Advance(now)
		l.freq.Advance(now)
	})
	if p := l.persist; p != nil {
		l.every(p.every, func() {
			if _, err := l.snapshotIfChanged(); err != nil {
				l.log.Error("snapshot failed; the log is kept until one succeeds", "err", err)
			}
		})
	}
	return l, nil
}

// every runs f each interval, in a goroutine of its own, until stopCh
// closes; close waits for it.
func (l *local) every(interval time.Duration, f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.stopCh:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

func (l *local) campaign(id []byte) (*Campaign, error) { return l.campaigns.get(id), nil }

func (l *local) count() int { return int(l.campaigns.count.Load()) }

func (l *local) page(prefix, after string, limit int) ([]Campaign, bool, error) {
	p, more := pageOf(l.campaigns.ordered(), func(c *Campaign) string { return c.ID }, prefix, after, limit)
	out := make([]Campaign, len(p))
	for i, c := range p {
		out[i] = *c
	}
	return out, more, nil
}

// create registers c and, on a durable state, has it fsync'd to the log
// before it is visible or acknowledged.
func (l *local) create(spec *Campaign, max int) error {
	c := newLocalCampaign(*spec, newKeyTail())
	p := l.persist
	if p == nil {
		return l.campaigns.add(c, max, nil)
	}
	if err := p.log.Err(); err != nil {
		return errStorage(err)
	}
	reserved := store.DefineSize(len(c.ID), len(c.Name), len(c.keyTail))
	if err := p.log.Reserve(reserved); err != nil {
		return errStorage(err)
	}
	p.gate.RLock()
	defer p.gate.RUnlock()
	appended := false
	err := l.campaigns.add(c, max, func(c *Campaign) error {
		b := p.batch()
		defer p.batches.Put(b)
		addDefine(b, c)
		appended = true
		// A failed append is retracted by the log: the campaign is
		// neither visible nor written, now or later.
		return p.log.AppendReserved(b, reserved)
	})
	if !appended {
		p.log.Release(reserved)
	}
	if err != nil && err != errCampaignExists && err != errCampaignLimit {
		return errStorage(err)
	}
	return err
}

// addDefine adds c's definition record to b.
func addDefine(b *store.Batch, c *Campaign) {
	var caps []store.Cap
	if len(c.Caps) > 0 {
		caps = make([]store.Cap, len(c.Caps))
		for i, cp := range c.Caps {
			caps[i] = store.Cap{Max: cp.Max, Window: cp.Window}
		}
	}
	b.AddDefine(c.index, c.ID, c.Name, c.Start, c.End, !c.End.IsZero(), c.keyTail, caps)
}

// update replaces a campaign by a new version sharing its counter; on a
// durable state the new definition is fsync'd to the log first.
func (l *local) update(id []byte, change func(*Campaign) (*Campaign, error)) (*Campaign, error) {
	p := l.persist
	if p == nil {
		return l.campaigns.replace(id, change, nil)
	}
	if err := p.log.Err(); err != nil {
		return nil, errStorage(err)
	}
	// The name may grow: reserve for the longest one.
	reserved := store.DefineSize(len(id), 4*MaxNameRunes, 16)
	if err := p.log.Reserve(reserved); err != nil {
		return nil, errStorage(err)
	}
	p.gate.RLock()
	defer p.gate.RUnlock()
	appended := false
	c, err := l.campaigns.replace(id, change, func(c *Campaign) error {
		b := p.batch()
		defer p.batches.Put(b)
		addDefine(b, c)
		appended = true
		return p.log.AppendReserved(b, reserved)
	})
	if !appended {
		p.log.Release(reserved)
	}
	if _, ok := err.(*Error); err != nil && !ok {
		return nil, errStorage(err)
	}
	return c, err
}

// remove deletes a campaign. On a durable state it holds the gate
// exclusively, so that no impression is between its state change and its
// log record: every impression record of the campaign precedes the
// deletion's, and every impression applied after it finds the campaign
// gone.
func (l *local) remove(id []byte) (bool, error) {
	p := l.persist
	if p == nil {
		c, _ := l.campaigns.remove(id, func(c *Campaign) error { c.gone.Store(true); return nil })
		return c != nil, nil
	}
	if err := p.log.Err(); err != nil {
		return false, errStorage(err)
	}
	if err := p.log.Reserve(store.DeleteSize); err != nil {
		return false, errStorage(err)
	}
	p.gate.Lock()
	defer p.gate.Unlock()
	appended := false
	c, err := l.campaigns.remove(id, func(c *Campaign) error {
		b := p.batch()
		defer p.batches.Put(b)
		b.AddDelete(c.index)
		appended = true
		if err := p.log.AppendReserved(b, store.DeleteSize); err != nil {
			return err
		}
		c.gone.Store(true)
		return nil
	})
	if !appended {
		p.log.Release(store.DeleteSize)
	}
	if err != nil {
		return false, errStorage(err)
	}
	return c != nil, nil
}

func (l *local) trackOne(c *Campaign, ad, user []byte, at, now time.Time) (bool, error) {
	p := l.persist
	if p == nil {
		return l.apply(c, ad, user, at, now, nil)
	}
	if err := p.log.Err(); err != nil {
		return false, errStorage(err)
	}
	// The record's place on disk is promised before anything changes, so
	// a full disk refuses the impression rather than lose it.
	reserved := store.ImpressionSize(len(user), len(ad))
	if err := p.log.Reserve(reserved); err != nil {
		return false, errStorage(err)
	}
	b := p.batch()
	defer p.batches.Put(b)
	p.gate.RLock()
	dup, err := l.apply(c, ad, user, at, now, b)
	aerr := p.log.AppendReserved(b, reserved)
	p.gate.RUnlock()
	if aerr != nil {
		return false, errNotDurable(aerr)
	}
	return dup, err
}

func (l *local) track(items []judged, now time.Time, out []Outcome) error {
	p := l.persist
	if p == nil {
		for _, it := range items {
			out[it.index].Dup, out[it.index].Err = l.apply(it.c, it.ad, it.user, it.at, now, nil)
		}
		return nil
	}
	if err := p.log.Err(); err != nil {
		return errStorage(err)
	}
	var reserved int
	for _, it := range items {
		reserved += store.ImpressionSize(len(it.user), len(it.ad))
	}
	if err := p.log.Reserve(reserved); err != nil {
		return errStorage(err)
	}
	rec := p.batch()
	defer p.batches.Put(rec)
	p.gate.RLock()
	for _, it := range items {
		out[it.index].Dup, out[it.index].Err = l.apply(it.c, it.ad, it.user, it.at, now, rec)
	}
	err := p.log.AppendReserved(rec, reserved)
	p.gate.RUnlock()
	if err != nil {
		return errNotDurable(err)
	}
	return nil
}

// apply dedups and counts one judged impression of c arriving at now. A
// counted impression's log record is added to rec, unless rec is nil.
func (l *local) apply(c *Campaign, ad, user []byte, at, now time.Time, rec *store.Batch) (dup bool, err error) {
	if c.gone.Load() {
		return false, ErrCampaignNotFound // deleted since it was judged
	}
	campaign := c.key
	// The pair's keyed hash: the Bloom window's key, and in every mode
	// the user's hash for reach (its Lo word), keyed per campaign so that
	// crafted ids cannot collide on purpose.
	key := l.hasher.Key(campaign, user)
	switch {
	case l.keyed != nil:
		dup = l.keyed.TestAndAddKey(key, now)
	case l.limited != nil:
		// A pair refused at the bound was not recorded: it is neither
		// counted nor logged, and a retry is judged afresh.
		if dup, err = l.limited.TestAndAddLimited(campaign, user, now); err != nil {
			return false, ErrDedupLimit
		}
	default:
		dup = l.dedup.TestAndAdd(campaign, user, now)
	}
	m, nowMin := stats.Minute(at), stats.Minute(now)
	c.reach.reach().Add(key.Lo, at, now)
	l.freq.Add(key.Lo, now) // an exposure, counted or not
	if dup {
		c.dups.Add(m, nowMin)
		if rec != nil {
			rec.AddDuplicate(c.index, now, m, key.Lo)
		}
		return true, nil
	}
	c.counter.Add(m, nowMin) // before the ad's: see adTable.add
	c.hist.Add(m, nowMin)
	if len(ad) > 0 {
		c.ads.add(ad, m, nowMin, l.maxAds)
	}
	if rec != nil {
		var u []byte
		if l.keyed == nil {
			u = user // exact mode replays the pair's bytes
		}
		rec.AddImpression(c.index, now, m, key.Lo, key.Hi, u, ad)
	}
	return false, nil
}

// freqChunk is the candidates local.frequency keys and prefetches at once:
// enough to keep the processor's outstanding loads busy, few enough that
// their blocks (4 lines each in bloom mode, 8 KiB) stay in the L1 cache
// until counted. BenchmarkFrequencyHandler/bloom: 67–80 µs a check of 100
// candidates against 89–110 µs without the prefetch.
const freqChunk = 32

func (l *local) frequency(items []frequencyItem, user []byte, now time.Time, out []FrequencyResult) error {
	// Outside the loops: the Frequency methods are interface calls, so
	// these escape, once a check instead of once a candidate.
	var ws [MaxCaps]time.Duration
	var n [MaxCaps]uint64
	var keys [freqChunk]uint64
	for len(items) > 0 {
		chunk := items[:min(len(items), freqChunk)]
		items = items[len(chunk):]
		// Key the chunk, start loading its counters, then count: the
		// loads of 32 candidates overlap instead of queueing.
		for i, it := range chunk {
			keys[i] = 0
			if len(out[it.index].Exposures) > 0 { // uncapped: nothing to count
				keys[i] = l.hasher.Key(it.c.key, user).Lo // as apply keys the exposures
			}
		}
		l.freq.Prefetch(keys[:len(chunk)], now)
		for i, it := range chunk {
			r := &out[it.index]
			if it.c.gone.Load() {
				*r = FrequencyResult{CampaignID: r.CampaignID, Err: ErrCampaignNotFound}
				continue
			}
			if len(r.Exposures) == 0 {
				continue
			}
			for j, e := range r.Exposures {
				ws[j] = e.Window
			}
			l.freq.CountWindows(keys[i], ws[:len(r.Exposures)], now, n[:len(r.Exposures)])
			for j := range r.Exposures {
				r.Exposures[j].Count = n[j]
			}
		}
	}
	return nil
}

func (l *local) window(c *Campaign, now int64) (Stats, error) {
	reach := c.reach.Read(time.Unix(now*60, 0))
	return Stats{
		Window:     c.counter.Read(now),
		Duplicates: c.dups.Read(now),
		Reach:      &reach,
	}, nil
}

func (l *local) ads(c *Campaign, now int64) (AdStats, error) {
	return c.ads.read(now, func() stats.Window { return c.counter.Read(now) }), nil
}

func (l *local) series(c *Campaign, now int64, dst []uint64) error {
	first := now - int64(len(dst)) + 1
	for i := range dst {
		dst[i] = c.counter.At(first + int64(i))
	}
	return nil
}

func (l *local) history(c *Campaign, step time.Duration, first int64, dst []uint64) error {
	for i := range dst {
		n := first + int64(i)
		switch step {
		case time.Minute:
			dst[i] = c.counter.At(n)
		case time.Hour:
			dst[i] = c.hist.Hour(n)
		default:
			dst[i] = c.hist.Day(n)
		}
	}
	return nil
}

func (l *local) retryAfter(now time.Time) time.Duration {
	if l.limited == nil {
		return 0
	}
	return l.limited.RetryAfter(now)
}

func (l *local) ready() error { return nil }

func (l *local) snapshot() error {
	p := l.persist
	if p == nil {
		return errors.New("tracker: Snapshot needs Options.DataDir")
	}
	p.snapMu.Lock()
	defer p.snapMu.Unlock()
	return l.snapshotLocked(p)
}

func (l *local) close(final bool) error {
	close(l.stopCh)
	l.wg.Wait()
	if l.persist != nil {
		return l.closeStore(final)
	}
	return nil
}

func (l *local) writeMetrics(w io.Writer, help func(name, typ, text string)) {
	help("impressiond_campaigns", "gauge", "Campaigns registered.")
	fmt.Fprintf(w, "impressiond_campaigns %d\n", l.count())
	help("impressiond_dedup_bytes", "gauge", "Memory held by the dedup window (exact for bloom, an estimate for exact).")
	fmt.Fprintf(w, "impressiond_dedup_bytes %d\n", l.dedup.Bytes())
	help("impressiond_dedup_generations", "gauge", "Generations kept per dedup shard: slices + 1 in exact mode, the sub-filter pool's slots in bloom mode.")
	fmt.Fprintf(w, "impressiond_dedup_generations %d\n", l.dedup.Generations())
	help("impressiond_dedup_rotations_total", "counter", "Dedup shard generations recycled (bloom: sub-filters freed a TTL after their last pair).")
	fmt.Fprintf(w, "impressiond_dedup_rotations_total %d\n", l.dedup.Rotations())
	if x, ok := l.dedup.(*sketch.Exact); ok {
		help("impressiond_dedup_pairs", "gauge", "Distinct pairs held by the exact dedup window's live generations.")
		fmt.Fprintf(w, "impressiond_dedup_pairs %d\n", x.Len())
		help("impressiond_dedup_max_pairs", "gauge", "The most pairs the exact dedup window holds (-dedup-max-pairs); new pairs beyond it get 503. 0 if unbounded.")
		fmt.Fprintf(w, "impressiond_dedup_max_pairs %d\n", x.MaxPairs())
	}
	if b, ok := l.dedup.(*sketch.Bloom); ok {
		st := b.Stats()
		help("impressiond_dedup_pool_live", "gauge", "Bloom sub-filters holding pairs, over all shards.")
		fmt.Fprintf(w, "impressiond_dedup_pool_live %d\n", st.Live)
		help("impressiond_dedup_pool_slots", "gauge", "Bloom sub-filters there is memory for, over all shards.")
		fmt.Fprintf(w, "impressiond_dedup_pool_slots %d\n", st.Slots)
		help("impressiond_dedup_open_load", "gauge", "Mean load of the open bloom sub-filters against their design load (1 = full).")
		fmt.Fprintf(w, "impressiond_dedup_open_load %g\n", st.OpenLoad)
		help("impressiond_dedup_open_load_max", "gauge", "Highest load of any shard's open bloom sub-filter against its design load.")
		fmt.Fprintf(w, "impressiond_dedup_open_load_max %g\n", st.MaxOpenLoad)
		help("impressiond_dedup_fp_estimate", "gauge", "Estimated rate at which a fresh pair is taken for a repeat now: the live sub-filters' rates at their loads, summed per shard, averaged over shards.")
		fmt.Fprintf(w, "impressiond_dedup_fp_estimate %g\n", st.FalsePositive)
		help("impressiond_dedup_fp_target", "gauge", "The -dedup-fp target the estimate stays under while traffic keeps within -dedup-capacity.")
		fmt.Fprintf(w, "impressiond_dedup_fp_target %g\n", b.TargetFalsePositiveRate())
		help("impressiond_dedup_pool_full_total", "counter", "Bloom sub-filter closes refused for want of a free slot: traffic beyond -dedup-capacity.")
		fmt.Fprintf(w, "impressiond_dedup_pool_full_total %d\n", st.PoolFull)
		help("impressiond_dedup_overfill_total", "counter", "Pairs added to a bloom sub-filter past its design load: each raises the false-positive rate.")
		fmt.Fprintf(w, "impressiond_dedup_overfill_total %d\n", st.Overfills)
	}
	help("impressiond_frequency_bytes", "gauge", "Memory held by the exposures frequency caps are checked against (fixed for the bloom-mode sketch, an estimate for exact).")
	fmt.Fprintf(w, "impressiond_frequency_bytes %d\n", l.freq.Bytes())
	l.writeStoreMetrics(w, help)
}
