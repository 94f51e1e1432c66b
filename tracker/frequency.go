package tracker

import (
	"fmt"
	"strconv"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// Frequency caps: a campaign may say that a user sees it at most Max times
// in any Window (at most 3 per hour and 10 per day, say), and an ad server
// asks, before it serves, which of its candidate campaigns a user is still
// under the caps of (Tracker.Frequency). Every accepted impression of a
// (campaign, user) pair, counted or duplicate, is an exposure at its
// arrival time, whether or not the campaign has caps then: caps set later
// see the exposures before them.

const (
	// MaxCaps bounds a campaign's frequency caps.
	MaxCaps = 4
	// MaxCapMax bounds a cap's Max.
	MaxCapMax = 1<<32 - 1
	// MaxFrequencyCampaigns bounds the campaigns of one Frequency check.
	MaxFrequencyCampaigns = 1000
)

// FrequencyCap is one frequency cap: at most Max exposures of a user in
// any Window.
type FrequencyCap struct {
	Max    uint64
	Window time.Duration
}

// CapSpec is a frequency cap as a front end received it: Max as a number
// (MaxInteger false when it was not an integer), Window as Go duration
// text ("1h", "90m"). Checked by Create and SetFrequencyCaps.
type CapSpec struct {
	Max        float64
	MaxPresent bool
	Window     []byte
	// WindowType is false when the window was present but not a string.
	WindowType bool
}

// WindowText is a cap window's canonical text: whole hours as "24h", else
// whole minutes as "90m", else whole seconds as "90s", else Go's form.
func WindowText(w time.Duration) string { return string(AppendWindow(nil, w)) }

// AppendWindow appends WindowText(w) to b without allocating.
func AppendWindow(b []byte, w time.Duration) []byte {
	switch {
	case w%time.Hour == 0:
		return append(strconv.AppendInt(b, int64(w/time.Hour), 10), 'h')
	case w%time.Minute == 0:
		return append(strconv.AppendInt(b, int64(w/time.Minute), 10), 'm')
	case w%time.Second == 0:
		return append(strconv.AppendInt(b, int64(w/time.Second), 10), 's')
	}
	return append(b, w.String()...)
}

// ErrTooManyCaps refuses more than MaxCaps caps.
var ErrTooManyCaps = newError(Invalid, "frequency_caps must hold at most "+strconv.Itoa(MaxCaps)+" caps")

// checkCaps validates caps as Create and SetFrequencyCaps take them; the
// error names the field ("frequency_caps[1].window").
func checkCaps(specs []CapSpec) ([]FrequencyCap, error) {
	if len(specs) > MaxCaps {
		return nil, ErrTooManyCaps
	}
	if len(specs) == 0 {
		return nil, nil
	}
	caps := make([]FrequencyCap, len(specs))
	for i, s := range specs {
		if !s.MaxPresent || s.Max < 1 || s.Max > MaxCapMax || s.Max != float64(uint64(s.Max)) {
			return nil, newError(Invalid, fmt.Sprintf("frequency_caps[%d].max must be an integer from 1 to %d", i, uint64(MaxCapMax)))
		}
		w, err := time.ParseDuration(string(s.Window))
		if !s.WindowType || s.Window == nil || err != nil || w < sketch.MinFrequencyWindow || w > sketch.MaxFrequencyWindow {
			return nil, newError(Invalid, fmt.Sprintf("frequency_caps[%d].window must be a duration from 1m to 168h, e.g. \"1h\" or \"90m\"", i))
		}
		caps[i] = FrequencyCap{Max: uint64(s.Max), Window: w}
	}
	return caps, nil
}

// validCap reports whether c is a cap checkCaps can return.
func validCap(c FrequencyCap) bool {
	return c.Max >= 1 && c.Max <= MaxCapMax && c.Window >= sketch.MinFrequencyWindow && c.Window <= sketch.MaxFrequencyWindow
}

// SetFrequencyCaps replaces the frequency caps of the campaign with the
// given id (none: removes them) and returns the campaign as it is now.
// Like Update, once it returns nil the change survives what the state
// promises to survive, and an error changes nothing.
func (t *Tracker) SetFrequencyCaps(id string, specs []CapSpec) (Campaign, error) {
	caps, err := checkCaps(specs)
	if err != nil {
		return Campaign{}, err
	}
	return t.change(id, func(old *Campaign) (*Campaign, error) {
		c := *old
		c.Caps = caps
		return &c, nil
	})
}

// Exposure is a user's exposures to a campaign in one cap's window: Count
// is never below the true number of the user's accepted impressions of
// the campaign that arrived in the Window before the check, and reaches
// back less than sketch.FrequencySlice(Window) further.
type Exposure struct {
	Window time.Duration
	Count  uint64
	Max    uint64
}

// FrequencyResult is the answer for one candidate campaign: Err
// (ErrCampaignNotFound) or whether the user is still under every cap
// (Allowed: every Count below its Max; a campaign without caps is allowed)
// and the counts behind it, one per cap in the campaign's order.
type FrequencyResult struct {
	CampaignID string
	Err        error
	Allowed    bool
	Exposures  []Exposure
}

// frequencyItem is one found candidate of a check: its campaign, and its
// place in the results.
type frequencyItem struct {
	c     *Campaign
	index int
}

// Frequency answers, for a user about to be served, which of the
// campaigns of ids are still under their frequency caps: out[i] (for i <
// len(ids)) gets the answer for ids[i]. The user id follows the rules of
// an impression's user_id; an error other than those (the state cannot be
// read) fails the whole check and sets no result.
func (t *Tracker) Frequency(user []byte, ids [][]byte, out []FrequencyResult) error {
	switch {
	case len(user) == 0:
		return ErrUserIDRequired
	case len(user) > MaxIDBytes:
		return ErrUserIDTooLong
	case !cleanID(user):
		return ErrUserIDChars
	}
	now := t.now()
	items := make([]frequencyItem, 0, len(ids))
	caps := 0
	for i, id := range ids {
		c, err := t.st.campaign(id)
		if err != nil {
			return err
		}
		if c == nil {
			out[i] = FrequencyResult{CampaignID: string(id), Err: ErrCampaignNotFound}
			continue
		}
		out[i] = FrequencyResult{CampaignID: c.ID} // the same bytes, not a copy
		out[i].Allowed = true
		if len(c.Caps) == 0 {
			out[i].Exposures = []Exposure{}
			// Still handed to the state: a shared one checks that
			// the campaign is still this version, whose caps another
			// instance may have set since this one cached it.
			items = append(items, frequencyItem{c: c, index: i})
			continue
		}
		caps += len(c.Caps)
		items = append(items, frequencyItem{c: c, index: i})
	}
	if len(items) == 0 {
		return nil
	}
	// One array, of the exact size, holds every answer's exposures: a
	// check of 1,000 campaigns allocates once for them, not a thousand
	// times.
	exposures := make([]Exposure, 0, caps)
	for _, it := range items {
		if len(it.c.Caps) == 0 {
			continue
		}
		n := len(exposures)
		for _, cp := range it.c.Caps {
			exposures = append(exposures, Exposure{Window: cp.Window, Max: cp.Max})
		}
		out[it.index].Exposures = exposures[n:len(exposures):len(exposures)]
	}
	if err := t.st.frequency(items, user, now, out); err != nil {
		return err
	}
	for _, it := range items {
		r := &out[it.index]
		for _, e := range r.Exposures {
			if e.Count >= e.Max {
				r.Allowed = false
			}
		}
	}
	return nil
}
