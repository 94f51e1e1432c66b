package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// freqReport is the outcome of a frequency attack: performance from
// vegeta, correctness from the checker.
type freqReport struct {
	cfg      *attackConfig
	w        *freqWorkload
	m        summary
	chk      *freqChecker
	warmSent uint64 // warm-up requests vegeta sent
	warmOK   uint64 // of those, answered 200 counted or duplicate
	warmSaid [2]uint64
	warmTook time.Duration
	files    []string
}

func newFreqReport(cfg *attackConfig, w *freqWorkload, warm *attackResult, warmTook time.Duration, res *attackResult, chk *freqChecker) *freqReport {
	return &freqReport{
		cfg:      cfg,
		w:        w,
		m:        summarize(res, chk.answers),
		chk:      chk,
		warmSent: warm.metrics.Requests,
		warmOK:   uint64(len(warm.okSeqs)),
		warmSaid: [2]uint64{warm.counted, warm.dups},
		warmTook: warmTook,
		files:    append(append([]string(nil), warm.files...), res.files...),
	}
}

// summarize is the printed part of a phase's metrics; success is the
// requests that passed.
func summarize(res *attackResult, success uint64) summary {
	m := &res.metrics
	return summary{
		requests:     m.Requests,
		success:      success,
		successRatio: m.Success,
		elapsed:      m.Duration + m.Wait,
		p50:          m.Latencies.P50,
		p90:          m.Latencies.P90,
		p99:          m.Latencies.P99,
		max:          m.Latencies.Max,
		codes:        m.StatusCodes,
		errors:       m.Errors,
	}
}

// print writes the report. The latency line has the same shape as the
// impressions workload's, so scripts read both alike.
func (rep *freqReport) print(out io.Writer) {
	c, m, k, w := rep.cfg, rep.m, rep.chk, rep.w
	fmt.Fprintf(out, "\nimpressiond frequency load test: %s at %s, %d campaigns × %d users, %d ids a request (%d campaigns, %d unknown), exposed %.2f, seed %d\n",
		c.duration, rateString(c.rate), len(w.campaigns), w.users, w.idsPerRequest(), c.candidates, len(w.unknown), c.exposed, c.seed)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "warm-up\t%d impressions of %d pairs in %s: %d ok (counted %d, duplicate %d), %d failed\n",
		len(w.warmup), w.exposedPairs, round(rep.warmTook), rep.warmOK, rep.warmSaid[0], rep.warmSaid[1], uint64(len(w.warmup))-rep.warmOK)
	fmt.Fprintf(tw, "requests\t%d sent, %d ok, success %.2f%%\n", m.requests, m.success, m.successRatio*100)
	fmt.Fprintf(tw, "throughput\t%.0f req/s, %.0f ids/s\n", perSecond(m.success, m.elapsed), perSecond(k.tally.items, m.elapsed))
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  max %s\n", round(m.p50), round(m.p90), round(m.p99), round(m.max))
	fmt.Fprintf(tw, "status codes\t%v\n", m.codes)
	for i, e := range m.errors {
		if i == 5 {
			fmt.Fprintf(tw, "\t... %d more\n", len(m.errors)-5)
			break
		}
		fmt.Fprintf(tw, "error\t%s\n", e)
	}
	t := k.tally
	fmt.Fprintf(tw, "answers\t%d items checked: %d allowed, %d not allowed, %d unknown ids; %d of %d answers parsed, the others byte-identical to one that passed\n",
		t.items, t.allowed, t.blocked, t.unknown, k.full, k.answers)
	b := k.bad
	fmt.Fprintf(tw, "mismatches\t%d: undercount %d, allowed %d, order %d, length %d, user %d, caps %d, error items %d, malformed %d\n",
		b.total(), b.undercount, b.allowed, b.order, b.length, b.user, b.caps, b.errorItem, b.malformed)
	fmt.Fprintf(tw, "overcount\t%d items above the impressions tracked, %d of them not allowed though under every cap (allowed by the contract)\n", t.over, t.overBlock)
	for _, s := range k.samples {
		fmt.Fprintf(tw, "mismatch\t%s\n", s)
	}
	tw.Flush()
	fmt.Fprintf(out, "files: %s\n", strings.Join(rep.files, ", "))
}

// strictErr is the -strict verdict: every warm-up impression and every
// frequency request answered 200, and no answer broke the contract.
func (rep *freqReport) strictErr() error {
	var errs []error
	if rep.warmOK != uint64(len(rep.w.warmup)) {
		errs = append(errs, fmt.Errorf("%d of %d warm-up impressions failed (%d sent)", uint64(len(rep.w.warmup))-rep.warmOK, len(rep.w.warmup), rep.warmSent))
	}
	if rep.m.success != rep.m.requests {
		errs = append(errs, fmt.Errorf("%d of %d frequency requests failed", rep.m.requests-rep.m.success, rep.m.requests))
	}
	if n := rep.chk.bad.total(); n > 0 {
		errs = append(errs, fmt.Errorf("%d mismatches in the answers", n))
	}
	return errors.Join(errs...)
}
