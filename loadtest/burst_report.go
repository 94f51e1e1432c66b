package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// burstRow is one phase of a burst run as observed: what was sent, what the
// server answered, and how much its stats totals grew meanwhile.
type burstRow struct {
	name         string
	start, took  time.Duration // start after the run's (aligned) start
	sent         uint64        // pairs the phase was to send
	pairs        uint64        // pairs in requests answered 200 and not rejected
	counted      uint64        // the responses' "counted", summed
	statsCounted int64         // growth of the campaigns' stats totals over the phase
	requests     uint64
	failed       uint64 // requests not answered 200, or with a body not understood
	rejected     int    // items rejected inside accepted batches
}

// newBurstRow books an attack's results against the phase that sent them:
// request k of it carried itemsOf(k, n, batch) pairs.
func newBurstRow(pp plannedPhase, res *attackResult, batch int) burstRow {
	r := burstRow{
		name:     pp.name,
		sent:     pp.n,
		counted:  res.counted,
		requests: res.metrics.Requests,
		rejected: len(res.rejected),
	}
	for _, k := range res.okSeqs {
		r.pairs += itemsOf(k, pp.n, batch)
	}
	r.pairs -= uint64(r.rejected)
	r.failed = r.requests - uint64(len(res.okSeqs))
	return r
}

// lost is the undercount: pairs delivered and not counted. Negative would
// be an overcount, a pair counted twice.
func (r burstRow) lost() int64 { return int64(r.pairs) - int64(r.counted) }

// share is lost in percent of the pairs delivered.
func (r burstRow) share() float64 { return undercount(r.pairs, r.counted) }

// allowed is the undercount the server's guarantee allows on average: each
// fresh pair taken for a repeat with probability at most fp. The rounding
// guard keeps a product such as 200000 × 0.001 from rounding up to 201.
func (r burstRow) allowed(fp float64) uint64 {
	return uint64(math.Ceil(float64(r.pairs)*fp - 1e-9))
}

// verdict says whether the undercount is within what fp allows.
func (r burstRow) verdict(fp float64) string {
	if r.lost() <= int64(r.allowed(fp)) {
		return "ok"
	}
	return "over"
}

// sumRows adds the rows up into one named "all", spanning them all.
func sumRows(rows []burstRow) burstRow {
	all := burstRow{name: "all"}
	for i, r := range rows {
		if i == 0 {
			all.start = r.start
		}
		all.took = r.start + r.took - all.start
		all.sent += r.sent
		all.pairs += r.pairs
		all.counted += r.counted
		all.statsCounted += r.statsCounted
		all.requests += r.requests
		all.failed += r.failed
		all.rejected += r.rejected
	}
	return all
}

func printBursts(out io.Writer, cfg *attackConfig, campaigns int, rows []burstRow, files []string) {
	fmt.Fprintf(out, "\nimpressiond bursts: %d × %d fresh pairs, gap %s", cfg.bursts, cfg.burst, cfg.burstGap)
	if cfg.steady > 0 {
		fmt.Fprintf(out, ", after %d over %s", cfg.steady, cfg.steadyOver)
	}
	fmt.Fprintf(out, "; batch %d, %d campaigns, seed %d, fp %g\n", cfg.batch, campaigns, cfg.seed, cfg.fp)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tstart\ttook\trequests\tfailed\tpairs\tcounted\tstats\tundercount\tshare\tallowed\tverdict\t")
	if len(rows) > 1 {
		rows = append(rows, sumRows(rows))
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.4f%%\t%d\t%s\t\n",
			r.name, round(r.start), round(r.took), r.requests, r.failed, r.pairs, r.counted, r.statsCounted,
			r.lost(), r.share(), r.allowed(cfg.fp), r.verdict(cfg.fp))
	}
	tw.Flush()
	fmt.Fprintf(out, "files: %s\n", strings.Join(files, ", "))
}

// burstErr is the burst run's verdict: every phase ran, every request
// succeeded, and the responses and the stats agree on every phase's count;
// with strict also every pair was counted.
func burstErr(rows []burstRow, phases int, strict bool) error {
	var errs []error
	if len(rows) < phases {
		errs = append(errs, errInterrupted)
	}
	for _, r := range rows {
		if r.failed > 0 || r.rejected > 0 || r.pairs != r.sent {
			errs = append(errs, fmt.Errorf("%s: %d of %d requests failed, %d impressions rejected", r.name, r.failed, r.requests, r.rejected))
		}
		if int64(r.counted) != r.statsCounted {
			errs = append(errs, fmt.Errorf("%s: the responses counted %d, the stats totals grew by %d", r.name, r.counted, r.statsCounted))
		}
		if strict && r.lost() != 0 {
			errs = append(errs, fmt.Errorf("%s: %d pairs not counted", r.name, r.lost()))
		}
	}
	return errors.Join(errs...)
}
