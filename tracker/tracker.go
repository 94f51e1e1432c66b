package tracker

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
	"github.com/impressiond/impressiond/store"
	"github.com/impressiond/impressiond/store/redisstore"
)

const (
	// MaxIDBytes bounds user_id and ad_id.
	MaxIDBytes = 256
	// MaxNameRunes bounds a campaign's name.
	MaxNameRunes = 200
)

// Campaign is one registered campaign, as it was when it was read: Update
// replaces a campaign by a new value, it never changes one in place.
type Campaign struct {
	ID    string
	Name  string
	Start time.Time
	// End, when not zero, is the last instant of the campaign: an
	// impression whose event time is after it is refused (ErrAfterEnd).
	End time.Time
	// Caps are the campaign's frequency caps, at most MaxCaps, in the
	// order they were given; nil for none. Never changed in place.
	Caps []FrequencyCap

	// The in-process state's own: the index log records name the
	// campaign by, its counter, whether it was deleted, and the bytes
	// that stand for the campaign in its dedup pairs. The shared state
	// leaves them zero.
	index   uint32
	counter *lazyCounter   // the counted impressions, by event minute
	dups    *lazyCounter   // the duplicates, by event minute
	hist    *stats.History // the counts by hour and by day
	reach   *lazyReach     // the distinct users, counted or not
	ads     *adTable       // the counted impressions by ad id
	gone    *atomic.Bool
	// key is the id for a campaign created by an earlier version; for
	// every other, the id, a 0 byte and keyTail (16 random hex digits,
	// logged and snapshotted with the campaign), so that a campaign
	// created again under a deleted one's id shares no dedup pair with
	// it. Ids and user ids hold no 0 byte, and pairs are length-prefixed
	// (sketch.Key), so no two campaigns' pairs can collide.
	key     []byte
	keyTail string

	// ref is the shared state's own: the redisstore.Ref of the
	// campaign's keys and the definition version it was read at, which
	// every track script checks, and end, the campaign's End: the shared
	// state hands the judge its campaigns with End zero and applies end
	// itself, checking first that it is still the campaign's (see
	// shared.go). Zero elsewhere.
	ref string
	end time.Time
}

// Impression is one impression to track, as a front end received it. The
// slices may point into a request; the Tracker does not keep them. A nil
// field is absent. Timestamp is RFC 3339 text (see ParseTime), read only
// when HasTimestamp is set.
type Impression struct {
	CampaignID   []byte
	UserID       []byte
	AdID         []byte
	Timestamp    []byte
	HasTimestamp bool
}

// Outcome is what became of one item of a batch: counted (Err nil, Dup
// false), a duplicate (Dup), or refused by Err, an *Error.
type Outcome struct {
	Dup bool
	Err error
}

// CampaignSpec is a request to create a campaign. A nil field is absent:
// without ID one is drawn ("cmp_" and 20 random hex digits), without
// Start the campaign starts at the current second, without End it has no
// end. Start and End are RFC 3339 text (see ParseTime).
type CampaignSpec struct {
	ID, Name, Start, End []byte
	// Caps are the campaign's frequency caps (see checkCaps' rules).
	Caps []CapSpec
}

// CampaignPatch is a request to change a campaign: a nil field is left as
// it is. ClearEnd removes the campaign's end (End must then be nil).
type CampaignPatch struct {
	Name, End []byte
	ClearEnd  bool
}

