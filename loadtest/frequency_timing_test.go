package main

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// BenchmarkFreqCheck measures what checking one answer costs the load
// generator, whose core also runs vegeta's client: at 5,000 answers a
// second, 200 µs an answer is the whole core. "full" parses the answer,
// "repeat" finds it byte-identical to the user's last one that passed.
func BenchmarkFreqCheck(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = "lt1796303506-1-" + strconv.Itoa(i)
		}
		w := newFreqWorkload(1, ids, nil, 100, n, 0.3, freqCaps)
		all := make([]uint64, len(w.warmup))
		for i := range all {
			all[i] = uint64(i)
		}
		chk := newFreqChecker(w, all, freqWarmStart)
		body, err := json.Marshal(truthAnswer(w, chk, 0))
		if err != nil {
			b.Fatal(err)
		}
		r := &vegeta.Result{Code: 200, URL: "http://x/api/v1/frequency?seq=0", Body: body, Timestamp: freqWarmStart.Add(time.Second)}
		for _, repeat := range []bool{false, true} {
			name := strconv.Itoa(n) + "ids/full"
			if repeat {
				name = strconv.Itoa(n) + "ids/repeat"
			}
			b.Run(name, func(b *testing.B) {
				// The body kept is a copy: a slice equals itself at once.
				chk.passed[w.userOf(0)] = freqPassed{}
				chk.check(&vegeta.Result{Code: 200, URL: r.URL, Body: slices.Clone(body), Timestamp: r.Timestamp})
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if !repeat {
						chk.passed[w.userOf(0)] = freqPassed{}
					}
					if !chk.check(r) {
						b.Fatalf("mismatch: %q", chk.samples)
					}
				}
			})
		}
	}
}
