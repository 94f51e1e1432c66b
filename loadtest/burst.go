package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Burst mode sends fresh pairs only: every item of every phase is a pair
// sent nowhere else in the run, so a server must count every one, and any
// it does not count is a fresh pair its dedup took for a repeat (a Bloom
// false positive). Pairs go round-robin over the run's -campaigns, so the
// server sees as many campaigns as in the classic attack; -campaigns 1
// puts a whole burst on one campaign. Items carry no timestamp: the dedup
// window runs on arrival time anyway, and the stats totals count every
// minute alike.

// checkBurst validates the burst-mode flags.
func (c *attackConfig) checkBurst() error {
	switch {
	case c.burst < 0 || c.steady < 0:
		return fmt.Errorf("-burst and -steady must not be negative")
	case c.bursts < 1:
		return fmt.Errorf("-bursts must be positive")
	case c.burst == 0 && (c.bursts != 1 || c.steady > 0 || c.burstGap != 0 || c.burstAlign != 0):
		return fmt.Errorf("-bursts, -burst-gap, -burst-align and -steady need -burst")
	case c.burstGap < 0 || c.burstAlign < 0:
		return fmt.Errorf("-burst-gap and -burst-align must not be negative")
	case c.steady > 0 && c.steadyOver <= 0:
		return fmt.Errorf("-steady-over must be positive")
	case c.fp < 0 || c.fp >= 1:
		return fmt.Errorf("-fp must be in [0, 1)")
	case uint64(c.steady)+uint64(c.bursts)*uint64(c.burst) > 1<<33:
		return fmt.Errorf("-steady + -bursts × -burst must be at most 2^33")
	}
	return nil
}

// burstPlan lays a run's phases out on the workload's item indexes: the
// steady phase takes items [0, steady), burst i the next burst items. With
// dup-ratio 0, item j is the pair (j mod campaigns, j div campaigns) while
// j < campaigns × users, so the items of all phases are distinct pairs.
type burstPlan struct {
	steady     uint64        // pairs of the steady phase, 0 for none
	steadyOver time.Duration // how long the steady phase lasts
	burst      uint64        // pairs per burst
	bursts     int
	gap        time.Duration // between the starts of bursts
	batch      int           // items per request
}

func newBurstPlan(c *attackConfig) burstPlan {
	return burstPlan{uint64(c.steady), c.steadyOver, uint64(c.burst), c.bursts, c.burstGap, c.batch}
}

// plannedPhase is one phase of a burst run: items [first, first+n), sent
// from at (after the run's start) as fast as possible, or evenly over over.
type plannedPhase struct {
	name     string
	first, n uint64
	at, over time.Duration
}

func (p burstPlan) phases() []plannedPhase {
	var ps []plannedPhase
	var first uint64
	var at time.Duration
	if p.steady > 0 {
		ps = append(ps, plannedPhase{name: "steady", n: p.steady, over: p.steadyOver})
		first, at = p.steady, p.steadyOver
	}
	for i := 0; i < p.bursts; i++ {
		ps = append(ps, plannedPhase{name: "burst" + strconv.Itoa(i+1), first: first, n: p.burst, at: at + time.Duration(i)*p.gap})
		first += p.burst
	}
	return ps
}

// users is how many users per campaign the plan's pairs take.
func (p burstPlan) users(campaigns int) int {
	total := p.steady + uint64(p.bursts)*p.burst
	return int(max(1, (total+uint64(campaigns)-1)/uint64(campaigns)))
}

// requests is how many requests carry n items, batch at a time; the last
// one may be shorter.
func requests(n uint64, batch int) uint64 { return (n + uint64(batch) - 1) / uint64(batch) }

// itemsOf is how many items request k of a phase of n items carries.
func itemsOf(k, n uint64, batch int) uint64 {
	return min(uint64(batch), n-k*uint64(batch))
}

// phase turns the planned phase into a vegeta run that sends exactly its
// requests: the pacer stops after the last.
func (pp plannedPhase) phase(cfg *attackConfig, w *workload) phase {
	reqs := requests(pp.n, cfg.batch)
	var pacer vegeta.Pacer = vegeta.ConstantPacer{}
	title := fmt.Sprintf("impressiond: %s, %d fresh pairs at max rate, batch %d", pp.name, pp.n, cfg.batch)
	if pp.over > 0 {
		pacer = vegeta.Rate{Freq: int(reqs), Per: pp.over}
		title = fmt.Sprintf("impressiond: %s, %d fresh pairs over %s, batch %d", pp.name, pp.n, pp.over, cfg.batch)
	}
	return phase{
		tr:      spanTargeter(cfg, w, pp.first, pp.n),
		pacer:   countPacer{pacer, reqs},
		title:   title,
		results: pp.name + ".bin",
		plot:    pp.name + ".html",
	}
}

