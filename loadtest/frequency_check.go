package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fastjson"
)

// freqChecker checks frequency answers against the warm-up: the
// impressions the server accepted are a lower bound of every count it may
// report (it may overcount, a sketch would, but never undercount), and
// allowed must follow from the counts it reports.
//
// The load generator checks thousands of answers a second, about 130
// bytes an id, on the one core it has, and a full check costs about 0.65 µs
// an id (BenchmarkFreqCheck). A check is a function of the answer's bytes,
// its user and which caps certainly hold the whole warm-up, and nothing is
// tracked during the timed phase, so a user's answers repeat: the last one
// of each user that passed is kept, and a byte-identical answer under the
// same caps passes alike for the cost of a comparison, adding the same
// tallies.
//
// It is not safe for concurrent use; attack calls check from the one
// goroutine that reads the results.
type freqChecker struct {
	w         *freqWorkload
	exposures []uint8   // per pair, the warm-up impressions answered 200
	warmStart time.Time // no warm-up impression is older
	p         fastjson.Parser

	answers uint64 // 200 answers
	full    uint64 // of those, checked in full rather than found in passed
	tally   freqTally
	bad     freqMismatches
	samples []string     // the first mismatches, described
	passed  []freqPassed // per user, the last answer that passed
	cached  int          // bytes of the bodies in passed
	counts  []uint64     // scratch of capCounts, one per cap
	seen    []bool
}

// freqTally counts the items of the answers checked.
type freqTally struct {
	items     uint64 // items checked
	allowed   uint64 // items allowed
	blocked   uint64 // items not allowed
	unknown   uint64 // 404 items for ids never created
	over      uint64 // items with a count above the impressions tracked
	overBlock uint64 // of those, items not allowed though the truth is under every cap
}

func (t *freqTally) add(o freqTally) {
	t.items += o.items
	t.allowed += o.allowed
	t.blocked += o.blocked
	t.unknown += o.unknown
	t.over += o.over
	t.overBlock += o.overBlock
}

func (t freqTally) sub(o freqTally) freqTally {
	return freqTally{t.items - o.items, t.allowed - o.allowed, t.blocked - o.blocked,
		t.unknown - o.unknown, t.over - o.over, t.overBlock - o.overBlock}
}

// freqPassed is an answer that passed: its body, the caps certain when it
// was checked (see certain) and the tallies it added.
type freqPassed struct {
	body    []byte
	certain uint64
	tally   freqTally
}

// freqMaxCached bounds the bytes of the answers kept; beyond it answers
// are checked in full.
const freqMaxCached = 256 << 20

// freqMismatches counts answers and items that break the contract, by
// kind: an item counts once in each kind it breaks.
type freqMismatches struct {
	malformed  uint64 // an answer or item that is not the promised JSON
	user       uint64 // an answer for another user
	length     uint64 // an answer with more or fewer items than ids
	order      uint64 // an item whose id is not the one at its position
	errorItem  uint64 // an error for a created campaign, or none for an unknown id
	caps       uint64 // exposures that are not the campaign's caps
	undercount uint64 // a count below the impressions tracked
	allowed    uint64 // allowed other than "every count under its max"
}

func (m freqMismatches) total() uint64 {
	return m.malformed + m.user + m.length + m.order + m.errorItem + m.caps + m.undercount + m.allowed
}

// freqMaxSamples is how many mismatches the report describes.
const freqMaxSamples = 5

// newFreqChecker books the warm-up: okSeqs are the warm-up impressions
// answered 200, begun no earlier than warmStart.
func newFreqChecker(w *freqWorkload, okSeqs []uint64, warmStart time.Time) *freqChecker {
	c := &freqChecker{w: w, exposures: make([]uint8, len(w.planned)), warmStart: warmStart,
		passed: make([]freqPassed, w.users), counts: make([]uint64, len(w.caps)), seen: make([]bool, len(w.caps))}
	for _, n := range okSeqs {
		c.exposures[w.warmup[n]]++
	}
	return c
}

