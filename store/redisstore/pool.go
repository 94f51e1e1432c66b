package redisstore

import (
	"strconv"

	"github.com/redis/rueidis"

	"github.com/impressiond/impressiond/sketch"
)

// Bloom mode keeps each campaign's window as a pool of at most P
// sub-filters (sketch.UnblockedPool): fixed slot keys imp:{id}:bp:<i>, one
// unblocked bitmap each, and one hash imp:{id}:bpm of their metadata:
//
//	f<i>  t_first: the shared clock (Unix µs) of the sub-filter's first pair
//	l<i>  t_last: that of its last pair
//	n<i>  the pairs it holds
//	o     the open sub-filter, the one fresh pairs go to
//	x     pairs added to a full pool (see below), while the hash lives
//
// For a fresh pair at shared time now, the script first frees every
// sub-filter with t_last + TTL ≤ now (its key deleted, its fields
// removed), then adds the pair to the open sub-filter if it holds fewer
// than Load pairs and now < t_first + TTL/K; otherwise it opens a new one
// in a free slot, created at its full size, with t_first = t_last = now. A
// lookup probes every live sub-filter, the open one first. So:
//
//   - a pair is blocked at least until its sub-filter's t_last + TTL, at
//     least a TTL after it was counted;
//   - t_last < t_first + TTL/K, so a pair counted at t ≥ t_first is freed
//     by t + TTL + TTL/K;
//   - if no TTL-long interval holds more than Capacity pairs, at most
//     Capacity/Load + 1 live sub-filters are full and at most P are live,
//     which keeps the false-positive rate at most FalsePositiveRate under
//     any arrival pattern (see sketch.Pool).
//
// Past that assumption no slot may be free: the open sub-filter then keeps
// taking pairs, past Load and past its slice. Its false-positive rate
// rises and its pairs stay blocked until its t_last + TTL, which may be
// more than TTL + TTL/K after they were counted; memory stays at P
// sub-filters and no pair is ever counted twice. Each such pair is counted
// in the hash's x field and in PoolFull.
//
// Every key has a relative expiry, so an idle campaign leaves nothing: a
// sub-filter expires at its t_last + TTL, the hash TTL + TTL/K after the
// last write, after all its sub-filters. The slot keys do not depend on
// the time, so unlike exact mode the scripts need no guess of the slice
// (no EPOCH answer): they read the shared clock and go.

// poolLua is the Lua the bloom scripts share. A pool p is loaded from
// KEYS[mk] and the slot keys KEYS[s0 + i], i in 0..P−1.
const poolLua = sharedClockLua + `
local function int(x) return string.format('%d', x) end
local function ms(us) return int(math.ceil(us / 1000)) end

local function loadPool(mk, s0, ttl, now)
  local p = {mk = KEYS[mk], s0 = s0, slots = #KEYS - s0 + 1, f = {}, l = {}, n = {}, full = 0, touched = {}}
  local h = redis.call('HGETALL', p.mk)
  for x = 1, #h, 2 do
    local name, v = h[x], tonumber(h[x + 1])
    local c, i = string.sub(name, 1, 1), tonumber(string.sub(name, 2))
    if c == 'o' then p.open = v
    elseif c == 'f' then p.f[i] = v
    elseif c == 'l' then p.l[i] = v
    elseif c == 'n' then p.n[i] = v end
  end
  for i, t in pairs(p.l) do
    if t + ttl <= now then
      redis.call('DEL', KEYS[s0 + i])
      redis.call('HDEL', p.mk, 'f' .. i, 'l' .. i, 'n' .. i)
      p.f[i], p.l[i], p.n[i] = nil, nil, nil
    end
  end
  if p.open and not p.l[p.open] then
    p.open = nil
    redis.call('HDEL', p.mk, 'o')
  end
  p.order = {p.open}
  for i in pairs(p.l) do
    if i ~= p.open then p.order[#p.order + 1] = i end
  end
  return p
end

local function target(p, now, ttl, slice, load, bytes)
  local o = p.open
  if o and p.n[o] < load and now < p.f[o] + slice then return o end
  for i = 0, p.slots - 1 do
    if not p.l[i] then
      redis.call('SET', KEYS[p.s0 + i], string.rep('\0', bytes), 'PX', ms(ttl))
      p.f[i], p.l[i], p.n[i], p.open = now, now, 0, i
      table.insert(p.order, 1, i)
      return i
    end
  end
  if not o then error('BUG: every sub-filter live and none open') end
  p.full = p.full + 1
  return o
end

local function added(p, i, now)
  p.n[i] = p.n[i] + 1
  if now > p.l[i] then p.l[i] = now end
  p.touched[i] = true
end

local function savePool(p, now, ttl, slice)
  local args = {'o', int(p.open)}
  for i in pairs(p.touched) do
    args[#args + 1] = 'f' .. i
    args[#args + 1] = int(p.f[i])
    args[#args + 1] = 'l' .. i
    args[#args + 1] = int(p.l[i])
    args[#args + 1] = 'n' .. i
    args[#args + 1] = int(p.n[i])
    redis.call('PEXPIRE', KEYS[p.s0 + i], ms(p.l[i] + ttl - now))
  end
  redis.call('HSET', p.mk, unpack(args))
  if p.full > 0 then redis.call('HINCRBY', p.mk, 'x', int(p.full)) end
  redis.call('PEXPIRE', p.mk, ms(ttl + slice))
end
`