// countPacer is its Pacer stopped after n hits.
type countPacer struct {
	vegeta.Pacer
	n uint64
}

func (p countPacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= p.n {
		return 0, true
	}
	return p.Pacer.Pace(elapsed, hits)
}

// spanTargeter is targeter for items [first, first+n) only: request k
// carries items [first+k·batch, first+(k+1)·batch), cut at the end, and
// names k in its query string. Past the last request it returns
// vegeta.ErrNoTargets. It is safe for concurrent use.
func spanTargeter(cfg *attackConfig, w *workload, first, n uint64) vegeta.Targeter {
	var seq atomic.Uint64
	reqs := requests(n, cfg.batch)
	header := http.Header{"Content-Type": []string{"application/json"}}
	single := cfg.target + "/api/v1/impressions?seq="
	batch := cfg.target + "/api/v1/impressions/batch?seq="
	return func(t *vegeta.Target) error {
		k := seq.Add(1) - 1
		if k >= reqs {
			return vegeta.ErrNoTargets
		}
		t.Method = http.MethodPost
		t.Header = header
		from := first + k*uint64(cfg.batch)
		if cfg.batch == 1 {
			t.URL = single + strconv.FormatUint(k, 10)
			t.Body = w.appendItem(make([]byte, 0, 128), from)
		} else {
			t.URL = batch + strconv.FormatUint(k, 10)
			t.Body = w.appendBatch(make([]byte, 0, cfg.batch*110), from, int(itemsOf(k, n, cfg.batch)))
		}
		return nil
	}
}

// runBursts is attack in burst mode: it creates the campaigns, runs the
// plan's phases one after the other, reads the campaigns' stats after each
// and reports every phase on its own. It fails if any request failed, if
// the responses and the stats disagree on what was counted, or if it was
// interrupted; with -strict also if any pair was not counted.
func runBursts(cfg *attackConfig, stdout, stderr io.Writer) error {
	plan := newBurstPlan(cfg)
	start := time.Now()
	ids, err := createCampaigns(cfg, start)
	if err != nil {
		return err
	}
	w := newWorkload(cfg.seed, ids, plan.users(len(ids)), 0, start, 0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prev, err := sumTotals(cfg.target, ids)
	if err != nil {
		return err
	}
	t0 := alignedStart(time.Now(), cfg.burstAlign)
	var rows []burstRow
	var files []string
	for _, pp := range plan.phases() {
		if sleepUntil(ctx, t0.Add(pp.at)) != nil {
			break
		}
		fmt.Fprintf(stderr, "%s: %d fresh pairs\n", pp.name, pp.n)
		began := time.Now()
		res, err := attack(cfg, pp.phase(cfg, w), stderr)
		if err != nil {
			return err
		}
		row := newBurstRow(pp, res, cfg.batch)
		row.start, row.took = began.Sub(t0), time.Since(began)
		total, err := sumTotals(cfg.target, ids)
		if err != nil {
			return err
		}
		row.statsCounted, prev = int64(total-prev), total
		rows, files = append(rows, row), append(files, res.files...)
		if ctx.Err() != nil {
			break
		}
	}
	printBursts(stdout, cfg, len(ids), rows, files)
	return burstErr(rows, len(plan.phases()), cfg.strict)
}

// alignedStart is now, or with align > 0 the next multiple of align since
// the Unix epoch, which is where the server's dedup slices begin, plus
// alignMargin.
func alignedStart(now time.Time, align time.Duration) time.Time {
	if align <= 0 {
		return now
	}
	a := int64(align)
	return time.Unix(0, (now.UnixNano()/a+1)*a).Add(alignMargin)
}

// alignMargin puts an aligned start past the boundary by more than the
// server's coarse clock lags (a millisecond).
const alignMargin = 50 * time.Millisecond

// sleepUntil waits until t, at once if t has passed, and fails if ctx ends
// first.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// sumTotals is the sum of the campaigns' stats totals.
func sumTotals(target string, ids []string) (uint64, error) {
	var sum uint64
	for _, id := range ids {
		s, err := fetchStats(target, id)
		if err != nil {
			return 0, err
		}
		sum += s.Total
	}
	return sum, nil
}

var errInterrupted = errors.New("interrupted before the last phase")
