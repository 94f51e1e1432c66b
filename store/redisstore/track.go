package redisstore

import (
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

// exactScript dedups and counts the items of one campaign. KEYS: the total,
// nm minute keys, then one pair key per item. ARGV: the pair TTL in ms, the
// minute keys' TTL in s, nm, then each item's minute key index (0-based).
// It returns 1 for each counted item, 0 for each repeat.
var exactScript = rueidis.NewLuaScript(`
local nm = tonumber(ARGV[3])
local out, touched, counted = {}, {}, 0
for i = 1, #KEYS - 1 - nm do
  if redis.call('SET', KEYS[1 + nm + i], '1', 'NX', 'PX', ARGV[1]) then
    local mk = 2 + tonumber(ARGV[3 + i])
    redis.call('INCR', KEYS[mk])
    touched[mk] = true
    counted = counted + 1
    out[i] = 1
  else
    out[i] = 0
  end
end
for mk in pairs(touched) do redis.call('EXPIRE', KEYS[mk], ARGV[2]) end
if counted > 0 then redis.call('INCRBY', KEYS[1], counted) end
return out`)

// bloomScript dedups and counts the items of one campaign against its
// generations. KEYS: the total, nm minute keys, then the K+1 generation
// keys, newest first. ARGV: the newest generation's expiry (Unix ms), the
// minute keys' TTL in s, nm, k, then per item its minute key index and its
// k bit positions. An item is a repeat if every position is set in some
// generation; otherwise its positions are set in the newest one.
var bloomScript = rueidis.NewLuaScript(`
local nm, k = tonumber(ARGV[3]), tonumber(ARGV[4])
local g0 = 2 + nm
local out, touched, counted = {}, {}, 0
local i, a = 0, 5
while a <= #ARGV do
  i = i + 1
  local get = {}
  for j = 1, k do
    get[#get + 1] = 'GET'; get[#get + 1] = 'u1'; get[#get + 1] = ARGV[a + j]
  end
  local seen = false
  for g = g0, #KEYS do
    local bits = redis.call('BITFIELD_RO', KEYS[g], unpack(get))
    local all = true
    for _, b in ipairs(bits) do
      if b == 0 then all = false; break end
    end
    if all then seen = true; break end
  end
  if seen then
    out[i] = 0
  else
    local set = {}
    for j = 1, k do
      set[#set + 1] = 'SET'; set[#set + 1] = 'u1'; set[#set + 1] = ARGV[a + j]; set[#set + 1] = 1
    end
    redis.call('BITFIELD', KEYS[g0], unpack(set))
    local mk = 2 + tonumber(ARGV[a])
    redis.call('INCR', KEYS[mk])
    touched[mk] = true
    counted = counted + 1
    out[i] = 1
  end
  a = a + 1 + k
end
if counted > 0 then
  redis.call('PEXPIREAT', KEYS[g0], ARGV[1])
  redis.call('INCRBY', KEYS[1], counted)
end
for mk in pairs(touched) do redis.call('EXPIRE', KEYS[mk], ARGV[2]) end
return out`)

// Track dedups and counts items arriving at now, setting counted[i] for
// each item counted. Items of one campaign go to Redis as one script call
// per up to 1000 of them, and the calls of all campaigns as one pipeline;
// concurrent single-item Tracks are pipelined by the client. An error
// means some items may have been applied: retrying them is safe.
func (s *Store) Track(items []Item, now time.Time, counted []bool) error {
	if len(items) == 0 {
		return nil
	}
	var execs []rueidis.LuaExec
	var owners [][]int // item indexes of each exec
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
			execs = append(execs, s.exec(c, items, idx[:n], now))
			owners = append(owners, idx[:n])
			idx = idx[n:]
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	script := bloomScript
	if s.exact {
		script = exactScript
	}
	var results []rueidis.RedisResult
	if len(execs) == 1 {
		results = []rueidis.RedisResult{script.Exec(ctx, s.client, execs[0].Keys, execs[0].Args)}
	} else {
		results = script.ExecMulti(ctx, s.client, execs...)
	}
	for e, r := range results {
		out, err := r.AsIntSlice()
		if err != nil {
			return s.fail("track", err)
		}
		for j, i := range owners[e] {
			counted[i] = j < len(out) && out[j] == 1
		}
	}
	return nil
}

// exec builds one script call for the items idx of campaign c.
func (s *Store) exec(c string, items []Item, idx []int, now time.Time) rueidis.LuaExec {
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
	args := []string{"", strconv.Itoa(int(minuteTTL / time.Second)), strconv.Itoa(len(minuteIdx))}
	if s.exact {
		args[0] = strconv.FormatInt(s.ttl.Milliseconds(), 10)
		for j, i := range idx {
			keys = append(keys, t+"x:"+string(items[i].User))
			args = append(args, strconv.Itoa(itemMinute[j]))
		}
		return rueidis.LuaExec{Keys: keys, Args: args}
	}
	// The generations of slices e, e-1, ..., e-K; the newest expires when
	// its slice leaves the window, K slices after it ends.
	e := now.UnixNano() / int64(s.slice)
	for g := 0; g <= s.slices; g++ {
		keys = append(keys, t+"bf:"+strconv.FormatInt(e-int64(g), 10))
	}
	args[0] = strconv.FormatInt((e+int64(s.slices)+1)*int64(s.slice)/int64(time.Millisecond), 10)
	args = append(args, strconv.Itoa(int(s.k)))
	var pos [64]uint64
	for j, i := range idx {
		args = append(args, strconv.Itoa(itemMinute[j]))
		sketch.Positions(sketch.KeyOf([]byte(c), items[i].User), s.m, pos[:s.k])
		for _, p := range pos[:s.k] {
			args = append(args, strconv.FormatUint(p, 10))
		}
	}
	return rueidis.LuaExec{Keys: keys, Args: args}
}
