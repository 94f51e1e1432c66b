package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// # Lifecycle
//
// A campaign can be changed (name, end) and deleted while any number of
// instances cache it. Two records describe it:
//
//	imp:campaigns  field id → "v3 <start> <end> <gen> <ver> <caps> <name>"
//	               (end "-" for none; caps "<max>:<window ns>,...", see
//	               formatMeta), or the same without caps as "v2 <start>
//	               <end> <gen> <ver> <name>"; the list, the limit, and
//	               what instances read
//	imp:{id}:def   "<gen> <ver>": the definition's version, in the
//	               campaign's own hash slot
//
// gen is drawn when the campaign is created (Redis's clock in µs) and
// namespaces its counting keys (imp:{id}:g<gen>:...), so a campaign
// created again under a deleted one's id starts from nothing even before
// the old keys are gone. ver counts the changes of the definition.
// A record of an earlier version ("<start> <name>") is generation 0,
// version 0, with no def key; its keys keep their unprefixed names.
//
// Every track script first compares imp:{id}:def (missing reads "0 0")
// with the version the instance judged the impression by, in the same
// call, and answers STALE without counting on a mismatch. Every change
// writes imp:campaigns first and the def key last, so once a change
// returns, no impression judged by an older definition is counted.
// Deleting first removes the def key (a generation-0 campaign gets the
// tombstone "deleted", which no version equals), then the record, then the
// generation's keys.

// Ref names the counting keys and the definition version of campaign id
// for Item.Campaign and the reads: generation gen, version ver. A plain id
// (an earlier version's campaign, or a caller that does not check
// versions) is generation 0 and its impressions are counted unchecked.
func Ref(id string, gen, ver int64) string {
	return id + "\x00" + strconv.FormatInt(gen, 10) + "\x00" + strconv.FormatInt(ver, 10)
}

// parseRef splits a Ref into its id, key tag and the def value a track
// script must find ("" for none).
func parseRef(ref string) (id, t, want string) {
	id, rest, ok := strings.Cut(ref, "\x00")
	if !ok {
		return ref, "imp:{" + ref + "}:", ""
	}
	gen, ver, _ := strings.Cut(rest, "\x00")
	t = "imp:{" + id + "}:"
	if gen != "0" {
		t += "g" + gen + ":"
	}
	return id, t, gen + " " + ver
}

func defKey(id string) string { return "imp:{" + id + "}:def" }

// checkLua starts every track script: the last key is the campaign's def
// key, the last argument the version the caller judged by ("" to skip the
// check); both are removed before the script proper reads KEYS and ARGV.
const checkLua = `
local defk = table.remove(KEYS)
local want = table.remove(ARGV)
if want ~= '' then
  local cur = redis.call('GET', defk) or '0 0'
  if cur ~= want then return redis.error_reply('STALE') end
end
`

// StaleError reports the campaigns (Refs) whose items Track did not count
// because their definition changed since the caller read it; every other
// item was tracked.
type StaleError struct{ Refs []string }

func (e *StaleError) Error() string {
	return fmt.Sprintf("redisstore: %d campaign definitions changed", len(e.Refs))
}

func isStale(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.Error() == "STALE"
}

// formatMeta is a campaign's record in imp:campaigns: v3 with its caps,
// each "<max>:<window in ns>", joined by commas; v2, the record of the
// version before caps, when it has none, so that instances of that
// version still read every campaign without caps.
func formatMeta(c Campaign) string {
	end := "-"
	if !c.End.IsZero() {
		end = strconv.FormatInt(c.End.UnixNano(), 10)
	}
	head := strconv.FormatInt(c.Start.UnixNano(), 10) + " " + end + " " +
		strconv.FormatInt(c.Gen, 10) + " " + strconv.FormatInt(c.Ver, 10) + " "
	if len(c.Caps) == 0 {
		return "v2 " + head + c.Name
	}
	var caps []byte
	for i, cp := range c.Caps {
		if i > 0 {
			caps = append(caps, ',')
		}
		caps = strconv.AppendUint(caps, cp.Max, 10)
		caps = append(caps, ':')
		caps = strconv.AppendInt(caps, int64(cp.Window), 10)
	}
	return "v3 " + head + string(caps) + " " + c.Name
}

// parseCaps reads the caps of a v3 record.
func parseCaps(v string) ([]Cap, bool) {
	var caps []Cap
	for _, f := range strings.Split(v, ",") {
		m, w, ok := strings.Cut(f, ":")
		max, err1 := strconv.ParseUint(m, 10, 64)
		ns, err2 := strconv.ParseInt(w, 10, 64)
		if !ok || err1 != nil || err2 != nil || max == 0 || ns <= 0 {
			return nil, false
		}
		caps = append(caps, Cap{Max: max, Window: time.Duration(ns)})
	}
	return caps, true
}

