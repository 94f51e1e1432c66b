package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/impressiond/impressiond/sketch"
)

// # Frequency caps
//
// Every track script also records each item, counted or not, as an
// exposure of its (campaign, user) pair at the call's arrival time, the
// shared clock read inside the script (the one the dedup window runs on):
//
//	t fq:<pair>  hash of the pair's exposures, <pair> the pair's key
//	             (the shared keyed hash of imp:hashkey, its low 64 bits)
//	             as 16 hex digits; expires 175 h after its last exposure
//	             (an EXPIRE, relative to Redis's clock)
//
// An exposure is counted at four levels, the slice granularities of
// sketch.FrequencySlice (1m, 10m, 1h, 6h), slices aligned to Unix time
// (slice s = floor(unix µs / g)). A level keeps a ring of R fields, each
// holding two consecutive slices: field base+(⌊s/2⌋ mod R) holds
// "<⌊s/2⌋>:<count of slice 2⌊s/2⌋>:<count of slice 2⌊s/2⌋+1>". R is
// one more than the most slice pairs a window of the level reads, so a
// pair of slices is overwritten only once no window reads it; a field
// holding an older pair of slices is rewritten from zero, and a reader
// counts a field only if it holds the pair it looks for.
//
//	level  g    windows      fields
//	0      1m   [1m, 60m)    0..31   (R 32: 61 slices read at most)
//	1      10m  [60m, 6h)    32..51  (R 20: 37 slices)
//	2      1h   [6h, 36h)    52..71  (R 20: 37 slices)
//	3      6h   [36h, 168h]  72..87  (R 16: 29 slices)
//
// So a pair's hash has at most 88 fields, whatever its traffic: below
// Redis's default hash-max-listpack-entries (128), it stays a compact
// listpack (fields are small integers, values about 13 bytes).
//
// A check (Frequency) reads, for one user and each candidate campaign,
// the pair's hash and the campaign's def key, and the shared clock after
// them, in one pipeline per Redis node, and counts in the instance:
// Count(w, now) is the exposures whose slice index at w's level is in
// [s(now − w), s(now)], exactly what the in-process exact mode counts.

// freqLevel is one slice granularity of the exposures.
type freqLevel struct {
	g     time.Duration // the slice
	slots int           // R: fields of the ring, each two slices
	base  int           // the first field
}

var freqLevels = [4]freqLevel{
	{time.Minute, 32, 0},
	{10 * time.Minute, 20, 32},
	{time.Hour, 20, 52},
	{6 * time.Hour, 16, 72},
}

// FrequencyFields is the most fields the hash of one pair's exposures
// holds.
const FrequencyFields = 88

// freqTTL is how long a pair's exposures are kept after its last one: the
// longest window, its slice, and an hour's slack for the clocks.
const freqTTL = sketch.MaxFrequencyWindow + 6*time.Hour + time.Hour

// freqLevelsLua defines the levels for the scripts: fqg, the slices in
// µs; fqr, the ring sizes; fqb, the first fields.
var freqLevelsLua = func() string {
	var g, r, b string
	for i, l := range freqLevels {
		if i > 0 {
			g, r, b = g+", ", r+", ", b+", "
		}
		g += strconv.FormatInt(l.g.Microseconds(), 10)
		r += strconv.Itoa(l.slots)
		b += strconv.Itoa(l.base)
	}
	return "local fqg, fqr, fqb = {" + g + "}, {" + r + "}, {" + b + "}\n"
}()

