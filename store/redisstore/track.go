package redisstore

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/impressiond/impressiond/sketch"
)

// Item is one impression to dedup and count: its campaign, user and
// event minute. The arrival time is the one passed to Track for all.
type Item struct {
	Campaign string
	User     []byte
	Minute   int64
}

// exactScript dedups and counts the items of one campaign against its
// generations: one Redis set of user ids per slice. KEYS: the total, nm
// minute keys, then the K+1 generation keys, newest first. ARGV: the
// clock arguments (clockPrelude), the minute keys' TTL in s, nm, then per
// item its minute key index (0-based) and its user id. It returns 1 for
// each counted item, 0 for each repeat. Each generation is asked about all
// items at once (SMISMEMBER), the new ones are added with one SADD, and
// counts are added once per minute key: a handful of commands per call,
// not one or two per item.
var exactScript = rueidis.NewLuaScript(clockPrelude + `
local nm = tonumber(ARGV[7])
local g0 = 2 + nm
local n = (#ARGV - 7) / 2
local users = {}
for i = 1, n do users[i] = ARGV[7 + 2 * i] end
local seen = {}
for g = g0, #KEYS do
  local r = redis.call('SMISMEMBER', KEYS[g], unpack(users))
  for i = 1, n do
    if r[i] == 1 then seen[i] = true end
  end
end
local out, add, fresh, per, counted = {}, {}, {}, {}, 0
for i = 1, n do
  local u = users[i]
  if seen[i] or fresh[u] then
    out[i] = 0
  else
    fresh[u] = true
    add[#add + 1] = u
    local mk = 2 + tonumber(ARGV[6 + 2 * i])
    per[mk] = (per[mk] or 0) + 1
    counted = counted + 1
    out[i] = 1
  end
end
if counted > 0 then
  redis.call('SADD', KEYS[g0], unpack(add))
  redis.call('PEXPIRE', KEYS[g0], ttl)
  redis.call('INCRBY', KEYS[1], counted)
end
for mk, c in pairs(per) do
  redis.call('INCRBY', KEYS[mk], c)
  redis.call('EXPIRE', KEYS[mk], ARGV[6])
end
return out`)

// bloomScript dedups and counts the items of one campaign against its
// generations. KEYS: the total, nm minute keys, then the K+1 generation
// keys, newest first. ARGV: the clock arguments (clockPrelude), the minute
// keys' TTL in s, nm, k, a generation's size in bytes, then per item its
// minute key index and its k bit positions. An item is a repeat if every
// position is set in some generation; otherwise its positions are set in
// the newest one. Each generation is probed bit by bit and given up at its
// first clear bit, so a new pair costs about two GETBITs per generation. A
// generation is created at its full size (see bloomOneScript).
var bloomScript = rueidis.NewLuaScript(clockPrelude + `
local nm, k = tonumber(ARGV[7]), tonumber(ARGV[8])
local g0 = 2 + nm
local out, per, counted = {}, {}, 0
local created = false
local i, a = 0, 10
while a <= #ARGV do
  i = i + 1
  local seen = false
  for g = g0, #KEYS do
    local all = true
    for j = 1, k do
      if redis.call('GETBIT', KEYS[g], ARGV[a + j]) == 0 then all = false; break end
    end
    if all then seen = true; break end
  end
  if seen then
    out[i] = 0
  else
    if not created then
      created = true
      if redis.call('EXISTS', KEYS[g0]) == 0 then
        redis.call('SET', KEYS[g0], string.rep('\0', tonumber(ARGV[9])), 'PX', ttl)
      end
    end
    for j = 1, k do redis.call('SETBIT', KEYS[g0], ARGV[a + j], 1) end
    local mk = 2 + tonumber(ARGV[a])
    per[mk] = (per[mk] or 0) + 1
    counted = counted + 1
    out[i] = 1
  end
  a = a + 1 + k
end
if counted > 0 then
  redis.call('PEXPIRE', KEYS[g0], ttl)
  redis.call('INCRBY', KEYS[1], counted)
end
for mk, n in pairs(per) do
  redis.call('INCRBY', KEYS[mk], n)
  redis.call('EXPIRE', KEYS[mk], ARGV[6])
end
return out`)

// exactOneScript is exactScript for one item, without its tables: the
// single-impression path, where the script's own overhead is most of the
// cost. KEYS: the total, the minute key, the K+1 generations newest first.
// ARGV: the clock arguments (clockPrelude), the minute key's TTL in s, the
// user id. A repeat returns at the first generation holding it.
var exactOneScript = rueidis.NewLuaScript(clockPrelude + `
for g = 3, #KEYS do
  if redis.call('SISMEMBER', KEYS[g], ARGV[7]) == 1 then return 0 end
end
redis.call('SADD', KEYS[3], ARGV[7])
redis.call('PEXPIRE', KEYS[3], ttl)
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
redis.call('INCR', KEYS[1])
return 1`)

