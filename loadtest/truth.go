package main

import (
	"math/bits"
	"time"
)

// truth is the ground truth of an attack: which (campaign, user) pairs
// reached the server in a request it accepted. The server must count each
// such pair exactly once (in exact mode) and never more than once. It is
// not safe for concurrent use.
type truth struct {
	w    *workload
	seen [][]uint64 // per campaign, one bit per user
}

func newTruth(w *workload) *truth {
	t := &truth{w: w, seen: make([][]uint64, len(w.campaigns))}
	for c := range t.seen {
		t.seen[c] = make([]uint64, (w.users+63)/64)
	}
	return t
}

// deliver records that item j was accepted by the server.
func (t *truth) deliver(j uint64) {
	c, u := t.w.pair(j)
	t.seen[c][u/64] |= 1 << (u % 64)
}

// windows is what the server should report for one campaign.
type windows struct {
	Total, LastDay, LastHour uint64
}

// expected returns the windows of campaign c as the server computes them at
// now: by the event minute of each distinct pair, 60 and 1440 minutes
// ending with now's minute, and everything in the total.
func (t *truth) expected(c int, now time.Time) windows {
	var e windows
	nowMin := unixMinute(now)
	for i, word := range t.seen[c] {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			u := i*64 + b
			age := nowMin - unixMinute(t.w.eventTime(c, u))
			e.Total++
			if age < 1440 {
				e.LastDay++
			}
			if age < 60 {
				e.LastHour++
			}
		}
	}
	return e
}

// distinct returns the number of distinct pairs delivered to campaign c.
func (t *truth) distinct(c int) uint64 {
	n := uint64(0)
	for _, w := range t.seen[c] {
		n += uint64(bits.OnesCount64(w))
	}
	return n
}

func unixMinute(t time.Time) int64 {
	s := t.Unix()
	if s < 0 && s%60 != 0 {
		return s/60 - 1
	}
	return s / 60
}