// freqLua takes the exposure keys and arguments off the end of KEYS and
// ARGV (after adsLua took its own): KEYS nf pair hashes, ARGV the
// exposures of each in the call, then nf. expose(now) adds them at now,
// the shared clock in µs: per pair one HMGET, one HSET and one EXPIRE.
// It writes nothing before it is called, so a script that answers STALE
// or EPOCH records no exposure.
var freqLua = freqLevelsLua + `
local fqn = tonumber(table.remove(ARGV))
local fqk, fqc = {}, {}
for i = fqn, 1, -1 do
  fqc[i] = tonumber(table.remove(ARGV))
  fqk[i] = table.remove(KEYS)
end
local function expose(now)
  if fqn == 0 then return end
  local f, q, odd = {}, {}, {}
  for l = 1, 4 do
    local s = math.floor(now / fqg[l])
    q[l] = math.floor(s / 2)
    odd[l] = s - 2 * q[l] == 1
    f[l] = string.format('%d', fqb[l] + q[l] % fqr[l])
  end
  for i = 1, fqn do
    local v = redis.call('HMGET', fqk[i], f[1], f[2], f[3], f[4])
    local set = {}
    for l = 1, 4 do
      local p, a, b = q[l], 0, 0
      if v[l] then
        local vp, va, vb = string.match(v[l], '^(-?%d+):(%d+):(%d+)$')
        -- an older pair of slices is overwritten; a newer one (the
        -- shared clock stepped back past the ring) keeps the field and
        -- takes the exposure
        if vp and tonumber(vp) >= p then p, a, b = tonumber(vp), tonumber(va), tonumber(vb) end
      end
      if odd[l] then b = b + fqc[i] else a = a + fqc[i] end
      set[#set + 1] = f[l]
      set[#set + 1] = string.format('%d:%d:%d', p, a, b)
    end
    redis.call('HSET', fqk[i], unpack(set))
    redis.call('EXPIRE', fqk[i], ` + strconv.Itoa(int(freqTTL/time.Second)) + `)
  end
end
`

// freqKey is the key of the exposures of the pair with key lo in campaign
// tag t.
func freqKey(t string, lo uint64) string {
	var b [16]byte
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = digits[lo&15]
		lo >>= 4
	}
	return t + "fq:" + string(b[:])
}

// pairLo is the pair key the exposures of user in campaign id are kept
// under: the shared keyed hash, the same on every instance.
func (s *Store) pairLo(id string, user []byte) uint64 {
	return s.keys().Key([]byte(id), user).Lo
}

// appendFreq appends to keys and args, which must end just before the
// per-ad keys and arguments (see appendAds), the exposure keys and
// arguments of a call of campaign tag t whose items have the pair keys
// los (see pairLo): one key per distinct pair, with its items in the call.
func appendFreq(keys, args []string, t string, los []uint64) ([]string, []string) {
	if len(los) == 1 { // the single-impression path
		return append(keys, freqKey(t, los[0])), append(args, "1", "1")
	}
	at := make(map[uint64]int, len(los)) // a pair's index in n
	var n []int
	for _, lo := range los {
		k, ok := at[lo]
		if !ok {
			k = len(n)
			at[lo] = k
			n = append(n, 0)
			keys = append(keys, freqKey(t, lo))
		}
		n[k]++
	}
	for _, c := range n {
		args = append(args, strconv.Itoa(c))
	}
	return keys, append(args, strconv.Itoa(len(n)))
}

// FrequencyQuery is one campaign of a Frequency check: its Ref (see Ref)
// and the windows of its caps, each within [sketch.MinFrequencyWindow,
// sketch.MaxFrequencyWindow]. No windows: only the campaign's version is
// checked.
type FrequencyQuery struct {
	Campaign string
	Windows  []time.Duration
}

// ErrFrequencyWindow refuses a window outside [sketch.MinFrequencyWindow,
// sketch.MaxFrequencyWindow].
var ErrFrequencyWindow = errors.New("redisstore: frequency window out of range")

// freqLevelOf returns the level a window is counted in.
func freqLevelOf(w time.Duration) (int, error) {
	if w < sketch.MinFrequencyWindow || w > sketch.MaxFrequencyWindow {
		return 0, fmt.Errorf("%w: %v", ErrFrequencyWindow, w)
	}
	g := sketch.FrequencySlice(w)
	for i, l := range freqLevels {
		if l.g == g {
			return i, nil
		}
	}
	panic("BUG: sketch.FrequencySlice(" + w.String() + ") is no level of the store")
}

