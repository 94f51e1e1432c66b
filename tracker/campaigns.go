package tracker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/stats"
)

// minStart and maxStart bound a campaign's start time: whole years within
// what a time.Time's UnixNano holds (1677-09-21 to 2262-04-11), the form
// the write-ahead log, snapshots and Redis store it in. Outside them a
// start would come back changed after a restart, so it is refused instead.
var (
	minStart = time.Date(1678, 1, 1, 0, 0, 0, 0, time.UTC)
	maxStart = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Create validates spec and registers the campaign. Once it returns nil the
// campaign survives what the state promises to survive (with a data
// directory: any crash; it was fsync'd first). An error changes nothing:
// the campaign never appears, not even after a restart.
func (t *Tracker) Create(spec CampaignSpec) (Campaign, error) {
	c, err := t.newCampaign(&spec)
	if err != nil {
		return Campaign{}, err
	}
	switch err := t.st.create(c, t.maxCampaigns); err {
	case nil:
		return *c, nil
	case errCampaignLimit:
		return Campaign{}, campaignLimit(t.maxCampaigns)
	case errCampaignExists:
		return Campaign{}, campaignExists(c.ID)
	default:
		return Campaign{}, err
	}
}

// newCampaign validates a creation request. The strings are copied: the
// request's bytes may belong to a parser.
func (t *Tracker) newCampaign(r *CampaignSpec) (*Campaign, error) {
	if err := checkName(r.Name); err != nil {
		return nil, err
	}
	c := &Campaign{Name: string(r.Name)}
	if r.ID != nil {
		if !ValidID(r.ID) {
			return nil, ErrIDInvalid
		}
		c.ID = string(r.ID)
	} else {
		c.ID = newCampaignID()
	}
	if r.Start != nil {
		ts, ok := ParseTime(r.Start)
		if !ok {
			return nil, ErrStartTimeFormat
		}
		if ts.Before(minStart) || !ts.Before(maxStart) {
			return nil, ErrStartTimeRange
		}
		c.Start = ts.UTC()
	} else {
		// Whole seconds, so that a client stamping impressions with
		// second-precision RFC 3339 right after creation is not "before
		// the start".
		c.Start = t.now().UTC().Truncate(time.Second)
	}
	if r.End != nil {
		end, err := parseEnd(r.End, c.Start)
		if err != nil {
			return nil, err
		}
		c.End = end
	}
	caps, err := checkCaps(r.Caps)
	if err != nil {
		return nil, err
	}
	c.Caps = caps
	return c, nil
}

// parseEnd reads an end_time, which must not be before start.
func parseEnd(b []byte, start time.Time) (time.Time, error) {
	ts, ok := ParseTime(b)
	switch {
	case !ok:
		return time.Time{}, ErrEndTimeFormat
	case ts.Before(start) || !ts.Before(maxStart):
		return time.Time{}, ErrEndTimeRange
	}
	return ts.UTC(), nil
}

// checkName applies the rules of a campaign's name.
func checkName(name []byte) error {
	switch {
	case name == nil:
		return ErrNameRequired
	case !utf8.Valid(name):
		return ErrNameUTF8
	}
	if n := utf8.RuneCount(name); n < 1 || n > MaxNameRunes {
		return ErrNameLength
	}
	return nil
}

// Update changes the campaign with the given id as p says and returns it
// as it is now. Changes of one campaign are applied one at a time, each to
// the result of the one before. Once it returns nil the change survives
// what the state promises to survive; an error changes nothing. An
// impression judged while the change is applied is judged by the campaign
// as it was before or after, never a mix.
func (t *Tracker) Update(id string, p CampaignPatch) (Campaign, error) {
	if p.Name != nil {
		if err := checkName(p.Name); err != nil {
			return Campaign{}, err
		}
	}
	var end time.Time
	if p.End != nil {
		ts, ok := ParseTime(p.End)
		if !ok {
			return Campaign{}, ErrEndTimeFormat
		}
		end = ts.UTC()
	}
	return t.change(id, func(old *Campaign) (*Campaign, error) {
		c := *old
		if p.Name != nil {
			c.Name = string(p.Name)
		}
		switch {
		case p.ClearEnd:
			c.End = time.Time{}
		case p.End != nil:
			if end.Before(c.Start) || !end.Before(maxStart) {
				return nil, ErrEndTimeRange
			}
			c.End = end
		}
		return &c, nil
	})
}

// change replaces the campaign with the given id by what f makes of it,
// through the state (which persists and publishes it, see state.update),
// and returns the new campaign; an error of f changes nothing, and a
// campaign that does not exist is ErrCampaignNotFound.
func (t *Tracker) change(id string, f func(old *Campaign) (*Campaign, error)) (Campaign, error) {
	c, err := t.st.update([]byte(id), f)
	switch {
	case err != nil:
		return Campaign{}, err
	case c == nil:
		return Campaign{}, ErrCampaignNotFound
	}
	return *c, nil
}

// Delete removes the campaign with the given id: its routes answer
// ErrCampaignNotFound from then on, its counts are freed, and a campaign
// created under the same id later starts from nothing, sharing no count
// and no dedup pair with it. An impression of it judged before the
// deletion is either counted before it or refused with
// ErrCampaignNotFound. Once it returns nil the deletion survives what the
// state promises to survive; an error changes nothing.
func (t *Tracker) Delete(id string) error {
	ok, err := t.st.remove([]byte(id))
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrCampaignNotFound
	}
	return nil
}