// bloomOneScript is bloomScript for one item. ARGV: the clock arguments
// (clockPrelude), the minute key's TTL in s, a generation's size in bytes,
// then the arguments of the BITFIELD that sets the item's k positions
// ("SET", "u1", position, "1", ...): the script passes them through as they
// are, and reads the positions off every fourth.
//
// A generation is created at its full size with SET, not grown by its
// first SETBIT: Redis grows a string to twice what it needs below 1 MB,
// which would double the memory of every filter.
var bloomOneScript = rueidis.NewLuaScript(clockPrelude + `
for g = 3, #KEYS do
  local all = true
  for j = 10, #ARGV, 4 do
    if redis.call('GETBIT', KEYS[g], ARGV[j]) == 0 then all = false; break end
  end
  if all then return 0 end
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], string.rep('\0', tonumber(ARGV[7])), 'PX', ttl)
end
redis.call('BITFIELD', KEYS[3], unpack(ARGV, 8))
redis.call('PEXPIRE', KEYS[3], ttl)
if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
redis.call('INCR', KEYS[1])
return 1`)

// trackOne is Track for a single item: one script call, auto-pipelined by
// the client with the calls of concurrent requests, and one more for each
// wrong guess of the shared clock's slice (see clockPrelude).
func (s *Store) trackOne(it *Item) (bool, error) {
	c, err := s.conn()
	if err != nil {
		return false, s.fail("track", err)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	clockArg, e := s.guess()
	t := tag(it.Campaign)
	var keyBuf [3 + maxSlices]string
	var argBuf [clockArgs + 3 + 4*64]string
	for try := 1; ; try++ {
		keys := append(keyBuf[:0], t+"total", t+"m:"+strconv.FormatInt(it.Minute, 10))
		keys = s.appendGenerations(keys, t, e)
		args := append(s.clockArgv(argBuf[:0], clockArg, e), minuteTTLArg)
		script := exactOneScript
		if s.exact {
			args = append(args, string(it.User))
		} else {
			script = bloomOneScript
			args = append(args, s.genBytes)
			var pos [64]uint64
			sketch.Positions(s.keys().Key([]byte(it.Campaign), it.User), s.m, pos[:s.k])
			for _, p := range pos[:s.k] {
				args = append(args, "SET", "u1", strconv.FormatUint(p, 10), "1")
			}
		}
		n, err := script.Exec(ctx, c, keys, args).AsInt64()
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

// appendGenerations appends the keys of the generations of slices e, e-1,
// ..., e-K, newest first.
func (s *Store) appendGenerations(keys []string, t string, e int64) []string {
	gen := t + "bf:"
	if s.exact {
		gen = t + "xs:"
	}
	for g := 0; g <= s.slices; g++ {
		keys = append(keys, gen+strconv.FormatInt(e-int64(g), 10))
	}
	return keys
}

// Track dedups and counts items arriving now, by the shared clock (see
// clockPrelude), setting counted[i] for each item counted. Items of one
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
	script := bloomScript
	if s.exact {
		script = exactScript
	}
	client, err := s.conn()
	if err != nil {
		return s.fail("track", err)
	}
	clockArg, e := s.guess()
	pending := make([]int, len(owners)) // calls still to make, and their slices
	epochs := make([]int64, len(owners))
	for i := range owners {
		pending[i], epochs[i] = i, e
	}
	for try := 1; len(pending) > 0; try++ {
		execs := make([]rueidis.LuaExec, len(pending))
		for j, o := range pending {
			execs[j] = s.exec(items, owners[o], clockArg, epochs[o])
		}
		var results []rueidis.RedisResult
		if len(execs) == 1 {
			results = []rueidis.RedisResult{script.Exec(ctx, client, execs[0].Keys, execs[0].Args)}
		} else {
			results = script.ExecMulti(ctx, client, execs...)
		}
		missed := pending[:0]
		for j, r := range results {
			o := pending[j]
			out, err := r.AsIntSlice()
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
	return nil
}

// exec builds one script call for the items idx of one campaign, for
// slice e.
func (s *Store) exec(items []Item, idx []int, clockArg string, e int64) rueidis.LuaExec {
	c := items[idx[0]].Campaign
	t := tag(c)
	keys := []string{t + "total"}
	minuteIdx := map[int64]int{}
	itemMinute := make([]int, len(idx))
	for j, i := range idx {
		m := items[i].Minute
		mi, ok := minuteIdx[m]
		if !ok {
			mi = len(minuteIdx)
			minuteIdx[m] = mi
			keys = append(keys, t+"m:"+strconv.FormatInt(m, 10))
		}
		itemMinute[j] = mi
	}
	keys = s.appendGenerations(keys, t, e)
	args := append(s.clockArgv(nil, clockArg, e), minuteTTLArg, strconv.Itoa(len(minuteIdx)))
	if s.exact {
		for j, i := range idx {
			args = append(args, strconv.Itoa(itemMinute[j]), string(items[i].User))
		}
		return rueidis.LuaExec{Keys: keys, Args: args}
	}
	args = append(args, strconv.Itoa(int(s.k)), s.genBytes)
	var pos [64]uint64
	for j, i := range idx {
		args = append(args, strconv.Itoa(itemMinute[j]))
		sketch.Positions(s.keys().Key([]byte(c), items[i].User), s.m, pos[:s.k])
		for _, p := range pos[:s.k] {
			args = append(args, strconv.FormatUint(p, 10))
		}
	}
	return rueidis.LuaExec{Keys: keys, Args: args}
}
