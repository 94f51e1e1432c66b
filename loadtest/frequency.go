package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// The frequency workload measures POST /api/v1/frequency, the serve-time
// question "may this user see these campaigns again?". Every campaign gets
// the caps of freqCaps. A warm-up first tracks impressions of a
// deterministic share of the (campaign, user) pairs, each 1 to 5 times, so
// that about three in five exposed pairs are over the 1h cap; then every
// request asks for one user about -candidates campaigns (all by default) in
// an order shuffled per user. Since the warm-up's impressions are known, every
// answer is checked: one item per id in request order, no count below the
// impressions tracked, and allowed exactly when every count is under its max.

const (
	workloadImpressions = "impressions"
	workloadFrequency   = "frequency"
)

// Defaults that differ from the impressions workload's: a serve-time
// request names every campaign a user might see, so there are more
// campaigns, and the warm-up tracks about one impression per pair, so
// there are fewer users.
const (
	freqDefaultCampaigns = 100
	freqDefaultUsers     = 1000
)

// freqMaxIDs is the most campaign ids the API takes in one request.
const freqMaxIDs = 1000

// freqMaxPairs bounds -users × (-campaigns + -unknown): the precomputed
// bodies take about 24 bytes an id (100 MB at the bound) and the warm-up
// about 3 × -exposed impressions a pair.
const freqMaxPairs = 1 << 22

// freqCap is one frequency cap: at most max impressions in window.
type freqCap struct {
	max    uint64
	window time.Duration
	name   string // as sent to the server
}

// freqCaps are the caps of every campaign the workload creates. A pair is
// exposed at most 5 times, so the 24h cap never decides alone; it is there
// so that every answer carries two windows to check.
var freqCaps = []freqCap{{3, time.Hour, "1h"}, {10, 24 * time.Hour, "24h"}}

