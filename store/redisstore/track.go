package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Item is one impression to dedup and count: its campaign, user and
// event minute. The arrival time is the one passed to Track for all.
type Item struct {
	Campaign string
	User     []byte
	Minute   int64
	// Arrival is the minute the impression arrived in, by the caller's
	// clock: reach counts an event after it at it.
	Arrival int64
	// Ad is the impression's ad id, empty for none (see Ads).
	Ad []byte
}

// exactScript dedups and counts the items of one campaign against its
// generations: one Redis set of user ids per slice. KEYS: the total, nm
// minute keys, the duplicates' total, their nm minute keys, the nm hour
// keys and nm day keys of the minutes (see minuteKeys), then the K+1
// generation keys, newest first. ARGV: the clock arguments
// (clockPrelude), the minute keys' TTL in s, nm, then per item its minute
// key index (0-based) and its user id. It returns 1 for each counted
// item, 0 for each repeat, which it counts as a duplicate of its minute.
// Every user, counted or not, is added to the campaign's reach (the keys
// and arguments of reachLua, after the ones above), and every item is an
// exposure of its pair (freqLua's, before reachLua's).
// Each generation is asked about all items at once (SMISMEMBER), the new
// ones are added with one SADD, and counts are added once per minute key:
// a handful of commands per call, not one or two per item.
var exactScript = rueidis.NewLuaScript(checkLua + reachLua + adsLua + freqLua + clockPrelude + countsLua + `
local nm = tonumber(ARGV[7])
local g0 = 3 + 4 * nm
local n = (#ARGV - 7) / 2
local users, byMinute = {}, {}
for i = 1, n do
  users[i] = ARGV[7 + 2 * i]
  local mi = tonumber(ARGV[6 + 2 * i])
  local us = byMinute[mi]
  if not us then us = {}; byMinute[mi] = us end
  us[#us + 1] = users[i]
end
local seen = {}
for g = g0, #KEYS do
  local r = redis.call('SMISMEMBER', KEYS[g], unpack(users))
  for i = 1, n do
    if r[i] == 1 then seen[i] = true end
  end
end
local out, add, fresh, per, counted, dper, dups = {}, {}, {}, {}, 0, {}, 0
for i = 1, n do
  local u = users[i]
  local mi = tonumber(ARGV[6 + 2 * i])
  if seen[i] or fresh[u] then
    out[i] = 0
    local dk = 3 + nm + mi
    dper[dk] = (dper[dk] or 0) + 1
    dups = dups + 1
  else
    fresh[u] = true
    add[#add + 1] = u
    per[mi] = (per[mi] or 0) + 1
    counted = counted + 1
    out[i] = 1
    adCount(i, mi)
  end
end
if counted > 0 then
  redis.call('SADD', KEYS[g0], unpack(add))
  redis.call('PEXPIRE', KEYS[g0], ttl)
  redis.call('INCRBY', KEYS[1], counted)
end
for mi, c in pairs(per) do
  counts(KEYS[2 + mi], KEYS[3 + 2 * nm + mi], KEYS[3 + 3 * nm + mi], c, ARGV[6])
end
if dups > 0 then redis.call('INCRBY', KEYS[2 + nm], dups) end
for dk, c in pairs(dper) do
  redis.call('INCRBY', KEYS[dk], c)
  redis.call('EXPIRE', KEYS[dk], ARGV[6])
end
reach(byMinute)
expose(clock)
return out`)

// exactOneScript is exactScript for one item, without its tables: the
// single-impression path, where the script's own overhead is most of the
// cost. KEYS: the total, the minute key, the duplicates' total and minute
// key, the hour and day keys, the K+1 generations newest first. ARGV: the clock arguments
// (clockPrelude), the minute keys' TTL in s, the user id. A repeat is
// counted as a duplicate and returns at the first generation holding it.
// Every user, counted or not, is added to the campaign's reach (the keys
// and arguments of reachLua, after the ones above), and the item is an
// exposure of its pair (freqLua's, before reachLua's).
var exactOneScript = rueidis.NewLuaScript(checkLua + reachLua + adsLua + freqLua + clockPrelude + countsLua + `
reach({[0] = {ARGV[7]}})
expose(clock)
for g = 7, #KEYS do
  if redis.call('SISMEMBER', KEYS[g], ARGV[7]) == 1 then
    if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[6]) end
    redis.call('INCR', KEYS[3])
    return 0
  end
end
redis.call('SADD', KEYS[7], ARGV[7])
redis.call('PEXPIRE', KEYS[7], ttl)
counts(KEYS[2], KEYS[5], KEYS[6], 1, ARGV[6])
adCount(1, 0)
redis.call('INCR', KEYS[1])
return 1`)