// Options configure a Tracker.
type Options struct {
	// Dedup decides which impressions are repeats, in this process.
	// Required unless Redis is set. With DataDir it must be a new window:
	// Open keys it with the data directory's secret (Deduper.SetSecret)
	// before restoring into it.
	Dedup sketch.Deduper

	// Frequency counts the exposures frequency caps are checked against,
	// in this process: sketch.NewFrequencySketch (fixed memory, may only
	// overestimate) or sketch.NewFrequencyExact. By default an exact one.
	// Unused with Redis.
	Frequency sketch.Frequency

	// Redis, when set, keeps campaigns, dedup and counters in a shared
	// Redis instead of this process: any number of trackers on one Redis
	// agree. Dedup and DataDir must then be unset.
	Redis *redisstore.Store

	// DataDir, when set, makes the in-process state durable: Open
	// restores the state kept there (newest snapshot, then the
	// write-ahead log after it), every counted impression and created
	// campaign is logged before it is acknowledged, snapshots are
	// written every SnapshotInterval and by Shutdown when due. The
	// directory keeps the secret the dedup window hashes pairs with, in
	// a secret file and in every snapshot, so that logged keys stay valid
	// across restarts and backups. Empty keeps everything in memory only.
	DataDir string
	// ResetDedup lets Open start with an empty dedup window when the one
	// in DataDir cannot be loaded: written by an earlier version (another
	// layout, or Bloom keys hashed without a secret) or with other -dedup
	// flags. Campaigns and counts are restored all the same; the price is
	// that repeats of pairs counted in the last TTL + TTL/K before the
	// restart are counted once more. By default such a directory is
	// refused, since that would be a silent double count.
	ResetDedup bool
	// FsyncInterval is how often the log is fsync'd. Zero makes every
	// write wait for the group commit that fsyncs it. The zero value means
	// zero: callers wanting the 1s default set it.
	FsyncInterval time.Duration
	// SnapshotInterval is how often a snapshot is considered. By default
	// 1m.
	SnapshotInterval time.Duration

	// MaxSkew is how far ahead of the clock an impression timestamp may
	// be. Zero rejects any timestamp ahead of the clock.
	MaxSkew time.Duration
	// MaxCampaigns caps the campaigns that can be created. By default
	// 100,000.
	MaxCampaigns int
	// MaxAdsPerCampaign caps the ad ids a campaign counts impressions of
	// one by one (Ads); impressions of later new ids count as other. By
	// default DefaultMaxAdsPerCampaign.
	MaxAdsPerCampaign int

	// Now is the clock. By default a coarse clock with millisecond
	// resolution, owned and stopped by the Tracker.
	Now func() time.Time
	// Logger receives what the operator should know: failing Redis
	// calls, failed snapshots, a file system that cannot reserve space.
	// By default slog.Default().
	Logger *slog.Logger

	// OpenLogFile, when set, creates the log's segment files (a test
	// injects disk errors with it).
	OpenLogFile func(path string) (store.File, error)
	// LogReserve, when positive, is the disk space the log reserves
	// ahead (store.Options.Reserve).
	LogReserve int64
}

// Tracker is the product: campaigns, the track decision (the rules that
// need state, dedup, count) and the stats. It takes and returns plain Go
// values, so any front end (the HTTP API, a consumer of a queue, a Go
// program embedding it) calls it alike. It is safe for concurrent use.
type Tracker struct {
	st           state
	now          func() time.Time
	clock        *coarseClock // nil when Options.Now was given
	maxSkew      time.Duration
	maxCampaigns int
	tooFarAhead  *Error
	restored     RestoreStats
	judgedPool   sync.Pool // *[]judged
	once         sync.Once
	closeErr     error
}

// Open returns a Tracker on the state the options name and starts its
// maintenance goroutines; Close or Shutdown stops them. With DataDir it
// first restores the state kept there; damaged data fails Open with an
// error naming the file and offset (a *store.CorruptError).
func Open(o Options) (*Tracker, error) {
	switch {
	case o.Redis != nil && (o.Dedup != nil || o.DataDir != ""):
		return nil, errors.New("tracker: Options.Redis excludes Dedup and DataDir: the state lives in Redis")
	case o.Redis == nil && o.Dedup == nil:
		return nil, errors.New("tracker: Options.Dedup is required")
	case o.MaxSkew < 0:
		return nil, errors.New("tracker: Options.MaxSkew must not be negative")
	}
	if o.MaxCampaigns <= 0 {
		o.MaxCampaigns = 100000
	}
	if o.MaxAdsPerCampaign <= 0 {
		o.MaxAdsPerCampaign = DefaultMaxAdsPerCampaign
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	t := &Tracker{
		now:          o.Now,
		maxSkew:      o.MaxSkew,
		maxCampaigns: o.MaxCampaigns,
		tooFarAhead:  tooFarAhead(o.MaxSkew),
	}
	if t.now == nil {
		t.clock = newCoarseClock()
		t.now = t.clock.Now
	}
	var err error
	if o.Redis != nil {
		o.Redis.SetMaxAds(o.MaxAdsPerCampaign)
		t.st = newShared(o.Redis, t.now, o.Logger)
	} else {
		t.st, err = openLocal(&o, t.now, &t.restored)
	}
	if err != nil {
		if t.clock != nil {
			t.clock.Stop()
		}
		return nil, err
	}
	return t, nil
}

// Now reads the tracker's clock.
func (t *Tracker) Now() time.Time { return t.now() }

// Restored describes what Open restored from Options.DataDir.
func (t *Tracker) Restored() RestoreStats { return t.restored }

// TooFarAhead is the error of a timestamp beyond Options.MaxSkew.
func (t *Tracker) TooFarAhead() *Error { return t.tooFarAhead }

// Track judges, dedups and counts one impression: dup reports a repeat
// within the dedup window, which is not counted. An error is an *Error;
// nothing was counted then, except that an Unavailable error whose
// message says so may have counted it (a retry answers duplicate). It
// allocates nothing.
func (t *Tracker) Track(imp *Impression) (dup bool, err error) {
	now := t.now()
	var last *Campaign
	c, at, err := t.judge(imp, now, &last)
	if err != nil {
		return false, err
	}
	return t.st.trackOne(c, imp.AdID, imp.UserID, at, now)
}

// TrackBatch tracks items in order, each judged on its own, all arriving
// at the same instant: out[i], for i < len(items), gets what became of
// items[i]. An error fails the whole batch (the state could not be
// reached, or could not make the batch durable) and sets no outcome.
func (t *Tracker) TrackBatch(items []Impression, out []Outcome) error {
	now := t.now()
	jp, _ := t.judgedPool.Get().(*[]judged)
	if jp == nil {
		jp = new([]judged)
	}
	defer t.judgedPool.Put(jp)
	js := (*jp)[:0]
	var last *Campaign
	for i := range items {
		c, at, err := t.judge(&items[i], now, &last)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Kind == Unavailable {
				return err // the campaign could not be read: no item can be judged
			}
			out[i] = Outcome{Err: err}
			continue
		}
		out[i] = Outcome{}
		js = append(js, judged{c: c, ad: items[i].AdID, user: items[i].UserID, at: at, index: i})
	}
	err := t.st.track(js, now, out)
	clear(js) // keep no request bytes alive in the pool
	*jp = js[:0]
	return err
}

