package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the attack's outcome: performance from vegeta, accuracy from
// the ground truth against the stats the server reports.
type report struct {
	cfg        *attackConfig
	m          summary
	okItems    uint64
	counted    uint64
	dups       uint64
	rejected   int
	badBodies  int
	expected   windows // summed over campaigns
	reported   windows
	campaigns  int
	worstID    string
	worstUnder float64
	files      []string
}

// summary is the part of vegeta.Metrics the report prints.
type summary struct {
	requests, success  uint64
	successRatio       float64
	elapsed            time.Duration
	p50, p90, p99, max time.Duration
	codes              map[string]int
	errors             []string
}

func buildReport(cfg *attackConfig, w *workload, res *attackResult) (*report, error) {
	m := &res.metrics
	rep := &report{
		cfg: cfg,
		m: summary{
			requests:     m.Requests,
			success:      uint64(len(res.okSeqs)),
			successRatio: m.Success,
			elapsed:      m.Duration + m.Wait,
			p50:          m.Latencies.P50,
			p90:          m.Latencies.P90,
			p99:          m.Latencies.P99,
			max:          m.Latencies.Max,
			codes:        m.StatusCodes,
			errors:       m.Errors,
		},
		counted:   res.counted,
		dups:      res.dups,
		rejected:  len(res.rejected),
		badBodies: res.badBodies,
		campaigns: len(w.campaigns),
		files:     res.files,
	}

	t := newTruth(w)
	rejected := make(map[uint64]bool, len(res.rejected))
	for _, j := range res.rejected {
		rejected[j] = true
	}
	for _, n := range res.okSeqs {
		for j := n * uint64(cfg.batch); j < (n+1)*uint64(cfg.batch); j++ {
			if !rejected[j] {
				t.deliver(j)
				rep.okItems++
			}
		}
	}
	if err := rep.compare(t, w); err != nil {
		return nil, err
	}
	return rep, nil
}

// compare reads every campaign's stats and sums expected and reported
// windows. A minute boundary passing between the reading and the expected
// values would make them disagree, so a campaign read across one is read
// again.
func (rep *report) compare(t *truth, w *workload) error {
	for c, id := range w.campaigns {
		for attempt := 0; ; attempt++ {
			before := time.Now()
			got, err := fetchStats(rep.cfg.target, id)
			if err != nil {
				return err
			}
			after := time.Now()
			if unixMinute(before) != unixMinute(after) && attempt < 3 {
				continue
			}
			want := t.expected(c, after)
			rep.expected.add(want)
			rep.reported.add(got)
			if u := undercount(want.Total, got.Total); u > rep.worstUnder || rep.worstID == "" {
				rep.worstID, rep.worstUnder = id, u
			}
			break
		}
	}
	return nil
}

func (w *windows) add(o windows) {
	w.Total += o.Total
	w.LastDay += o.LastDay
	w.LastHour += o.LastHour
}

func fetchStats(target, id string) (windows, error) {
	resp, err := http.Get(target + "/api/v1/campaigns/" + id + "/stats")
	if err != nil {
		return windows{}, fmt.Errorf("cannot read stats of %s: %w", id, err)
	}
	defer resp.Body.Close()
	var s struct {
		LastHour uint64 `json:"last_hour"`
		LastDay  uint64 `json:"last_day"`
		Total    uint64 `json:"total"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return windows{}, fmt.Errorf("cannot read stats of %s: %s %s", id, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return windows{}, fmt.Errorf("cannot decode stats of %s: %w", id, err)
	}
	return windows{Total: s.Total, LastDay: s.LastDay, LastHour: s.LastHour}, nil
}

// undercount is the share of expected impressions the server did not
// report, in percent; negative when it reported more (an overcount: a pair
// counted twice).
func undercount(expected, reported uint64) float64 {
	if expected == 0 {
		if reported == 0 {
			return 0
		}
		return -100
	}
	return (float64(expected) - float64(reported)) / float64(expected) * 100
}

// perSecond is n over d, 0 for an empty duration.
func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func (rep *report) print(out io.Writer) {
	c, m := rep.cfg, rep.m
	fmt.Fprintf(out, "\nimpressiond load test: %s at %s, batch %d, %d campaigns × %d users, dup-ratio %.2f, spread %s, seed %d\n",
		c.duration, rateString(c.rate), c.batch, rep.campaigns, c.users, c.dupRatio, c.spread, c.seed)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "requests\t%d sent, %d ok, success %.2f%%\n", m.requests, m.success, m.successRatio*100)
	fmt.Fprintf(tw, "throughput\t%.0f req/s, %.0f impressions/s\n", perSecond(m.success, m.elapsed), perSecond(rep.okItems, m.elapsed))
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  max %s\n", round(m.p50), round(m.p90), round(m.p99), round(m.max))
	fmt.Fprintf(tw, "server said\tcounted %d, duplicate %d, rejected %d\n", rep.counted, rep.dups, rep.rejected)
	if len(m.errors) > 0 {
		fmt.Fprintf(tw, "status codes\t%v\n", m.codes)
		for i, e := range m.errors {
			if i == 5 {
				fmt.Fprintf(tw, "\t... %d more\n", len(m.errors)-5)
				break
			}
			fmt.Fprintf(tw, "error\t%s\n", e)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "accuracy (distinct pairs delivered vs counts reported, all campaigns):")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window\texpected\treported\tundercount\t")
	for _, r := range []struct {
		name     string
		exp, got uint64
	}{
		{"total", rep.expected.Total, rep.reported.Total},
		{"last_day", rep.expected.LastDay, rep.reported.LastDay},
		{"last_hour", rep.expected.LastHour, rep.reported.LastHour},
	} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f%%\t\n", r.name, r.exp, r.got, undercount(r.exp, r.got))
	}
	tw.Flush()
	fmt.Fprintf(out, "worst campaign: %s, undercount %.4f%% of its total\n", rep.worstID, rep.worstUnder)
	fmt.Fprintf(out, "files: %s\n", strings.Join(rep.files, ", "))
}

// strictErr is the -strict verdict: every request succeeded and every
// count is exact.
func (rep *report) strictErr() error {
	var errs []error
	if rep.m.success != rep.m.requests || rep.badBodies > 0 || rep.rejected > 0 {
		errs = append(errs, fmt.Errorf("%d of %d requests failed, %d impressions rejected", rep.m.requests-rep.m.success, rep.m.requests, rep.rejected))
	}
	if rep.expected != rep.reported {
		errs = append(errs, fmt.Errorf("counts are not exact: expected %+v, reported %+v", rep.expected, rep.reported))
	}
	return errors.Join(errs...)
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