func parseMeta(id, v string) (Campaign, error) {
	bad := fmt.Errorf("redisstore: campaign %q: malformed record %q", id, v)
	var f []string // start, end, gen, ver, name
	var caps []Cap
	switch {
	case strings.HasPrefix(v, "v3 "):
		f = strings.SplitN(v[3:], " ", 6)
		ok := len(f) == 6
		if ok {
			caps, ok = parseCaps(f[4])
		}
		if !ok {
			return Campaign{}, bad
		}
		f = append(f[:4], f[5])
	case strings.HasPrefix(v, "v2 "):
		if f = strings.SplitN(v[3:], " ", 5); len(f) != 5 {
			return Campaign{}, bad
		}
	default: // "<start> <name>"
		start, name, ok := strings.Cut(v, " ")
		ns, err := strconv.ParseInt(start, 10, 64)
		if !ok || err != nil {
			return Campaign{}, bad
		}
		return Campaign{ID: id, Name: name, Start: time.Unix(0, ns).UTC()}, nil
	}
	start, err1 := strconv.ParseInt(f[0], 10, 64)
	gen, err2 := strconv.ParseInt(f[2], 10, 64)
	ver, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Campaign{}, bad
	}
	c := Campaign{ID: id, Name: f[4], Start: time.Unix(0, start).UTC(), Gen: gen, Ver: ver, Caps: caps}
	if f[1] != "-" {
		end, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return Campaign{}, bad
		}
		c.End = time.Unix(0, end).UTC()
	}
	return c, nil
}

// claimScript writes the def key of a new generation unless a live
// campaign holds it (0). KEYS: the def key. ARGV: none. It returns the
// generation: Redis's clock in µs, above any generation the key held.
var claimScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= 'deleted' then return 0 end
local t = redis.call('TIME')
local gen = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('SET', KEYS[1], string.format('%d', gen) .. ' 0')
return gen`)

// casScript replaces field ARGV[1] of KEYS[1] by ARGV[3] if it holds
// ARGV[2] (1), or deletes it if ARGV[3] is empty; 0 if it holds something
// else.
var casScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1`)

// raiseScript sets the def key KEYS[1] to generation ARGV[1], version
// ARGV[2], if it holds that generation at a lower version, or is missing
// and the generation is 0 (a campaign of an earlier version that was never
// deleted: deleting leaves "deleted"). It never brings back a deleted
// campaign's key.
var raiseScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
local want = ARGV[1] .. ' ' .. ARGV[2]
if not cur then
  if ARGV[1] ~= '0' then return 0 end
  redis.call('SET', KEYS[1], want)
  return 1
end
local g, v = string.match(cur, '^(%d+) (%d+)$')
if g ~= ARGV[1] or tonumber(v) >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], want)
return 1`)

// dropScript ends generation ARGV[1] of a campaign: its def key is
// deleted, or for generation 0 set to "deleted", unless it holds another
// generation (0).
var dropScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1]) or '0 0'
local g = string.match(cur, '^(%d+) ')
if g ~= ARGV[1] then return 0 end
if g == '0' then redis.call('SET', KEYS[1], 'deleted') else redis.call('DEL', KEYS[1]) end
return 1`)

// CreateCampaign registers c (its Gen and Ver are drawn here) unless its
// id exists (ErrExists) or max campaigns exist (ErrLimit), atomically
// across every server, and returns it as registered.
func (s *Store) CreateCampaign(c Campaign, max int) (Campaign, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	cl, err := s.conn()
	if err != nil {
		return c, s.fail("create campaign", err)
	}
	gen, err := claimScript.Exec(ctx, cl, []string{defKey(c.ID)}, nil).AsInt64()
	switch {
	case err != nil:
		return c, s.fail("create campaign", err)
	case gen == 0:
		return c, ErrExists
	}
	c.Gen, c.Ver = gen, 0
	r, err := createScript.Exec(ctx, cl, []string{campaignsKey}, []string{c.ID, formatMeta(c), strconv.Itoa(max)}).AsInt64()
	if err == nil && r == 1 {
		return c, nil
	}
	// Give the claimed generation back; a campaign of an earlier version
	// under this id has no def key, and must keep having none.
	s.release(ctx, cl, c.ID, gen)
	switch {
	case err != nil:
		return c, s.fail("create campaign", err)
	case r == 0:
		return c, ErrExists
	}
	return c, ErrLimit
}

var releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`)

func (s *Store) release(ctx context.Context, cl rueidis.Client, id string, gen int64) {
	releaseScript.Exec(ctx, cl, []string{defKey(id)}, []string{strconv.FormatInt(gen, 10) + " 0"})
}

// UpdateCampaign applies change to the campaign with the given id and
// returns the result; false if there is none. Concurrent updates of one
// campaign are serialised (compare and set, retried). Once it returns, no
// instance counts an impression judged by the definition before it.
func (s *Store) UpdateCampaign(id string, change func(Campaign) (Campaign, error)) (Campaign, bool, error) {
	for {
		old, raw, ok, err := s.getRaw(id)
		if err != nil || !ok {
			return Campaign{}, ok, err
		}
		c, err := change(old)
		if err != nil {
			return Campaign{}, true, err
		}
		c.ID, c.Gen, c.Ver = id, old.Gen, old.Ver+1
		done, err := s.cas(id, raw, formatMeta(c))
		if err != nil {
			return Campaign{}, false, err
		}
		if !done {
			continue
		}
		if err := s.RaiseVersion(c); err != nil {
			return Campaign{}, false, err
		}
		return c, true, nil
	}
}

// RaiseVersion brings the def key of c's generation up to c's version if it
// is behind (an update that stopped between its two writes). It never
// revives a deleted campaign.
func (s *Store) RaiseVersion(c Campaign) error {
	ctx, cancel := s.ctx()
	defer cancel()
	cl, err := s.conn()
	if err != nil {
		return s.fail("update campaign", err)
	}
	err = raiseScript.Exec(ctx, cl, []string{defKey(c.ID)}, []string{strconv.FormatInt(c.Gen, 10), strconv.FormatInt(c.Ver, 10)}).Error()
	if err != nil {
		return s.fail("update campaign", err)
	}
	return nil
}

func (s *Store) cas(id, old, new string) (bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	cl, err := s.conn()
	if err != nil {
		return false, s.fail("update campaign", err)
	}
	r, err := casScript.Exec(ctx, cl, []string{campaignsKey}, []string{id, old, new}).AsInt64()
	if err != nil {
		return false, s.fail("update campaign", err)
	}
	return r == 1, nil
}

// DeleteCampaign removes the campaign with the given id and its keys,
// reporting false if there is none. Once it returns, no impression of it
// is counted by any instance, and its reads find nothing.
func (s *Store) DeleteCampaign(id string) (bool, error) {
	for {
		c, raw, ok, err := s.getRaw(id)
		if err != nil || !ok {
			return ok, err
		}
		ctx, cancel := s.ctx()
		cl, err := s.conn()
		if err != nil {
			cancel()
			return false, s.fail("delete campaign", err)
		}
		// The def key first: from here on every track script of this
		// generation answers STALE, and the instance finds no campaign.
		err = dropScript.Exec(ctx, cl, []string{defKey(id)}, []string{strconv.FormatInt(c.Gen, 10)}).Error()
		cancel()
		if err != nil {
			return false, s.fail("delete campaign", err)
		}
		done, err := s.cas(id, raw, "")
		if err != nil {
			return false, err
		}
		if !done {
			continue // changed meanwhile: drop what it is now
		}
		return true, s.unlinkGeneration(id, c.Gen)
	}
}

// unlinkGeneration removes the counting keys of generation gen of campaign
// id (not the def key, which belongs to whatever holds the id now). On a
// cluster every key of the id is on one node: SCAN runs on each.
func (s *Store) unlinkGeneration(id string, gen int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := s.conn()
	if err != nil {
		return s.fail("delete campaign", err)
	}
	prefix := "imp:{" + id + "}:"
	if gen != 0 {
		prefix += "g" + strconv.FormatInt(gen, 10) + ":"
	}
	match := globEscape(prefix) + "*"
	for _, node := range cl.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()).AsScanEntry()
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return err
				}
				return s.fail("delete campaign", err)
			}
			var keys []string
			for _, k := range e.Elements {
				rest := strings.TrimPrefix(k, "imp:{"+id+"}:")
				if gen == 0 && (strings.HasPrefix(rest, "g") || rest == "def") {
					continue // a later generation's key, or the def key
				}
				keys = append(keys, k)
			}
			if len(keys) > 0 {
				if err := node.Do(ctx, node.B().Unlink().Key(keys...).Build()).Error(); err != nil {
					return s.fail("delete campaign", err)
				}
			}
			cursor = e.Cursor
			if cursor == 0 {
				break
			}
		}
	}
	return nil
}

// globEscape quotes the glob characters of s for SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// getRaw returns the campaign with the given id and its record as stored.
func (s *Store) getRaw(id string) (Campaign, string, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	c, err := s.conn()
	if err != nil {
		return Campaign{}, "", false, s.fail("get campaign", err)
	}
	v, err := c.Do(ctx, c.B().Hget().Key(campaignsKey).Field(id).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return Campaign{}, "", false, nil
	}
	if err != nil {
		return Campaign{}, "", false, s.fail("get campaign", err)
	}
	camp, err := parseMeta(id, v)
	return camp, v, err == nil, err
}