// judge validates one impression arriving at now and finds its campaign:
// the rules that need no state first, then the campaign lookup
// (ErrCampaignNotFound), then the rules that need the campaign. It returns
// the campaign and the impression's event time. last caches the campaign
// of the previous item, since batches usually carry runs of one campaign.
func (t *Tracker) judge(r *Impression, now time.Time, last **Campaign) (c *Campaign, at time.Time, err error) {
	switch {
	case len(r.CampaignID) == 0:
		return nil, at, ErrCampaignIDRequired
	case len(r.UserID) == 0:
		return nil, at, ErrUserIDRequired
	case len(r.UserID) > MaxIDBytes:
		return nil, at, ErrUserIDTooLong
	case len(r.AdID) > MaxIDBytes:
		return nil, at, ErrAdIDTooLong
	case !cleanID(r.UserID):
		return nil, at, ErrUserIDChars
	case !cleanID(r.AdID):
		return nil, at, ErrAdIDChars
	}
	at = now
	if r.HasTimestamp {
		ts, ok := ParseTime(r.Timestamp)
		if !ok {
			return nil, at, ErrTimestampFormat
		}
		if ts.Sub(now) > t.maxSkew {
			return nil, at, t.tooFarAhead
		}
		// Within the skew, a future timestamp is a clock drift: take the
		// time of receipt.
		if ts.Before(now) {
			at = ts
		}
	}
	c = *last
	if c == nil || c.ID != string(r.CampaignID) {
		if c, err = t.st.campaign(r.CampaignID); err != nil {
			return nil, at, err
		}
		if c == nil {
			return nil, at, ErrCampaignNotFound
		}
		*last = c
	}
	if at.Before(c.Start) {
		return nil, at, ErrBeforeStart
	}
	if !c.End.IsZero() && at.After(c.End) {
		return nil, at, ErrAfterEnd
	}
	return c, at, nil
}

// cleanID reports whether an id is valid UTF-8 without control characters
// (C0, DEL, C1). Ids end up in logs, exports and dashboards, where such
// bytes do damage; and two byte strings that render alike should not count
// as two users.
func cleanID(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if (r == utf8.RuneError && size == 1) || (r >= 0x80 && r < 0xa0) {
			return false
		}
		i += size
	}
	return true
}

// RetryAfter is how long until the dedup window next frees room for a new
// pair, after ErrDedupLimit.
func (t *Tracker) RetryAfter() time.Duration { return t.st.retryAfter(t.now()) }

// Ready reports why the tracker cannot serve now (the shared store does
// not answer), nil when it can.
func (t *Tracker) Ready() error { return t.st.ready() }

// Snapshot writes a snapshot of the whole state and deletes the log
// segments it covers; it fails unless the state is durable (DataDir).
// Writes pause only while the log is cut and the counters are copied.
func (t *Tracker) Snapshot() error { return t.st.snapshot() }

// WriteMetrics writes the state's metrics in the Prometheus text format;
// help writes a family's HELP and TYPE lines.
func (t *Tracker) WriteMetrics(w io.Writer, help func(name, typ, text string)) {
	t.st.writeMetrics(w, help)
}

// Shutdown stops the background goroutines, then a durable tracker writes
// a last snapshot if one is due and closes its log: everything
// acknowledged is on disk when it returns nil. No call may run
// concurrently with or after it.
func (t *Tracker) Shutdown() error { return t.stop(true) }

// Close is Shutdown without the snapshot; the log is flushed. It is
// idempotent, and so is Shutdown: the first of them decides.
func (t *Tracker) Close() error { return t.stop(false) }

func (t *Tracker) stop(final bool) error {
	t.once.Do(func() {
		t.closeErr = t.st.close(final)
		if t.clock != nil {
			t.clock.Stop()
		}
	})
	return t.closeErr
}
