package redisstore

import (
	"strconv"

	"github.com/redis/rueidis"
)

// # Per-ad counts
//
// Every track script also counts each counted item that has an ad id by
// that id, in the campaign's hash slot (under its generation's tag t):
//
//	t ads        hash: ad id → counted impressions, all time; field ""
//	             holds the ids beyond the campaign's limit ("other")
//	t am:<m>     hash: the same for event minute m, kept as long as the
//	             minute counters
//
// An id is a row if it already is one or the campaign has fewer than the
// limit (SetMaxAds); later new ids count in "". An item is counted by ad
// in the same script call, and for the same event minute, as by campaign,
// so the rows never add up to more than the campaign's counts.

// adsLua takes the per-ad keys and arguments off the end of KEYS and ARGV
// (after reachLua took its own): KEYS the ads hash, then nm minute hashes,
// one per minute key of the call; ARGV na pairs of an item's number
// (1-based) and its ad id, na, then the limit and the minute hashes' TTL in
// s. adCount(i, mi) counts item i, of minute key index mi (0-based), if it
// has an ad id.
var adsLua = `
local attl = table.remove(ARGV)
local amax = tonumber(table.remove(ARGV))
local aby = {}
for i = tonumber(table.remove(ARGV)), 1, -1 do
  local ad = table.remove(ARGV)
  aby[tonumber(table.remove(ARGV))] = ad
end
local amk = {}
for i = rnm, 1, -1 do amk[i] = table.remove(KEYS) end
local atk = table.remove(KEYS)
local function adCount(i, mi)
  local f = aby[i]
  if not f then return end
  if redis.call('HEXISTS', atk, f) == 0 and redis.call('HLEN', atk) - redis.call('HEXISTS', atk, '') >= amax then
    f = ''
  end
  redis.call('HINCRBY', atk, f, 1)
  if redis.call('HINCRBY', amk[mi + 1], f, 1) == 1 then redis.call('EXPIRE', amk[mi + 1], attl) end
end
`

// SetMaxAds sets the ad ids each campaign counts by (see Ads): the
// tracker's Options.MaxAdsPerCampaign. Set it before the first Track.
func (s *Store) SetMaxAds(n int) { s.maxAds = strconv.Itoa(n) }

// appendAds appends to keys and args, which must end just before the
// reach keys and arguments (see appendReach), the per-ad keys and
// arguments of a call of campaign tag t whose minute keys are those of
// minutes; ads are the call's items' ad ids, in call order (nil or empty
// for none).
func (s *Store) appendAds(keys, args []string, t string, minutes []int64, ads func(yield func(i int, ad []byte))) ([]string, []string) {
	keys = append(keys, t+"ads")
	for _, m := range minutes {
		keys = append(keys, t+"am:"+strconv.FormatInt(m, 10))
	}
	na := 0
	ads(func(i int, ad []byte) {
		if len(ad) > 0 {
			args = append(args, strconv.Itoa(i+1), string(ad))
			na++
		}
	})
	return keys, append(args, strconv.Itoa(na), s.maxAds, minuteTTLArg)
}

// AdWindow is one ad id's counted impressions in the n minutes ending
// with a minute, in the last hour of them, and in total.
type AdWindow struct {
	LastHour, LastDay, Total uint64
}

// Ads returns the counted impressions by ad id of campaign ref (see Ref)
// in the windows of the day minutes ending with minute now, and those of
// the ids beyond the limit (Other), in one pipelined read.
func (s *Store) Ads(ref string, now int64, day int) (ads map[string]AdWindow, other AdWindow, err error) {
	_, t, _ := parseRef(ref)
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return nil, AdWindow{}, s.fail("read ads", err)
	}
	cmds := make([]rueidis.Completed, 0, day+1)
	cmds = append(cmds, c.B().Hgetall().Key(t+"ads").Build())
	for m := now - int64(day) + 1; m <= now; m++ {
		cmds = append(cmds, c.B().Hgetall().Key(t+"am:"+strconv.FormatInt(m, 10)).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	ads = map[string]AdWindow{}
	for i, r := range res {
		h, err := r.AsIntMap()
		if err != nil {
			return nil, AdWindow{}, s.fail("read ads", err)
		}
		hour := i > day-60
		for f, v := range h {
			w := ads[f]
			switch {
			case i == 0:
				w.Total += uint64(v)
			case hour:
				w.LastHour += uint64(v)
				fallthrough
			default:
				w.LastDay += uint64(v)
			}
			ads[f] = w
		}
	}
	other = ads[""]
	delete(ads, "")
	return ads, other, nil
}