// Frequency sets counts[i][j] (len(qs[i].Windows) of them) to the
// exposures of user in campaign qs[i].Campaign within window
// qs[i].Windows[j] ending now by the shared clock, counted in the
// window's slices (see above): exactly what the in-process exact mode
// counts, and never missing an exposure tracked before the call on any
// instance. The campaigns named by a Ref whose version is no longer the
// campaign's (changed, or deleted) are not counted: Frequency then
// answers a *StaleError naming those Refs, having set the counts of
// every other campaign.
//
// It is one pipeline per Redis node: per campaign a GET of its def key
// and an HGETALL of the pair's hash, and the shared clock's TIME (see
// readWithClock; on a cluster the TIME of one node, and the nodes'
// clocks may differ by their NTP offsets, which can move a window's edge
// by that much). "Now" is that TIME, not this instance's clock: an
// exposure tracked through an instance hours ahead is counted at once by
// a check through one hours behind.
func (s *Store) Frequency(user []byte, qs []FrequencyQuery, counts [][]uint64) error {
	if len(qs) == 0 {
		return nil
	}
	c, err := s.conn()
	if err != nil {
		return s.fail("read frequency", err)
	}
	calls := make([]freqCall, len(qs))
	cmds := make(rueidis.Commands, 0, 2*len(qs)+1)
	for i, q := range qs {
		if cmds, err = s.freqCall(c, cmds, &calls[i], user, q); err != nil {
			return err
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	res, clock := s.readWithClock(ctx, c, cmds)
	now, err := s.sharedNow(clock)
	if err != nil {
		return s.fail("read frequency", err)
	}
	var stale []string
	for i, call := range calls {
		ok, err := call.read(res, now, counts[i])
		if err != nil {
			return s.fail("read frequency", err)
		}
		if !ok {
			stale = append(stale, qs[i].Campaign)
		}
	}
	return staleErr(stale)
}

// freqCall is what a check reads for one campaign: the replies of the
// GET of its def key (def, -1 for none) and of the HGETALL of the pair's
// hash (hash, -1 for none) among the check's, the def value it must find,
// and the level and length of each window.
type freqCall struct {
	def, hash int
	want      string
	levels    []int
	windows   []time.Duration
}

// freqCall sets up call for q and appends its commands to cmds.
func (s *Store) freqCall(c rueidis.Client, cmds rueidis.Commands, call *freqCall, user []byte, q FrequencyQuery) (rueidis.Commands, error) {
	id, t, want := parseRef(q.Campaign)
	*call = freqCall{def: -1, hash: -1, want: want, levels: make([]int, len(q.Windows)), windows: q.Windows}
	for j, w := range q.Windows {
		var err error
		if call.levels[j], err = freqLevelOf(w); err != nil {
			return nil, err
		}
	}
	if want != "" {
		call.def = len(cmds)
		cmds = append(cmds, c.B().Get().Key(defKey(id)).Build())
	}
	if len(q.Windows) > 0 {
		call.hash = len(cmds)
		cmds = append(cmds, c.B().Hgetall().Key(freqKey(t, s.pairLo(id, user))).Build())
	}
	return cmds, nil
}

// read sets counts from the replies res at shared time now (Unix µs), or
// reports false if the campaign's definition is no longer the one wanted.
func (call *freqCall) read(res []rueidis.RedisResult, now int64, counts []uint64) (bool, error) {
	if call.def >= 0 {
		cur, err := res[call.def].ToString()
		if rueidis.IsRedisNil(err) {
			cur, err = "0 0", nil // as checkLua reads a missing key
		}
		if err != nil {
			return false, err
		}
		if cur != call.want {
			return false, nil
		}
	}
	if call.hash < 0 {
		return true, nil
	}
	h, err := res[call.hash].AsStrMap()
	if err != nil {
		return false, err
	}
	ring := parseRing(h)
	for j, w := range call.windows {
		counts[j] = ring.count(call.levels[j], w, now)
	}
	return true, nil
}

// readWithClock makes the calls of cmds, pipelined, and reads Redis's
// TIME (unless Options.Clock replaces it) once the call has started, so
// that it is at least the time of every exposure tracked before: in the
// same pipeline on a single Redis; on a cluster, which does not mix a
// command without keys into a pipeline of keyed ones, as a call of its
// own made alongside (the TIME of one node).
func (s *Store) readWithClock(ctx context.Context, c rueidis.Client, cmds rueidis.Commands) (res []rueidis.RedisResult, clock rueidis.RedisResult) {
	switch {
	case s.clock != nil:
		return c.DoMulti(ctx, cmds...), rueidis.RedisResult{}
	case c.Mode() != rueidis.ClientModeCluster:
		res = c.DoMulti(ctx, append(cmds, c.B().Time().Build())...)
		return res[:len(res)-1], res[len(res)-1]
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		clock = c.Do(ctx, c.B().Time().Build())
	}()
	res = c.DoMulti(ctx, cmds...)
	<-done
	return res, clock
}

// sharedNow returns the shared clock of a check in Unix µs, ClockOffset
// added: the injected Options.Clock, or the answer of TIME.
func (s *Store) sharedNow(reply rueidis.RedisResult) (int64, error) {
	if s.clock != nil {
		return s.clock().UnixMicro() + s.offset, nil
	}
	r, err := reply.AsStrSlice()
	if err != nil {
		return 0, err
	}
	if len(r) != 2 {
		return 0, fmt.Errorf("TIME answered %q", r)
	}
	sec, err1 := strconv.ParseInt(r[0], 10, 64)
	usec, err2 := strconv.ParseInt(r[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("TIME answered %q", r)
	}
	return sec*1e6 + usec + s.offset, nil
}

// freqField is one field of a pair's hash: the field, the pair of
// slices p it holds (slices 2p and 2p+1) and their exposures.
type freqField struct {
	f       int
	p, a, b int64
}

// freqRing is a pair's hash, its fields in no order.
type freqRing []freqField

// parseRing reads a pair's hash; a field it cannot read is left out.
func parseRing(h map[string]string) freqRing {
	r := make(freqRing, 0, len(h))
	for f, v := range h {
		i, err := strconv.Atoi(f)
		ps, rest, ok1 := strings.Cut(v, ":")
		as, bs, ok2 := strings.Cut(rest, ":")
		p, err1 := strconv.ParseInt(ps, 10, 64)
		a, err2 := strconv.ParseInt(as, 10, 64)
		b, err3 := strconv.ParseInt(bs, 10, 64)
		if err == nil && ok1 && ok2 && err1 == nil && err2 == nil && err3 == nil {
			r = append(r, freqField{i, p, a, b})
		}
	}
	return r
}

// count is Count(w, now) at level l: the exposures whose slice s is in
// [s(now − w), s(now)], now in Unix µs. A field counts only if it holds
// a pair of slices of the window, and that pair maps to it: an older pair
// left in a field is never counted.
func (r freqRing) count(l int, w time.Duration, now int64) uint64 {
	lv := freqLevels[l]
	g, slots := lv.g.Microseconds(), int64(lv.slots)
	// w rounded up to a µs: floor((now − w)/g) for a w of any ns.
	wus := int64((w + time.Microsecond - 1) / time.Microsecond)
	lo, hi := floorDiv(now-wus, g), floorDiv(now, g)
	var n int64
	for _, e := range r {
		if e.p < floorDiv(lo, 2) || e.p > floorDiv(hi, 2) || int64(lv.base)+e.p-floorDiv(e.p, slots)*slots != int64(e.f) {
			continue
		}
		if 2*e.p >= lo {
			n += e.a
		}
		if 2*e.p+1 <= hi {
			n += e.b
		}
	}
	return uint64(n)
}
