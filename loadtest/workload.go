package main

import (
	"strconv"
	"time"
)

// workload derives every impression of an attack from a seed and the
// impression's index, so nothing needs to be remembered while sending: the
// ground truth is rebuilt afterwards from the indexes of the requests that
// succeeded. It is read-only after construction and safe for concurrent
// use.
type workload struct {
	seed      uint64
	campaigns []string      // campaign ids, created before the attack
	users     uint64        // distinct users
	dupCut    uint64        // an item repeats an earlier one when its draw is below dupCut
	start     time.Time     // timestamps fall in (start-spread, start]
	spread    time.Duration // 0: send no timestamp, the server uses the time of receipt
	stamps    []string      // stamps[k] formats start-k seconds, when spread is small enough
}

// maxStamps bounds the cache of formatted timestamps (a 24-hour spread);
// formatting is most of the cost of generating an item.
const maxStamps = 86400

func newWorkload(seed uint64, campaigns []string, users int, dupRatio float64, start time.Time, spread time.Duration) *workload {
	cut := uint64(0)
	switch {
	case dupRatio >= 1:
		cut = ^uint64(0)
	case dupRatio > 0:
		cut = uint64(dupRatio * (1 << 63) * 2)
	}
	w := &workload{seed: seed, campaigns: campaigns, users: uint64(users), dupCut: cut, start: start, spread: spread}
	if n := int(spread / time.Second); n > 0 && n <= maxStamps {
		w.stamps = make([]string, n)
		for k := range w.stamps {
			w.stamps[k] = start.Add(-time.Duration(k) * time.Second).UTC().Format(time.RFC3339)
		}
	}
	return w
}

// mix is the splitmix64 finaliser: a cheap bijection with good avalanche,
// enough to draw independent-looking numbers from (seed, index).
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// pair returns the campaign and user of item j. With probability dupRatio
// an item repeats the pair of an earlier item, drawn uniformly; otherwise
// its own index picks the pair, campaigns round-robin and users in order,
// so fresh items are distinct pairs until campaigns × users are used up.
func (w *workload) pair(j uint64) (c, u int) {
	for {
		r := mix(w.seed ^ mix(j))
		if j == 0 || r >= w.dupCut {
			n := uint64(len(w.campaigns))
			return int(j % n), int(j / n % w.users)
		}
		j = mix(r) % j // an earlier item; its own draw decides again
	}
}

// eventTime is the timestamp every impression of the pair carries, so the
// minute the server counts it in does not depend on which copy came first.
func (w *workload) eventTime(c, u int) time.Time {
	return w.start.Add(-time.Duration(w.ageSeconds(c, u)) * time.Second)
}

// ageSeconds is how many seconds before start the pair's timestamp lies.
func (w *workload) ageSeconds(c, u int) uint64 {
	secs := uint64(w.spread / time.Second)
	if secs == 0 {
		return 0
	}
	return mix(w.seed^mix(uint64(c)<<40^uint64(u))) % secs
}

// appendItem appends the JSON of item j.
func (w *workload) appendItem(dst []byte, j uint64) []byte {
	c, u := w.pair(j)
	dst = append(dst, `{"campaign_id":"`...)
	dst = append(dst, w.campaigns[c]...)
	dst = append(dst, `","user_id":"u`...)
	dst = strconv.AppendInt(dst, int64(u), 10)
	if w.spread > 0 {
		dst = append(dst, `","timestamp":"`...)
		if age := w.ageSeconds(c, u); w.stamps != nil {
			dst = append(dst, w.stamps[age]...)
		} else {
			dst = w.eventTime(c, u).UTC().AppendFormat(dst, time.RFC3339)
		}
	}
	return append(dst, `"}`...)
}

// appendBatch appends the JSON array of items [first, first+n).
func (w *workload) appendBatch(dst []byte, first uint64, n int) []byte {
	dst = append(dst, '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = w.appendItem(dst, first+uint64(i))
	}
	return append(dst, ']')
}