// countsLua adds c counted impressions of one event minute to its minute
// key (expiring after ttl s), its hour key (kept 91 days: hourly points
// are read for 90) and its day key (kept for good).
const countsLua = `
local function counts(mk, hk, dk, c, ttl)
  if redis.call('INCRBY', mk, c) == c then redis.call('EXPIRE', mk, ttl) end
  if redis.call('INCRBY', hk, c) == c then redis.call('EXPIRE', hk, 7862400) end
  redis.call('INCRBY', dk, c)
end
`

// trackOne is Track for a single item: one script call, auto-pipelined by
// the client with the calls of concurrent requests; in exact mode, one
// more for each wrong guess of the shared clock's slice (see clockPrelude).
func (s *Store) trackOne(it *Item) (bool, error) {
	c, err := s.conn()
	if err != nil {
		return false, s.fail("track", err)
	}
	if !s.exact {
		return s.trackBloomOne(c, it)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	clockArg, e := s.guess()
	id, t, want := parseRef(it.Campaign)
	var keyBuf [9 + maxSlices]string
	var argBuf [clockArgs + 5]string
	los := [1]uint64{s.pairLo(id, it.User)}
	minute := strconv.FormatInt(it.Minute, 10)
	hour, day := hourDayKeys(t, it.Minute)
	for try := 1; ; try++ {
		keys := append(keyBuf[:0], t+"total", t+"m:"+minute, t+"dtotal", t+"d:"+minute, hour, day)
		keys = s.appendGenerations(keys, t, e)
		args := append(s.clockArgv(argBuf[:0], clockArg, e), minuteTTLArg, string(it.User))
		keys, args = appendFreq(keys, args, t, los[:])
		keys, args = s.appendAds(keys, args, t, []int64{it.Minute}, func(yield func(int, []byte)) { yield(0, it.Ad) })
		keys, args = appendReach(keys, args, t, []int64{it.Minute}, it.Arrival)
		keys, args = append(keys, defKey(id)), append(args, want)
		n, err := exactOneScript.Exec(ctx, c, keys, args).AsInt64()
		if isStale(err) {
			return false, &StaleError{Refs: []string{it.Campaign}}
		}
		if miss, ok := asEpochMiss(err); ok {
			if e, err = s.retryEpoch(miss, try); err != nil {
				return false, s.fail("track", err)
			}
			continue
		}
		if err != nil {
			return false, s.fail("track", err)
		}
		return n == 1, nil
	}
}

// retryEpoch learns the shared clock from a script's EPOCH answer and
// returns the slice to try next, or errEpochChase after maxEpochTries.
func (s *Store) retryEpoch(miss *epochMiss, try int) (int64, error) {
	s.learn(miss.now, s.now().UnixMicro())
	s.epochRetries.Add(1)
	if try >= maxEpochTries {
		return 0, errEpochChase
	}
	return miss.epoch, nil
}

// maxSlices bounds the stack buffer of trackOne's keys; more slices spill
// to the heap, correctly.
const maxSlices = 16

var minuteTTLArg = strconv.Itoa(int(minuteTTL / time.Second))

// appendGenerations appends the keys of the exact-mode generations of
// slices e, e-1, ..., e-K, newest first.
func (s *Store) appendGenerations(keys []string, t string, e int64) []string {
	gen := t + "xs:"
	for g := 0; g <= s.slices; g++ {
		keys = append(keys, gen+strconv.FormatInt(e-int64(g), 10))
	}
	return keys
}

// Track dedups and counts items arriving now, by the shared clock (see
// clockPrelude), setting counted[i] for each item counted. The items of a
// campaign named by a Ref whose version is no longer the campaign's are
// not counted: Track then answers a *StaleError naming those Refs, having
// tracked every other item. Items of one
// campaign go to Redis as one script call per up to 1000 of them, and the
// calls of all campaigns as one pipeline; concurrent single-item Tracks are
// pipelined by the client. An error means some items may have been
// applied: retrying them is safe.
func (s *Store) Track(items []Item, counted []bool) error {
	if len(items) == 0 {
		return nil
	}
	if len(items) == 1 {
		var err error
		counted[0], err = s.trackOne(&items[0])
		return err
	}
	var owners [][]int // item indexes of each call
	byCampaign := map[string][]int{}
	var order []string
	for i := range items {
		c := items[i].Campaign
		if _, ok := byCampaign[c]; !ok {
			order = append(order, c)
		}
		byCampaign[c] = append(byCampaign[c], i)
	}
	for _, c := range order {
		idx := byCampaign[c]
		for len(idx) > 0 {
			n := min(len(idx), maxItemsPerCall)
			owners = append(owners, idx[:n])
			idx = idx[n:]
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// Large batches queue here, not in Redis: a script that Redis runs
	// after its caller gave up is capacity thrown away, and under overload
	// that would leave every batch timing out. Waiting for a slot is
	// bounded by the same deadline. Small batches, like single impressions,
	// cost Redis little and go straight through.
	if len(items) >= largeBatch {
		select {
		case s.batchSlots <- struct{}{}:
			defer func() { <-s.batchSlots }()
		case <-ctx.Done():
			return s.fail("track", fmt.Errorf("%d large batches already in flight: %w", cap(s.batchSlots), ctx.Err()))
		}
	}
	client, err := s.conn()
	if err != nil {
		return s.fail("track", err)
	}
	if !s.exact {
		return s.trackBloom(ctx, client, items, owners, counted)
	}
	return s.trackExact(ctx, client, items, owners, counted)
}

// execAll runs the calls of script, pipelined if more than one.
func execAll(ctx context.Context, c rueidis.Client, script *rueidis.Lua, execs []rueidis.LuaExec) []rueidis.RedisResult {
	if len(execs) == 1 {
		return []rueidis.RedisResult{script.Exec(ctx, c, execs[0].Keys, execs[0].Args)}
	}
	return script.ExecMulti(ctx, c, execs...)
}

// trackBloom makes the bloomScript calls of owners, one per campaign and
// up to 1000 items, in one pipeline.
func (s *Store) trackBloom(ctx context.Context, client rueidis.Client, items []Item, owners [][]int, counted []bool) error {
	clockArg := s.clockArg()
	execs := make([]rueidis.LuaExec, len(owners))
	for o, idx := range owners {
		execs[o] = s.bloomExec(items, idx, clockArg)
	}
	var stale []string
	for o, r := range execAll(ctx, client, bloomScript, execs) {
		out, err := r.AsIntSlice()
		if isStale(err) {
			stale = append(stale, items[owners[o][0]].Campaign)
			continue
		}
		if err != nil {
			return s.fail("track", err)
		}
		if len(out) != len(owners[o])+1 {
			return s.fail("track", fmt.Errorf("bloom script answered %d values for %d items", len(out), len(owners[o])))
		}
		for k, i := range owners[o] {
			counted[i] = out[k] == 1
		}
		s.poolFull.Add(uint64(out[len(out)-1]))
	}
	return staleErr(stale)
}

// trackExact makes the exactScript calls of owners in one pipeline, and
// again those whose guess of the slice was wrong.
func (s *Store) trackExact(ctx context.Context, client rueidis.Client, items []Item, owners [][]int, counted []bool) error {
	clockArg, e := s.guess()
	var stale []string
	pending := make([]int, len(owners)) // calls still to make, and their slices
	epochs := make([]int64, len(owners))
	for i := range owners {
		pending[i], epochs[i] = i, e
	}
	for try := 1; len(pending) > 0; try++ {
		execs := make([]rueidis.LuaExec, len(pending))
		for j, o := range pending {
			execs[j] = s.exactExec(items, owners[o], clockArg, epochs[o])
		}
		missed := pending[:0]
		for j, r := range execAll(ctx, client, exactScript, execs) {
			o := pending[j]
			out, err := r.AsIntSlice()
			if isStale(err) {
				stale = append(stale, items[owners[o][0]].Campaign)
				continue
			}
			if miss, ok := asEpochMiss(err); ok {
				if epochs[o], err = s.retryEpoch(miss, try); err != nil {
					return s.fail("track", err)
				}
				missed = append(missed, o)
				continue
			}
			if err != nil {
				return s.fail("track", err)
			}
			for k, i := range owners[o] {
				counted[i] = k < len(out) && out[k] == 1
			}
		}
		pending = missed
	}
	return staleErr(stale)
}

// staleErr is the answer of a batch whose calls of the campaigns refs
// were refused as stale; nil if none were.
func staleErr(refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	return &StaleError{Refs: refs}
}

// minuteKeys returns the keys the counts of the items idx of campaign tag
// t go to: the total, the minute keys, the duplicates' total and their
// minute keys, then the hour key and the day key of each minute (in the
// same order); each item's index among the minute keys; and the minutes
// of the minute keys.
func minuteKeys(items []Item, idx []int, t string) (keys []string, itemMinute []int, minutes []int64) {
	keys = []string{t + "total"}
	minuteIdx := map[int64]int{}
	itemMinute = make([]int, len(idx))
	for j, i := range idx {
		m := items[i].Minute
		mi, ok := minuteIdx[m]
		if !ok {
			mi = len(minuteIdx)
			minuteIdx[m] = mi
			minutes = append(minutes, m)
			keys = append(keys, t+"m:"+strconv.FormatInt(m, 10))
		}
		itemMinute[j] = mi
	}
	keys = append(keys, t+"dtotal")
	for _, m := range minutes {
		keys = append(keys, t+"d:"+strconv.FormatInt(m, 10))
	}
	for _, m := range minutes {
		h, _ := hourDayKeys(t, m)
		keys = append(keys, h)
	}
	for _, m := range minutes {
		_, d := hourDayKeys(t, m)
		keys = append(keys, d)
	}
	return keys, itemMinute, minutes
}

// hourDayKeys returns the keys of the Unix hour and day of minute m of
// campaign tag t.
func hourDayKeys(t string, m int64) (hour, day string) {
	return t + "h:" + strconv.FormatInt(floorDiv(m, 60), 10), t + "day:" + strconv.FormatInt(floorDiv(m, 1440), 10)
}

// exactExec builds one exactScript call for the items idx of one campaign,
// for slice e.
func (s *Store) exactExec(items []Item, idx []int, clockArg string, e int64) rueidis.LuaExec {
	id, t, want := parseRef(items[idx[0]].Campaign)
	keys, itemMinute, minutes := minuteKeys(items, idx, t)
	keys = s.appendGenerations(keys, t, e)
	args := append(s.clockArgv(nil, clockArg, e), minuteTTLArg, strconv.Itoa(len(minutes)))
	los := make([]uint64, len(idx))
	for j, i := range idx {
		args = append(args, strconv.Itoa(itemMinute[j]), string(items[i].User))
		los[j] = s.pairLo(id, items[i].User)
	}
	keys, args = appendFreq(keys, args, t, los)
	keys, args = s.appendAds(keys, args, t, minutes, itemAds(items, idx))
	keys, args = appendReach(keys, args, t, minutes, items[idx[0]].Arrival)
	return rueidis.LuaExec{Keys: append(keys, defKey(id)), Args: append(args, want)}
}

// itemAds yields the ad ids of the items idx, numbered in call order.
func itemAds(items []Item, idx []int) func(yield func(int, []byte)) {
	return func(yield func(int, []byte)) {
		for j, i := range idx {
			yield(j, items[i].Ad)
		}
	}
}
