package redisstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// The dedup window of a shared store runs on one clock that every instance
// sharing the Redis agrees on: Redis's own, read with TIME inside the
// script that dedups and counts. No instance clock is trusted with it:
//
//   - the slice a pair lands in is numbered by Redis's clock, so instances
//     whose clocks disagree still test and add to the same generations;
//   - a generation's expiry is set with PEXPIRE, relative to Redis's clock,
//     to the moment its slice leaves the window, so no instance can create
//     a key that is already expired or that outlives its slice.
//
// A script must declare its keys (Redis Cluster routes by them), and the
// keys name the slice, so an instance guesses the slice from its own clock
// corrected by the offset to Redis's it last measured (every health check
// reads TIME), and the script checks the guess against TIME. A wrong guess
// changes nothing: the script answers "EPOCH <slice> <now>" before any
// write, and the call is made again for that slice. Guesses go wrong only
// within a round trip of a slice boundary, or right after an instance's
// clock steps; each costs one more round trip, never a wrong answer.
// That is exact mode: bloom mode's keys (the slots of a campaign's pool,
// see pool.go) do not name the slice, so its scripts read the shared
// clock and never answer EPOCH.
//
// Redis's TIME has microsecond resolution, so a slice is a whole number of
// microseconds in this store: TTL/K rounded up, which can lengthen the
// window by at most K microseconds and never shortens it.

// sharedClockLua defines the Lua function sharedClock(clock, offset): the
// shared clock in Unix µs, a double (exact below 2^53 µs, past year
// 2200): clock if it is not empty (Options.Clock), else Redis's TIME,
// plus offset µs (Options.ClockOffset). Every dedup script reads its
// "now" from it.
const sharedClockLua = `
local function sharedClock(clock, offset)
  local now
  if clock ~= '' then
    now = tonumber(clock)
  else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now + tonumber(offset)
end
`

// clockPrelude is the Lua that every exact-mode script starts with. ARGV[1]
// is the shared clock in Unix µs, or empty to read Redis's TIME; ARGV[2]
// the clock offset in µs; ARGV[3] the slice in µs; ARGV[4] the slice the
// caller built its keys for; ARGV[5] K. sliceTTL returns the milliseconds
// the newest generation has left in the window (or nil when the caller's
// guess is wrong), the slice and the clock; the prelude leaves them in
// ttl, epoch and clock, for the script proper.
const clockPrelude = sharedClockLua + `
local function sliceTTL()
  local now = sharedClock(ARGV[1], ARGV[2])
  local s = tonumber(ARGV[3])
  local e = math.floor(now / s)
  if e * s > now then e = e - 1 elseif (e + 1) * s <= now then e = e + 1 end
  if e ~= tonumber(ARGV[4]) then return nil, e, now end
  return math.ceil(((e + tonumber(ARGV[5]) + 1) * s - now) / 1000), e, now
end
local ttl, epoch, clock = sliceTTL()
if not ttl then return redis.error_reply(string.format('EPOCH %d %d', epoch, clock)) end
`

// clockArgs is the number of ARGV entries clockPrelude reads.
const clockArgs = 5

// epochMiss is a script's answer that the keys were built for another
// slice than the shared clock's.
type epochMiss struct {
	epoch int64 // the slice by the shared clock
	now   int64 // the shared clock, Unix µs
}

func (e *epochMiss) Error() string {
	return fmt.Sprintf("dedup slice %d is not the shared clock's %d", e.epoch, e.now)
}

// asEpochMiss reports whether err is a script's EPOCH answer.
func asEpochMiss(err error) (*epochMiss, bool) {
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return nil, false
	}
	f := strings.Fields(re.Error())
	if len(f) != 3 || f[0] != "EPOCH" {
		return nil, false
	}
	e, err1 := strconv.ParseInt(f[1], 10, 64)
	n, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &epochMiss{epoch: e, now: n}, true
}

// errEpochChase is returned when the shared clock's slice kept moving
// between calls, which only a slice shorter than a round trip can cause.
var errEpochChase = errors.New("the dedup slice changed on every try")

// maxEpochTries bounds the calls made for one track.
const maxEpochTries = 3

// guess returns the clock argument for a script (empty for Redis's TIME)
// and the slice the keys are built for. With an injected Options.Clock the
// guess is exact.
func (s *Store) guess() (clockArg string, epoch int64) {
	if s.clock != nil {
		c := s.clock().UnixMicro()
		return strconv.FormatInt(c, 10), floorDiv(c+s.offset, s.sliceUS)
	}
	return "", floorDiv(s.now().UnixMicro()+s.skew.Load()+s.offset, s.sliceUS)
}

// learn records the shared clock's reading now (Unix µs, offset included)
// against the instance clock at local, so the next guesses start from it.
func (s *Store) learn(shared, local int64) {
	s.skew.Store(shared - s.offset - local)
}

// clockArgv returns the clockPrelude arguments for slice e.
func (s *Store) clockArgv(args []string, clockArg string, e int64) []string {
	return append(args, clockArg, s.offsetArg, s.sliceArg, strconv.FormatInt(e, 10), s.slicesArg)
}

// measureSkew reads Redis's TIME and records the offset of the instance
// clock to it (the middle of the round trip is taken as the moment TIME
// was read).
func (s *Store) measureSkew(c rueidis.Client) error {
	ctx, cancel := s.ctx()
	defer cancel()
	t0 := s.now().UnixMicro()
	r, err := c.Do(ctx, c.B().Time().Build()).AsStrSlice()
	t1 := s.now().UnixMicro()
	if err != nil {
		return err
	}
	if len(r) != 2 {
		return fmt.Errorf("TIME answered %q", r)
	}
	sec, err1 := strconv.ParseInt(r[0], 10, 64)
	usec, err2 := strconv.ParseInt(r[1], 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("TIME answered %q", r)
	}
	s.skew.Store(sec*1e6 + usec - (t0+t1)/2)
	return nil
}

// floorDiv is a/b rounded towards minus infinity, for b > 0: slice
// numbers of instants before 1970 are negative, as Redis's Lua floors them.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// sliceMicros is the slice TTL/K rounded up to a whole microsecond, the
// resolution of Redis's TIME: never shorter, so a repeat within the TTL is
// still blocked.
func sliceMicros(ttl time.Duration, k int) int64 {
	ns := int64(ttl) / int64(k)
	if int64(ttl)%int64(k) != 0 {
		ns++
	}
	return (ns + 999) / 1000
}