// bloomOneScript dedups and counts one item of a campaign against its pool
// (see above): the single-impression path, where the script's own overhead
// is most of the cost. KEYS: the total, the minute key, the duplicates'
// total and minute key, the hour and day keys, the pool's hash, its P
// slot keys. ARGV: the shared
// clock (or empty for Redis's TIME), the clock offset in µs, TTL and TTL/K
// in µs, Load, a sub-filter's bytes, the minute keys' TTL in s, then the
// arguments of the BITFIELD that sets the item's k positions ("SET", "u1",
// position, "1", ...): the script passes them through as they are, and
// reads the positions off every fourth. It returns 0 for a repeat (counted
// as a duplicate), 1 for a counted pair, 2 for a counted pair added to a
// full pool.
// Every user, counted or not, is added to the campaign's reach (the keys
// and arguments of reachLua, after the ones above), and the item is an
// exposure of its pair (freqLua's, before reachLua's).
//
// A sub-filter is created at its full size with SET, not grown by its
// first SETBIT: Redis grows a string to twice what it needs below 1 MB,
// which would double the memory of every filter.
var bloomOneScript = rueidis.NewLuaScript(checkLua + reachLua + adsLua + freqLua + poolLua + countsLua + `
local ttl, slice = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = sharedClock(ARGV[1], ARGV[2])
reach(rby)
expose(now)
local p = loadPool(7, 8, ttl, now)
for _, i in ipairs(p.order) do
  local key, all = KEYS[8 + i], true
  for j = 10, #ARGV, 4 do
    if redis.call('GETBIT', key, ARGV[j]) == 0 then all = false; break end
  end
  if all then
    if redis.call('INCR', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[7]) end
    redis.call('INCR', KEYS[3])
    return 0
  end
end
local o = target(p, now, ttl, slice, tonumber(ARGV[5]), tonumber(ARGV[6]))
redis.call('BITFIELD', KEYS[8 + o], unpack(ARGV, 8))
added(p, o, now)
savePool(p, now, ttl, slice)
counts(KEYS[2], KEYS[5], KEYS[6], 1, ARGV[7])
adCount(1, 0)
redis.call('INCR', KEYS[1])
return 1 + p.full`)