// newCampaignID returns "cmp_" and 20 random hex digits (80 bits).
func newCampaignID() string {
	var b [10]byte
	rand.Read(b[:])
	return "cmp_" + hex.EncodeToString(b[:])
}

// Campaign returns the campaign with the given id, or ErrCampaignNotFound.
func (t *Tracker) Campaign(id string) (Campaign, error) {
	c, err := t.campaign(id)
	if err != nil {
		return Campaign{}, err
	}
	return *c, nil
}

// freshReader is a state whose campaign may answer from a cache that
// lags other instances' changes; fresh reads the campaign as it is now.
type freshReader interface {
	fresh(id []byte) (*Campaign, error)
}

// campaign looks up a campaign for a read: with a shared state, as it is
// now, so that a change or deletion answered on any instance is seen by
// every read after it.
func (t *Tracker) campaign(id string) (*Campaign, error) {
	var c *Campaign
	var err error
	if f, ok := t.st.(freshReader); ok {
		c, err = f.fresh([]byte(id))
	} else {
		c, err = t.st.campaign([]byte(id))
	}
	switch {
	case err != nil:
		return nil, err
	case c == nil:
		return nil, ErrCampaignNotFound
	}
	return c, nil
}

// Campaigns returns one page of campaigns in id order: at most limit of
// them whose ids sort strictly after after (empty: from the first), and
// whether more follow. Every campaign whose Create returned before the
// call is in its page. Both states page alike: the same order, the same
// boundaries.
func (t *Tracker) Campaigns(after string, limit int) ([]Campaign, bool, error) {
	return t.CampaignsWithPrefix("", after, limit)
}

// CampaignsWithPrefix is Campaigns for the campaigns whose ids start with
// prefix: a search by id that pages like Campaigns.
func (t *Tracker) CampaignsWithPrefix(prefix, after string, limit int) ([]Campaign, bool, error) {
	if limit < 1 {
		return nil, false, errors.New("tracker: Campaigns needs a limit of at least 1")
	}
	return t.st.page(prefix, after, limit)
}

// Stats are a campaign's figures in the windows ending with one minute:
// the impressions counted (the embedded Window) and the Duplicates, the
// impressions dedup did not count, each by event time. A front end reads
// Total, LastHour and LastDay as the counted ones.
type Stats struct {
	stats.Window
	Duplicates stats.Window
	// Reach is the distinct users with at least one impression, counted
	// or not, in windows aligned to 5 minutes (see sketch.Reach and, with
	// a shared Redis, redisstore.Store.Reach).
	Reach *sketch.ReachWindow
}

// Stats returns the campaign with the given id and its figures in the
// windows ending with the current minute.
func (t *Tracker) Stats(id string) (Campaign, Stats, error) {
	c, err := t.campaign(id)
	if err != nil {
		return Campaign{}, Stats{}, err
	}
	w, err := t.st.window(c, stats.Minute(t.now()))
	if err != nil {
		return Campaign{}, Stats{}, err
	}
	return *c, w, nil
}

// Series returns the campaign with the given id and its per-minute counts
// of the n minutes ending with the current minute, oldest first, minutes
// without impressions as zeros; first is the Unix minute of counts[0].
func (t *Tracker) Series(id string, n int) (c Campaign, first int64, counts []uint64, err error) {
	cp, err := t.campaign(id)
	if err != nil {
		return Campaign{}, 0, nil, err
	}
	now := stats.Minute(t.now())
	counts = make([]uint64, n)
	if err := t.st.series(cp, now, counts); err != nil {
		return Campaign{}, 0, nil, err
	}
	return *cp, now - int64(n) + 1, counts, nil
}
