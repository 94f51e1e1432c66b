package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/tsenart/vegeta/v12/lib/plot"
)

type attackConfig struct {
	target    string
	campaigns int
	users     int
	dupRatio  float64
	spread    time.Duration
	rate      int
	workers   int
	conns     int
	duration  time.Duration
	batch     int
	seed      uint64
	out       string
	timeout   time.Duration
	strict    bool
	cpuprof   string

	// Burst mode (-burst > 0), see burst.go.
	burst      int
	bursts     int
	burstGap   time.Duration
	burstAlign time.Duration
	steady     int
	steadyOver time.Duration
	fp         float64

	// Frequency workload (-workload frequency), see frequency.go.
	workload       string
	candidates     int
	unknown        int
	exposed        float64
	campaignFields string // more fields of each created campaign, after a comma
}

func parseAttackFlags(args []string, stderr io.Writer) (*attackConfig, error) {
	var c attackConfig
	fs := flag.NewFlagSet("attack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.target, "target", "http://127.0.0.1:8080", "base URL of the impressiond to attack")
	fs.IntVar(&c.campaigns, "campaigns", 10, "campaigns to create and spread impressions over")
	fs.IntVar(&c.users, "users", 100000, "distinct users per campaign")
	fs.Float64Var(&c.dupRatio, "dup-ratio", 0.2, "share of impressions that repeat a pair already sent, in [0, 1]")
	fs.DurationVar(&c.spread, "spread", 2*time.Hour, "impression timestamps spread over this much of the past (0: no timestamp)")
	fs.IntVar(&c.rate, "rate", 1000, "requests per second; 0 sends as fast as -workers allow")
	fs.IntVar(&c.workers, "workers", 64, "concurrent workers, at most")
	fs.IntVar(&c.conns, "connections", 64, "connections to the target, at most (kept alive)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to attack")
	fs.IntVar(&c.batch, "batch", 1, "impressions per request; above 1 they go to /api/v1/impressions/batch")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the workload; the same seed sends the same impressions")
	fs.StringVar(&c.out, "out", "loadtest/out", "directory for vegeta's results file and the HTML latency plot")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&c.cpuprof, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.BoolVar(&c.strict, "strict", false, "exit 1 unless every request succeeded and every count is exact (for an exact-mode server)")
	fs.IntVar(&c.burst, "burst", 0, "burst mode: send this many fresh pairs (never repeated) as fast as possible, then compare the counts; -dup-ratio, -users, -spread, -rate and -duration are then unused")
	fs.IntVar(&c.bursts, "bursts", 1, "bursts of -burst pairs in a row, each reported on its own")
	fs.DurationVar(&c.burstGap, "burst-gap", 0, "time between the starts of consecutive bursts (0: back to back); a burst that overruns it delays the next")
	fs.DurationVar(&c.burstAlign, "burst-align", 0, "start the first phase just after the next multiple of this since the Unix epoch, where the server's dedup slices begin (0: at once)")
	fs.IntVar(&c.steady, "steady", 0, "fresh pairs sent at an even rate over -steady-over before the first burst")
	fs.DurationVar(&c.steadyOver, "steady-over", time.Minute, "how long the -steady pairs are spread over; the first burst starts when it ends")
	fs.Float64Var(&c.fp, "fp", 0.001, "the server's -dedup-fp: a burst may lose at most this share of its pairs (the \"allowed\" column)")
	c.frequencyFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	if err := c.checkFrequency(fs); err != nil {
		return nil, err
	}
	switch {
	case c.campaigns < 1:
		return nil, fmt.Errorf("-campaigns must be positive")
	case c.users < 1:
		return nil, fmt.Errorf("-users must be positive")
	case uint64(c.campaigns)*uint64(c.users) > 1<<33:
		return nil, fmt.Errorf("-campaigns × -users must be at most 2^33 (the ground truth keeps a bit per pair)")
	case c.dupRatio < 0 || c.dupRatio > 1:
		return nil, fmt.Errorf("-dup-ratio must be in [0, 1]")
	case c.spread < 0:
		return nil, fmt.Errorf("-spread must not be negative")
	case c.rate < 0 || c.workers < 1 || c.conns < 1:
		return nil, fmt.Errorf("-rate must not be negative, -workers and -connections must be positive")
	case c.batch < 1 || c.batch > 10000:
		return nil, fmt.Errorf("-batch must be in [1, 10000]")
	case c.duration <= 0:
		return nil, fmt.Errorf("-duration must be positive")
	}
	if err := c.checkBurst(); err != nil {
		return nil, err
	}
	c.target = strings.TrimRight(c.target, "/")
	return &c, nil
}

func runAttack(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseAttackFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.burst > 0 {
		return runBursts(cfg, stdout, stderr)
	}
	if cfg.workload == workloadFrequency {
		return runFrequency(cfg, stdout, stderr)
	}
	start := time.Now()
	ids, err := createCampaigns(cfg, start)
	if err != nil {
		return err
	}
	w := newWorkload(cfg.seed, ids, cfg.users, cfg.dupRatio, start, cfg.spread)
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
	res, err := attack(cfg, timedPhase(cfg, w), stderr)
	if cfg.cpuprof != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	rep, err := buildReport(cfg, w, res)
	if err != nil {
		return err
	}
	rep.print(stdout)
	if cfg.strict {
		return rep.strictErr()
	}
	return nil
}

// createCampaigns registers the attack's campaigns, with ids unique to this
// run and a start time before any timestamp the workload sends.
func createCampaigns(cfg *attackConfig, start time.Time) ([]string, error) {
	ids := make([]string, cfg.campaigns)
	startTime := start.Add(-cfg.spread - time.Hour).UTC().Format(time.RFC3339)
	for i := range ids {
		ids[i] = fmt.Sprintf("lt%d-%d-%d", start.Unix(), cfg.seed, i)
		body := fmt.Sprintf(`{"id":%q,"name":"loadtest %d","start_time":%q%s}`, ids[i], i, startTime, cfg.campaignFields)
		resp, err := http.Post(cfg.target+"/api/v1/campaigns", "application/json", strings.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("cannot create campaign %s: %w", ids[i], err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("cannot create campaign %s: %s %s", ids[i], resp.Status, b)
		}
	}
	return ids, nil
}

// attackResult is what the attack itself observed.
type attackResult struct {
	metrics   vegeta.Metrics
	okSeqs    []uint64 // request numbers answered 200
	rejected  []uint64 // items the server rejected inside accepted batches
	counted   uint64   // what the server answered, summed
	dups      uint64
	files     []string
	badBodies int
}

// phase is one run of vegeta: where its requests come from, how they are
// paced, and the files it leaves in -out.
type phase struct {
	tr       vegeta.Targeter
	pacer    vegeta.Pacer
	duration time.Duration // 0: until the pacer stops
	title    string        // of the latency plot
	results  string        // file names in -out
	plot     string
	// check, when set, books every result instead of record and tells
	// whether it passed. The body of one that passed is then dropped, so
	// that large answers stay out of the results file and failures in it.
	check    func(*vegeta.Result) bool
	bodySize int // largest request body, when above a batch's
	// openLoop sends with fasthttp's client, open loop (see openLoop),
	// instead of vegeta's.
	openLoop bool
}

// timedPhase is the classic attack: the workload at -rate for -duration.
func timedPhase(cfg *attackConfig, w *workload) phase {
	pacer := vegeta.Pacer(vegeta.Rate{Freq: cfg.rate, Per: time.Second})
	if cfg.rate == 0 {
		pacer = vegeta.ConstantPacer{}
	}
	return phase{
		tr:       targeter(cfg, w),
		pacer:    pacer,
		duration: cfg.duration,
		title:    fmt.Sprintf("impressiond: %s at %s, batch %d", cfg.duration, rateString(cfg.rate), cfg.batch),
		results:  "results.bin",
		plot:     "plot.html",
	}
}

// attack runs one phase in vegeta and consumes its results: metrics, the
// results file, the plot, and the request numbers the ground truth is
// rebuilt from.
func attack(cfg *attackConfig, ph phase, stderr io.Writer) (*attackResult, error) {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return nil, err
	}
	resultsPath := filepath.Join(cfg.out, ph.results)
	plotPath := filepath.Join(cfg.out, ph.plot)
	rf, err := os.Create(resultsPath)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	enc := vegeta.NewEncoder(rf)
	p := plot.New(plot.Title(ph.title), plot.Downsample(4000))

	// Workers and connections are capped: uncapped, vegeta answers a slow
	// moment by starting workers that dial new connections, which it then
	// closes as surplus idle ones, until TIME_WAIT sockets exhaust the
	// ephemeral ports and every dial fails. The write buffer holds a whole
	// batch, so a request is one write(2), not one per 4 KiB.
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.conns,
		MaxConnsPerHost:     cfg.conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     max(4<<10, cfg.batch*128, ph.bodySize),
		ReadBufferSize:      16 << 10,
	}
	defer transport.CloseIdleConnections()
	opts := []func(*vegeta.Attacker){
		vegeta.Workers(uint64(cfg.workers)),
		vegeta.MaxWorkers(uint64(cfg.workers)),
		vegeta.Client(&http.Client{Transport: transport, Timeout: cfg.timeout}),
	}
	var results <-chan *vegeta.Result
	var stop func()
	if ph.openLoop {
		ol, err := newOpenLoop(cfg.target, ph.tr, ph.pacer, ph.duration, cfg.conns, cfg.timeout, ph.bodySize)
		if err != nil {
			return nil, err
		}
		results, stop = ol.Attack(), ol.Stop
	} else {
		atk := vegeta.NewAttacker(opts...)
		results, stop = atk.Attack(ph.tr, ph.pacer, ph.duration, "impressiond"), func() { atk.Stop() }
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			stop()
		}
	}()

	var sent, failed atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress(ctx, stderr, &sent, &failed)
	}()

	res := &attackResult{files: []string{resultsPath, plotPath}}
	for r := range results {
		sent.Add(1)
		res.metrics.Add(r)
		switch {
		case ph.check != nil:
			if ph.check(r) {
				r.Body = nil
			} else {
				failed.Add(1)
			}
		case r.Code != http.StatusOK:
			failed.Add(1)
		default:
			if err := res.record(r, cfg.batch); err != nil {
				res.badBodies++
				failed.Add(1)
			}
		}
		if err := enc.Encode(r); err != nil {
			cancel()
			return nil, fmt.Errorf("cannot write %s: %w", resultsPath, err)
		}
		p.Add(r)
	}
	res.metrics.Close()
	cancel()
	<-progressDone

	p.Close()
	pf, err := os.Create(plotPath)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	if _, err := p.WriteTo(pf); err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", plotPath, err)
	}
	return res, nil
}