// bloomScript dedups and counts the items of one campaign against its
// pool, in order, all at one arrival time: a pair repeated within the call
// is a repeat. KEYS: the total, nm minute keys, the duplicates' total and
// nm minute keys, the nm hour and nm day keys of the minutes, the pool's
// hash, its P slot keys. ARGV: as
// bloomOneScript's first seven, then nm, k, then per item its minute key
// index and its k bit positions. Each sub-filter is probed bit by bit and
// given up at its first clear bit, so a new pair costs about two GETBITs
// per live sub-filter. It returns 1 for each counted item, 0 for each
// repeat (counted as a duplicate of its minute), then the number of pairs
// added to a full pool.
// Every user, counted or not, is added to the campaign's reach (the keys
// and arguments of reachLua, after the ones above), and every item is an
// exposure of its pair (freqLua's, before reachLua's).
var bloomScript = rueidis.NewLuaScript(checkLua + reachLua + adsLua + freqLua + poolLua + countsLua + `
local ttl, slice, load, bytes = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local nm, k = tonumber(ARGV[8]), tonumber(ARGV[9])
local now = sharedClock(ARGV[1], ARGV[2])
local s0 = 4 + 4 * nm
local p = loadPool(3 + 4 * nm, s0, ttl, now)
local out, per, counted, dper, dups = {}, {}, 0, {}, 0
local i, a = 0, 10
while a <= #ARGV do
  i = i + 1
  local seen = false
  for _, g in ipairs(p.order) do
    local key, all = KEYS[s0 + g], true
    for j = 1, k do
      if redis.call('GETBIT', key, ARGV[a + j]) == 0 then all = false; break end
    end
    if all then seen = true; break end
  end
  if seen then
    out[i] = 0
    local dk = 3 + nm + tonumber(ARGV[a])
    dper[dk] = (dper[dk] or 0) + 1
    dups = dups + 1
  else
    local o = target(p, now, ttl, slice, load, bytes)
    local key = KEYS[s0 + o]
    for j = 1, k do redis.call('SETBIT', key, ARGV[a + j], 1) end
    added(p, o, now)
    local mi = tonumber(ARGV[a])
    per[mi] = (per[mi] or 0) + 1
    counted = counted + 1
    out[i] = 1
    adCount(i, mi)
  end
  a = a + 1 + k
end
if counted > 0 then
  savePool(p, now, ttl, slice)
  redis.call('INCRBY', KEYS[1], counted)
end
for mi, n in pairs(per) do
  counts(KEYS[2 + mi], KEYS[3 + 2 * nm + mi], KEYS[3 + 3 * nm + mi], n, ARGV[7])
end
if dups > 0 then redis.call('INCRBY', KEYS[2 + nm], dups) end
for dk, n in pairs(dper) do
  redis.call('INCRBY', KEYS[dk], n)
  redis.call('EXPIRE', KEYS[dk], ARGV[7])
end
reach(rby)
expose(now)
out[i + 1] = p.full
return out`)

// poolArgs are bloomOneScript's ARGV[2..7], which never change: the clock
// offset, TTL and slice in µs, Load, a sub-filter's bytes and the minute
// keys' TTL.
func (s *Store) poolArgs(args []string, clockArg string) []string {
	return append(append(args, clockArg), s.poolArgv[:]...)
}

// appendPool appends the keys of campaign tag t's pool: its hash, then its
// P slot keys.
func (s *Store) appendPool(keys []string, t string) []string {
	keys = append(keys, t+"bpm")
	for _, k := range s.slotKeys {
		keys = append(keys, t+k)
	}
	return keys
}

// initPool sizes the pool for Options d and builds the arguments that
// never change.
func (s *Store) initPool(d sketch.Options, ttl int64) error {
	p, err := sketch.UnblockedPool(d)
	if err != nil {
		return err
	}
	s.pool = p
	s.slotKeys = make([]string, p.Slots)
	for i := range s.slotKeys {
		s.slotKeys[i] = "bp:" + strconv.Itoa(i)
	}
	s.poolArgv = [6]string{s.offsetArg, strconv.FormatInt(ttl, 10), s.sliceArg,
		strconv.Itoa(p.Load), strconv.Itoa(int(p.Bits+7) / 8), minuteTTLArg}
	return nil
}