// check books one result and reports whether it passed: answered 200 and
// matching the request and the warm-up. It keeps r.Body if the answer
// passes; the caller may drop the slice but must not modify its bytes.
func (c *freqChecker) check(r *vegeta.Result) bool {
	if r.Code != http.StatusOK {
		return false
	}
	c.answers++
	n, err := seqOf(r.URL)
	if err != nil {
		c.mismatch(&c.bad.malformed, "%s: %v", r.URL, err)
		return false
	}
	u, certain := c.w.userOf(n), c.certain(r.Timestamp)
	if prev := &c.passed[u]; prev.body != nil && prev.certain == certain && bytes.Equal(prev.body, r.Body) {
		c.tally.add(prev.tally)
		return true
	}
	c.full++
	bad, tally := c.bad.total(), c.tally
	c.checkAnswer(n, r.Body, certain)
	if c.bad.total() != bad {
		return false
	}
	if prev := &c.passed[u]; c.cached-len(prev.body)+len(r.Body) <= freqMaxCached {
		c.cached += len(r.Body) - len(prev.body)
		*prev = freqPassed{r.Body, certain, c.tally.sub(tally)}
	}
	return true
}

// certain is the set of caps, bit i for cap i (there are far fewer than
// 64), whose window certainly holds the whole warm-up at sent: those whose
// window, less a minute, is longer than the time since the warm-up began.
// The minute of slack is for servers that keep windows in minute buckets
// and drop the oldest one whole. A count may not be below the impressions
// tracked in a cap certain, and may be anything in another.
func (c *freqChecker) certain(sent time.Time) uint64 {
	var m uint64
	for i, cp := range c.w.caps {
		if sent.Sub(c.warmStart)+time.Minute < cp.window {
			m |= 1 << i
		}
	}
	return m
}

func seqOf(url string) (uint64, error) {
	i := strings.LastIndex(url, "seq=")
	if i < 0 {
		return 0, fmt.Errorf("no seq in %q", url)
	}
	return strconv.ParseUint(url[i+4:], 10, 64)
}

// checkAnswer checks the answer to request n in full, certain the caps
// that hold the warm-up.
func (c *freqChecker) checkAnswer(n uint64, body []byte, certain uint64) {
	u := c.w.userOf(n)
	v, err := c.p.ParseBytes(body)
	if err != nil {
		c.mismatch(&c.bad.malformed, "request %d: %v", n, err)
		return
	}
	if got := v.GetStringBytes("user_id"); string(got) != "u"+strconv.Itoa(u) {
		c.mismatch(&c.bad.user, "request %d: user_id %q, want u%d", n, got, u)
	}
	items, err := arrayOf(v.Get("campaigns"))
	if err != nil {
		c.mismatch(&c.bad.malformed, "request %d: campaigns: %v", n, err)
		return
	}
	order := c.w.order[u]
	if len(items) != len(order) {
		c.mismatch(&c.bad.length, "request %d: %d items for %d ids", n, len(items), len(order))
	}
	for k := range min(len(items), len(order)) {
		c.tally.items++
		want := c.w.id(order[k])
		if got := items[k].GetStringBytes("campaign_id"); string(got) != want {
			c.mismatch(&c.bad.order, "request %d, item %d: campaign_id %q, want %q", n, k, got, want)
			continue
		}
		where := freqPos{n, k, want, u}
		if int(order[k]) >= len(c.w.campaigns) {
			c.checkUnknown(items[k], where)
			continue
		}
		c.checkItem(items[k], c.exposures[u*len(c.w.campaigns)+int(order[k])], certain, where)
	}
}

// freqPos names an item in a mismatch: request n, item k, for campaign id
// and user u.
type freqPos struct {
	n  uint64
	k  int
	id string
	u  int
}

func (p freqPos) String() string {
	return fmt.Sprintf("request %d, item %d (%s, u%d)", p.n, p.k, p.id, p.u)
}

// checkUnknown checks the item of an id never created: an error, code 404.
func (c *freqChecker) checkUnknown(item *fastjson.Value, where freqPos) {
	if item.GetInt("code") != http.StatusNotFound || len(item.GetStringBytes("error")) == 0 {
		c.mismatch(&c.bad.errorItem, "%s: %s, want a 404 error item", where, compactJSON(item))
		return
	}
	c.tally.unknown++
}