// targeter returns vegeta's request source. Request n carries items
// [n·batch, (n+1)·batch) and names n in its query string, which the server
// ignores and the result hands back, so the ground truth knows which items
// were accepted.
func targeter(cfg *attackConfig, w *workload) vegeta.Targeter {
	var seq atomic.Uint64
	header := http.Header{"Content-Type": []string{"application/json"}}
	single := cfg.target + "/api/v1/impressions?seq="
	batch := cfg.target + "/api/v1/impressions/batch?seq="
	return func(t *vegeta.Target) error {
		n := seq.Add(1) - 1
		t.Method = http.MethodPost
		t.Header = header
		if cfg.batch == 1 {
			t.URL = single + strconv.FormatUint(n, 10)
			t.Body = w.appendItem(make([]byte, 0, 128), n)
		} else {
			t.URL = batch + strconv.FormatUint(n, 10)
			t.Body = w.appendBatch(make([]byte, 0, cfg.batch*110), n*uint64(cfg.batch), cfg.batch)
		}
		return nil
	}
}

// record books one 200 response: which request it was and what the server
// said about its items.
func (res *attackResult) record(r *vegeta.Result, batch int) error {
	i := strings.LastIndex(r.URL, "seq=")
	if i < 0 {
		return fmt.Errorf("no seq in %q", r.URL)
	}
	n, err := strconv.ParseUint(r.URL[i+4:], 10, 64)
	if err != nil {
		return err
	}
	if batch == 1 {
		switch {
		case bytes.Contains(r.Body, []byte(`"status":"counted"`)):
			res.counted++
		case bytes.Contains(r.Body, []byte(`"status":"duplicate"`)):
			res.dups++
		default:
			return fmt.Errorf("unexpected body %s", r.Body)
		}
		res.okSeqs = append(res.okSeqs, n)
		return nil
	}
	var br struct {
		Counted, Duplicates, Rejected uint64
		Errors                        []struct{ Index uint64 }
	}
	if err := json.Unmarshal(r.Body, &br); err != nil {
		return err
	}
	res.counted += br.Counted
	res.dups += br.Duplicates
	for _, e := range br.Errors {
		res.rejected = append(res.rejected, n*uint64(batch)+e.Index)
	}
	res.okSeqs = append(res.okSeqs, n)
	return nil
}

// progress prints the requests sent, the current rate and the errors once a
// second: in place on a terminal, as a line every five seconds otherwise.
func progress(ctx context.Context, w io.Writer, sent, failed *atomic.Uint64) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	began := time.Now()
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return
		case <-t.C:
		}
		n := sent.Load()
		line := fmt.Sprintf("%5.0fs  sent %d requests  rate %d/s  errors %d", time.Since(began).Seconds(), n, n-last, failed.Load())
		last = n
		switch {
		case tty:
			fmt.Fprintf(w, "\r%-70s", line)
		case tick%5 == 0:
			fmt.Fprintln(w, line)
		}
	}
}

func rateString(rate int) string {
	if rate == 0 {
		return "max rate"
	}
	return strconv.Itoa(rate) + " req/s"
}
