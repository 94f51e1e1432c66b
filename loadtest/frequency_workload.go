package main

import (
	"strconv"
)

// freqWorkload derives the frequency workload from a seed: which pairs
// the warm-up exposes and how often, which user each request asks about,
// and the ids of each user's request in their shuffled order. Request
// bodies are built once, one per user, so sending costs a lookup. It is
// read-only after construction and safe for concurrent use.
type freqWorkload struct {
	seed      uint64
	campaigns []string // ids of created campaigns
	unknown   []string // ids never created
	users     int
	caps      []freqCap

	// order[u] lists the ids of user u's request: i < len(campaigns) is
	// campaign i, any other i is unknown[i-len(campaigns)].
	order  [][]int32
	bodies [][]byte // bodies[u] is the JSON of user u's request
	// planned[u·len(campaigns)+c] is how many impressions the warm-up
	// tracks of campaign c for user u.
	planned      []uint8
	warmup       []uint32 // the warm-up's impressions, as pair indexes
	exposedPairs int
	maxBody      int
}

// freqMaxExposures is the most impressions the warm-up tracks of a pair.
const freqMaxExposures = 5

// Salts keep the draws of the warm-up, the users and the shuffles apart.
const (
	saltWarmup  = 0x5741524d // "WARM"
	saltUser    = 0x55534552 // "USER"
	saltShuffle = 0x53485546 // "SHUF"
)

func newFreqWorkload(seed uint64, campaigns, unknown []string, users, candidates int, exposed float64, caps []freqCap) *freqWorkload {
	w := &freqWorkload{seed: seed, campaigns: campaigns, unknown: unknown, users: users, caps: caps}
	w.planWarmup(exposed)
	w.order = make([][]int32, users)
	w.bodies = make([][]byte, users)
	for u := range w.order {
		w.order[u] = w.shuffle(u, candidates)
		w.bodies[u] = w.appendRequest(nil, u)
		w.maxBody = max(w.maxBody, len(w.bodies[u]))
	}
	return w
}

// planWarmup draws each pair's exposures: with probability exposed, 1 to
// freqMaxExposures impressions, uniformly. The warm-up sends the first
// impression of every exposed pair, then the second of those with two or
// more, and so on, so that a pair's impressions are spread over the
// warm-up rather than all in flight at once.
func (w *freqWorkload) planWarmup(exposed float64) {
	cut := uint64(0)
	switch {
	case exposed >= 1:
		cut = ^uint64(0)
	case exposed > 0:
		cut = uint64(exposed * (1 << 63) * 2)
	}
	w.planned = make([]uint8, w.users*len(w.campaigns))
	for p := range w.planned {
		r := mix(w.seed ^ mix(uint64(p)^saltWarmup<<32))
		if r < cut || cut == ^uint64(0) {
			w.planned[p] = uint8(1 + mix(r)%freqMaxExposures)
			w.exposedPairs++
		}
	}
	for round := uint8(1); round <= freqMaxExposures; round++ {
		for p, k := range w.planned {
			if k >= round {
				w.warmup = append(w.warmup, uint32(p))
			}
		}
	}
}

// userOf is the user request n asks about.
func (w *freqWorkload) userOf(n uint64) int {
	return int(mix(w.seed^mix(n^saltUser<<32)) % uint64(w.users))
}

// shuffle returns user u's ids: a Fisher-Yates shuffle of every campaign
// and unknown id drawn from (seed, u), of which the first candidates
// campaigns and every unknown id are kept, in their shuffled order.
func (w *freqWorkload) shuffle(u, candidates int) []int32 {
	all := make([]int32, len(w.campaigns)+len(w.unknown))
	for i := range all {
		all[i] = int32(i)
	}
	r := mix(w.seed ^ mix(uint64(u)^saltShuffle<<32))
	for i := len(all) - 1; i > 0; i-- {
		r = mix(r)
		j := int(r % uint64(i+1))
		all[i], all[j] = all[j], all[i]
	}
	kept := all[:0]
	known := 0
	for _, i := range all {
		if int(i) < len(w.campaigns) {
			if known == candidates {
				continue
			}
			known++
		}
		kept = append(kept, i)
	}
	return kept
}

// id is the campaign id at position i of an order.
func (w *freqWorkload) id(i int32) string {
	if int(i) < len(w.campaigns) {
		return w.campaigns[i]
	}
	return w.unknown[int(i)-len(w.campaigns)]
}

// idsPerRequest is how many ids every request carries.
func (w *freqWorkload) idsPerRequest() int {
	if len(w.order) == 0 {
		return 0
	}
	return len(w.order[0])
}

// appendRequest appends the JSON of user u's frequency request.
func (w *freqWorkload) appendRequest(dst []byte, u int) []byte {
	dst = append(dst, `{"user_id":"u`...)
	dst = strconv.AppendInt(dst, int64(u), 10)
	dst = append(dst, `","campaign_ids":[`...)
	for k, i := range w.order[u] {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, w.id(i)...)
		dst = append(dst, '"')
	}
	return append(dst, "]}"...)
}

// appendImpression appends the JSON of an impression of pair p, without a
// timestamp: the server counts it at receipt, inside every window.
func (w *freqWorkload) appendImpression(dst []byte, p uint32) []byte {
	c, u := int(p)%len(w.campaigns), int(p)/len(w.campaigns)
	dst = append(dst, `{"campaign_id":"`...)
	dst = append(dst, w.campaigns[c]...)
	dst = append(dst, `","user_id":"u`...)
	dst = strconv.AppendInt(dst, int64(u), 10)
	return append(dst, `"}`...)
}