// capsJSON is freqCaps as the campaign create body's frequency_caps field,
// with the leading comma createCampaigns expects.
func capsJSON(caps []freqCap) string {
	var sb strings.Builder
	sb.WriteString(`,"frequency_caps":[`)
	for i, c := range caps {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"max":%d,"window":%q}`, c.max, c.name)
	}
	sb.WriteByte(']')
	return sb.String()
}

// frequencyFlags registers the flags of the frequency workload.
func (c *attackConfig) frequencyFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.workload, "workload", workloadImpressions,
		"impressions: track impressions and compare the stats; frequency: warm up, then ask POST /api/v1/frequency at -rate and check every answer "+
			"(-campaigns then defaults to 100 and -users to 1000; -batch, -dup-ratio and -spread are unused)")
	fs.IntVar(&c.candidates, "candidates", 0, "frequency: campaign ids per request, a per-user shuffle of the campaigns (0: all of them)")
	fs.IntVar(&c.unknown, "unknown", 0, "frequency: ids of campaigns never created added to every request, each answered by a 404 item")
	fs.Float64Var(&c.exposed, "exposed", 0.3, "frequency: share of (campaign, user) pairs the warm-up tracks 1 to 5 impressions of, in [0, 1]")
}

// checkFrequency validates the workload flags and applies the frequency
// workload's defaults to the flags not given.
func (c *attackConfig) checkFrequency(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch c.workload {
	case workloadImpressions:
		if set["candidates"] || set["unknown"] || set["exposed"] {
			return fmt.Errorf("-candidates, -unknown and -exposed need -workload frequency")
		}
		return nil
	case workloadFrequency:
	default:
		return fmt.Errorf("-workload must be %s or %s, got %q", workloadImpressions, workloadFrequency, c.workload)
	}
	if !set["campaigns"] {
		c.campaigns = freqDefaultCampaigns
	}
	if !set["users"] {
		c.users = freqDefaultUsers
	}
	if c.candidates == 0 {
		c.candidates = c.campaigns
	}
	c.campaignFields = capsJSON(freqCaps)
	switch {
	case c.burst > 0:
		return fmt.Errorf("-burst does not go with -workload frequency")
	case c.batch != 1:
		return fmt.Errorf("-batch does not go with -workload frequency (the warm-up sends single impressions)")
	case c.campaigns < 1 || c.users < 1:
		return fmt.Errorf("-campaigns and -users must be positive")
	case c.candidates < 1 || c.candidates > c.campaigns:
		return fmt.Errorf("-candidates must be in [1, -campaigns]")
	case c.unknown < 0 || c.candidates+c.unknown > freqMaxIDs:
		return fmt.Errorf("-unknown must not be negative, and -candidates + -unknown at most %d (the API's bound)", freqMaxIDs)
	case !(c.exposed >= 0 && c.exposed <= 1):
		return fmt.Errorf("-exposed must be in [0, 1]")
	case uint64(c.users)*uint64(c.campaigns+c.unknown) > freqMaxPairs:
		return fmt.Errorf("-users × (-campaigns + -unknown) must be at most %d (bodies are precomputed)", freqMaxPairs)
	}
	return nil
}

// runFrequency is attack with the frequency workload: create the capped
// campaigns, track the warm-up, ask for frequencies at -rate for -duration,
// check every answer and report.
func runFrequency(cfg *attackConfig, stdout, stderr io.Writer) error {
	start := time.Now()
	ids, err := createCampaigns(cfg, start)
	if err != nil {
		return err
	}
	unknown := make([]string, cfg.unknown)
	for k := range unknown {
		unknown[k] = fmt.Sprintf("lt%d-%d-missing%d", start.Unix(), cfg.seed, k)
	}
	w := newFreqWorkload(cfg.seed, ids, unknown, cfg.users, cfg.candidates, cfg.exposed, freqCaps)

	warm := &attackResult{}
	warmStart := time.Now()
	if len(w.warmup) > 0 {
		fmt.Fprintf(stderr, "warm-up: %d impressions of %d pairs\n", len(w.warmup), w.exposedPairs)
		if warm, err = attack(cfg, w.warmupPhase(cfg), stderr); err != nil {
			return err
		}
	}
	warmTook := time.Since(warmStart)
	chk := newFreqChecker(w, warm.okSeqs, warmStart)

	if cfg.cpuprof != "" {
		f, err := os.Create(cfg.cpuprof)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	res, err := attack(cfg, w.timedPhase(cfg, chk), stderr)
	if cfg.cpuprof != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	rep := newFreqReport(cfg, w, warm, warmTook, res, chk)
	rep.print(stdout)
	if cfg.strict {
		return rep.strictErr()
	}
	return nil
}

// warmupPhase tracks the warm-up's impressions as fast as -workers allow,
// one a request; request n is warm-up impression n and names n in its
// query string, so the checker knows which the server accepted.
func (w *freqWorkload) warmupPhase(cfg *attackConfig) phase {
	var seq atomic.Uint64
	n := uint64(len(w.warmup))
	header := http.Header{"Content-Type": []string{"application/json"}}
	url := cfg.target + "/api/v1/impressions?seq="
	return phase{
		tr: func(t *vegeta.Target) error {
			k := seq.Add(1) - 1
			if k >= n {
				return vegeta.ErrNoTargets
			}
			t.Method, t.Header = http.MethodPost, header
			t.URL = url + strconv.FormatUint(k, 10)
			t.Body = w.appendImpression(make([]byte, 0, 64), w.warmup[k])
			return nil
		},
		pacer:   countPacer{vegeta.ConstantPacer{}, n},
		title:   fmt.Sprintf("impressiond: frequency warm-up, %d impressions at max rate", n),
		results: "warmup.bin",
		plot:    "warmup.html",
	}
}

// timedPhase asks for frequencies at -rate for -duration. Request n names
// n in its query string and carries the precomputed body of user
// userOf(n); chk checks every answer.
func (w *freqWorkload) timedPhase(cfg *attackConfig, chk *freqChecker) phase {
	var seq atomic.Uint64
	header := http.Header{"Content-Type": []string{"application/json"}}
	url := cfg.target + "/api/v1/frequency?seq="
	pacer := vegeta.Pacer(vegeta.Rate{Freq: cfg.rate, Per: time.Second})
	if cfg.rate == 0 {
		pacer = vegeta.ConstantPacer{}
	}
	return phase{
		tr: func(t *vegeta.Target) error {
			n := seq.Add(1) - 1
			t.Method, t.Header = http.MethodPost, header
			t.URL = url + strconv.FormatUint(n, 10)
			t.Body = w.bodies[w.userOf(n)]
			return nil
		},
		pacer:    pacer,
		duration: cfg.duration,
		title:    fmt.Sprintf("impressiond: frequency, %s at %s, %d ids a request", cfg.duration, rateString(cfg.rate), w.idsPerRequest()),
		results:  "frequency.bin",
		plot:     "frequency.html",
		check:    chk.check,
		bodySize: w.maxBody,
		openLoop: true,
	}
}