// clockArg is the shared-clock argument of a bloom script: the injected
// Options.Clock in Unix µs, or empty for Redis's TIME.
func (s *Store) clockArg() string {
	if s.clock != nil {
		return strconv.FormatInt(s.clock().UnixMicro(), 10)
	}
	return ""
}

// trackBloomOne is trackOne in bloom mode: one script call, never retried
// for the clock.
func (s *Store) trackBloomOne(c rueidis.Client, it *Item) (bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	id, t, want := parseRef(it.Campaign)
	var keyBuf [9 + maxPoolSlots]string
	var argBuf [10 + 4*64]string
	minute := strconv.FormatInt(it.Minute, 10)
	hour, day := hourDayKeys(t, it.Minute)
	keys := s.appendPool(append(keyBuf[:0], t+"total", t+"m:"+minute, t+"dtotal", t+"d:"+minute, hour, day), t)
	args := s.poolArgs(argBuf[:0], s.clockArg())
	var pos [64]uint64
	key := s.keys().Key([]byte(id), it.User)
	sketch.Positions(key, s.pool.Bits, pos[:s.pool.Hashes])
	for _, p := range pos[:s.pool.Hashes] {
		args = append(args, "SET", "u1", strconv.FormatUint(p, 10), "1")
	}
	los := [1]uint64{key.Lo}
	keys, args = appendFreq(keys, args, t, los[:])
	keys, args = s.appendAds(keys, args, t, []int64{it.Minute}, func(yield func(int, []byte)) { yield(0, it.Ad) })
	keys, args = appendReach(keys, args, t, []int64{it.Minute}, it.Arrival, "0", string(it.User))
	keys, args = append(keys, defKey(id)), append(args, want)
	n, err := bloomOneScript.Exec(ctx, c, keys, args).AsInt64()
	if isStale(err) {
		return false, &StaleError{Refs: []string{it.Campaign}}
	}
	if err != nil {
		return false, s.fail("track", err)
	}
	if n == 2 {
		s.poolFull.Add(1)
	}
	return n >= 1, nil
}

// maxPoolSlots bounds the stack buffer of trackBloomOne's keys (the
// defaults have 17 slots); more spill to the heap, correctly.
const maxPoolSlots = 32

// bloomExec builds one bloomScript call for the items idx of one campaign.
func (s *Store) bloomExec(items []Item, idx []int, clockArg string) rueidis.LuaExec {
	c, t, want := parseRef(items[idx[0]].Campaign)
	keys, itemMinute, minutes := minuteKeys(items, idx, t)
	keys = s.appendPool(keys, t)
	args := append(s.poolArgs(nil, clockArg), strconv.Itoa(len(minutes)), strconv.Itoa(int(s.pool.Hashes)))
	var pos [64]uint64
	pairs := make([]string, 0, 2*len(idx))
	los := make([]uint64, len(idx))
	for j, i := range idx {
		mi := strconv.Itoa(itemMinute[j])
		pairs = append(pairs, mi, string(items[i].User))
		args = append(args, mi)
		key := s.keys().Key([]byte(c), items[i].User)
		los[j] = key.Lo
		sketch.Positions(key, s.pool.Bits, pos[:s.pool.Hashes])
		for _, p := range pos[:s.pool.Hashes] {
			args = append(args, strconv.FormatUint(p, 10))
		}
	}
	keys, args = appendFreq(keys, args, t, los)
	keys, args = s.appendAds(keys, args, t, minutes, itemAds(items, idx))
	keys, args = appendReach(keys, args, t, minutes, items[idx[0]].Arrival, pairs...)
	return rueidis.LuaExec{Keys: append(keys, defKey(c)), Args: append(args, want)}
}

// PoolFull returns how many pairs this instance's calls added to a full
// pool (every sub-filter live): more than Capacity distinct pairs of a
// campaign within a TTL. Those pairs are counted, but the false-positive
// rate of their campaign rises above FalsePositiveRate while it lasts.
func (s *Store) PoolFull() uint64 { return s.poolFull.Load() }