// checkItem checks the item of a created campaign, of which the warm-up
// tracked tracked impressions for this user.
func (c *freqChecker) checkItem(item *fastjson.Value, tracked uint8, certain uint64, where freqPos) {
	if item.Exists("error") || item.Exists("code") {
		c.mismatch(&c.bad.errorItem, "%s: %s for a created campaign", where, compactJSON(item))
		return
	}
	allowed, err := boolOf(item.Get("allowed"))
	if err != nil {
		c.mismatch(&c.bad.malformed, "%s: allowed: %v", where, err)
		return
	}
	exps, err := arrayOf(item.Get("exposures"))
	if err != nil {
		c.mismatch(&c.bad.malformed, "%s: exposures: %v", where, err)
		return
	}
	counts, ok := c.capCounts(exps, where)
	if !ok {
		return
	}
	over, overCap, truthOver, under := false, false, false, -1
	for i, cp := range c.w.caps {
		got := counts[i]
		over = over || got > uint64(tracked)
		overCap = overCap || got >= cp.max
		truthOver = truthOver || uint64(tracked) >= cp.max
		if under < 0 && certain&(1<<i) != 0 && got < uint64(tracked) {
			under = i
		}
	}
	if under >= 0 {
		c.mismatch(&c.bad.undercount, "%s: %s count %d, below the %d impressions tracked", where, c.w.caps[under].name, counts[under], tracked)
	}
	if allowed == overCap {
		c.mismatch(&c.bad.allowed, "%s: allowed %t with counts %v of max %s", where, allowed, slices.Clone(counts), capMaxes(c.w.caps))
	}
	if allowed {
		c.tally.allowed++
	} else {
		c.tally.blocked++
	}
	if over {
		c.tally.over++
		if !allowed && !truthOver {
			c.tally.overBlock++
		}
	}
}

// capCounts returns the counts of the campaign's caps, in the order of
// w.caps, from an item's exposures: one for each cap, with its max. The
// slice is scratch, valid until the next call.
func (c *freqChecker) capCounts(exps []*fastjson.Value, where freqPos) ([]uint64, bool) {
	if len(exps) != len(c.w.caps) {
		c.mismatch(&c.bad.caps, "%s: %d exposures for %d caps", where, len(exps), len(c.w.caps))
		return nil, false
	}
	clear(c.seen)
	for _, e := range exps {
		i := c.capIndex(e.GetStringBytes("window"))
		if i < 0 || c.seen[i] {
			c.mismatch(&c.bad.caps, "%s: exposure %s is none of the caps or repeats one", where, compactJSON(e))
			return nil, false
		}
		n, errN := uintOf(e.Get("count"))
		m, errM := uintOf(e.Get("max"))
		if errN != nil || errM != nil {
			c.mismatch(&c.bad.malformed, "%s: exposure %s: count or max is not a count", where, compactJSON(e))
			return nil, false
		}
		if m != c.w.caps[i].max {
			c.mismatch(&c.bad.caps, "%s: exposure %s, want max %d", where, compactJSON(e), c.w.caps[i].max)
			return nil, false
		}
		c.counts[i], c.seen[i] = n, true
	}
	return c.counts, true
}

// capIndex is the index of the cap of a window, -1 if none. The window may
// be spelt as sent ("24h") or otherwise ("24h0m0s"), which costs a parse.
func (c *freqChecker) capIndex(window []byte) int {
	for i, cp := range c.w.caps {
		if string(window) == cp.name {
			return i
		}
	}
	d, err := time.ParseDuration(string(window))
	if err != nil {
		return -1
	}
	for i, cp := range c.w.caps {
		if cp.window == d {
			return i
		}
	}
	return -1
}

func capMaxes(caps []freqCap) string {
	s := make([]string, len(caps))
	for i, cp := range caps {
		s[i] = strconv.FormatUint(cp.max, 10)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// errMissing is a field an answer lacks; fastjson's accessors panic on
// the nil Value Get returns for one.
var errMissing = errors.New("missing")

func arrayOf(v *fastjson.Value) ([]*fastjson.Value, error) {
	if v == nil {
		return nil, errMissing
	}
	return v.Array()
}

func boolOf(v *fastjson.Value) (bool, error) {
	if v == nil {
		return false, errMissing
	}
	return v.Bool()
}

func uintOf(v *fastjson.Value) (uint64, error) {
	if v == nil {
		return 0, errMissing
	}
	return v.Uint64()
}

// mismatch counts one mismatch of a kind and keeps the first few described.
func (c *freqChecker) mismatch(kind *uint64, format string, args ...any) {
	*kind++
	if len(c.samples) < freqMaxSamples {
		c.samples = append(c.samples, fmt.Sprintf(format, args...))
	}
}

// compactJSON shortens v for a message.
func compactJSON(v *fastjson.Value) string {
	b := v.MarshalTo(nil)
	if len(b) > 200 {
		b = append(bytes.Clone(b[:200]), "..."...)
	}
	return string(b)
}
