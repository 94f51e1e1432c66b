package redisstore

import (
	"errors"
	"strconv"
	"time"

	"github.com/impressiond/impressiond/sketch"
	"github.com/redis/rueidis"
)

// # Reach
//
// Every track script also records each item's user, counted or not, in
// the campaign's reach keys (under its generation's tag t):
//
//	t rx        sorted set: user id → the last 5-minute bucket of its
//	            events (ZADD GT), while the campaign has fewer than
//	            sketch.ReachExact users: exact reach
//	t re        "1" once it has had sketch.ReachExact users; rx is then
//	            deleted and reach is estimated for good
//	t rt        HyperLogLog of every user (PFADD)
//	t rb:<b>    HyperLogLog of the users of bucket b, expiring when b
//	            leaves the last day's window (by the instance's clock,
//	            the one event times are judged by: an EXPIRE, never an
//	            EXPIREAT by Redis's clock)
//
// The HyperLogLogs are written from the first user, so the switch to
// estimating needs no copy and every key a script touches is declared.
// Redis's HyperLogLog has 2¹⁴ registers: relative standard error 0.81%,
// at most 12 KiB a key (sparse, a few hundred bytes, below about 3,000
// users). The windows are the same as sketch.Reach's: aligned to 5
// minutes, an event older than the last day's first bucket counts in the
// total only, one after now counts at now.

// reachLua takes the reach keys and arguments off the end of KEYS and
// ARGV (after checkLua took the definition's): KEYS rx, re, rt, then nm
// bucket keys, one per minute key of the call; ARGV rn pairs of a minute
// key index (0-based) and a user id, rn, then per minute key its bucket
// and the seconds its bucket key is still read for (≤ 0: the bucket is
// out of the last day, and its users count in the total only), then nm. The pairs are
// the call's users when its own arguments do not carry them (bloom
// scripts carry bit positions); rby holds them by minute key index.
// reach(byMinute) records the users of a table from minute key index to
// user ids.
var reachLua = `
local rnm = tonumber(table.remove(ARGV))
local rbn, rbx, rbk = {}, {}, {}
for i = rnm, 1, -1 do
  rbx[i] = table.remove(ARGV)
  rbn[i] = table.remove(ARGV)
  rbk[i] = table.remove(KEYS)
end
local rtk = table.remove(KEYS)
local rek = table.remove(KEYS)
local rxk = table.remove(KEYS)
local rby = {}
for i = tonumber(table.remove(ARGV)), 1, -1 do
  local u = table.remove(ARGV)
  local mi = tonumber(table.remove(ARGV))
  local us = rby[mi]
  if not us then us = {}; rby[mi] = us end
  us[#us + 1] = u
end
local function reach(byMinute)
  local all, z = {}, {'GT'}
  for mi, us in pairs(byMinute) do
    if tonumber(rbx[mi + 1]) > 0 then
      redis.call('PFADD', rbk[mi + 1], unpack(us))
      redis.call('EXPIRE', rbk[mi + 1], rbx[mi + 1])
    end
    for _, u in ipairs(us) do
      all[#all + 1] = u
      z[#z + 1] = rbn[mi + 1]
      z[#z + 1] = u
    end
  end
  if #all == 0 then return end
  redis.call('PFADD', rtk, unpack(all))
  if redis.call('EXISTS', rek) == 0 then
    redis.call('ZADD', rxk, unpack(z))
    if redis.call('ZCARD', rxk) >= ` + reachExactLua + ` then
      redis.call('SET', rek, '1')
      redis.call('DEL', rxk)
    end
  end
end
`

var reachExactLua = strconv.Itoa(sketch.ReachExact)

const (
	bucketMinutes = int64(sketch.ReachBucket / time.Minute)
	bucketSeconds = int64(sketch.ReachBucket / time.Second)
	// reachKeep is how long after its bucket starts a bucket key is
	// read: the bucket itself, a day, and a minute's slack for the
	// instances' clocks.
	reachKeep = bucketSeconds + 86400 + 60
)

// reachBucket returns the bucket of an event of minute m arriving in
// minute arrival: an event in the future counts at its arrival.
func reachBucket(m, arrival int64) int64 {
	return floorDiv(min(m, arrival), bucketMinutes)
}

// appendReach appends to keys and args, which must end just before the
// definition's key and version (see checkLua), the reach keys and
// arguments of a call of campaign tag t whose minute keys are those of
// minutes, in that order, arriving in minute arrival. pairs are the
// call's users for reachLua's rby, each after its minute key index; nil
// when the script's own arguments carry them.
func appendReach(keys, args []string, t string, minutes []int64, arrival int64, pairs ...string) ([]string, []string) {
	args = append(append(args, pairs...), strconv.Itoa(len(pairs)/2))
	keys = append(keys, t+"rx", t+"re", t+"rt")
	for _, m := range minutes {
		b := reachBucket(m, arrival)
		bs := strconv.FormatInt(b, 10)
		keys = append(keys, t+"rb:"+bs)
		args = append(args, bs, strconv.FormatInt(b*bucketSeconds+reachKeep-arrival*60, 10))
	}
	return keys, append(args, strconv.Itoa(len(minutes)))
}

// reachReadScript reads a campaign's reach. KEYS: rx, re, rt, then the
// bucket keys of the last day, oldest first (the last 13 are the last
// hour's). ARGV: the first buckets of the hour and of the day. It returns
// the last hour, the last day, the total and 1 if estimated.
var reachReadScript = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  local day = redis.call('PFCOUNT', unpack(KEYS, 4))
  local hour = redis.call('PFCOUNT', unpack(KEYS, #KEYS - ` + strconv.Itoa(reachHourBuckets-1) + `))
  return {hour, day, redis.call('PFCOUNT', KEYS[3]), 1}
end
return {redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf'), redis.call('ZCOUNT', KEYS[1], ARGV[2], '+inf'), redis.call('ZCARD', KEYS[1]), 0}`)

// reachHourBuckets is the number of buckets of the last hour's window.
var reachHourBuckets = func() int {
	h, _ := sketch.ReachFrom(0)
	return int(1 - h)
}()

var errShortReply = errors.New("reach script answered too few values")

// Reach returns the reach of campaign ref (see Ref) at minute now: exact
// below sketch.ReachExact users, then Redis's HyperLogLog estimates
// (0.81% relative standard error). Nested windows never cross: the hour
// is at most the day, the day at most the total.
func (s *Store) Reach(ref string, now int64) (sketch.ReachWindow, error) {
	_, t, _ := parseRef(ref)
	nowB := floorDiv(now, bucketMinutes)
	hourFrom, dayFrom := sketch.ReachFrom(nowB)
	keys := make([]string, 0, 3+nowB-dayFrom+1)
	keys = append(keys, t+"rx", t+"re", t+"rt")
	for b := dayFrom; b <= nowB; b++ {
		keys = append(keys, t+"rb:"+strconv.FormatInt(b, 10))
	}
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return sketch.ReachWindow{}, s.fail("read reach", err)
	}
	v, err := reachReadScript.Exec(ctx, c, keys, []string{strconv.FormatInt(hourFrom, 10), strconv.FormatInt(dayFrom, 10)}).AsIntSlice()
	if err == nil && len(v) != 4 {
		err = errShortReply
	}
	if err != nil {
		return sketch.ReachWindow{}, s.fail("read reach", err)
	}
	w := sketch.ReachWindow{Total: uint64(v[2]), Estimated: v[3] == 1}
	w.LastDay = min(uint64(v[1]), w.Total)
	w.LastHour = min(uint64(v[0]), w.LastDay)
	return w, nil
}
