package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/impressiond/impressiond/sketch"
)

// memoryTTL is the window every measured dedup is built with. Memory does
// not depend on it, only on the pairs per TTL, so one value is enough.
const memoryTTL = time.Hour

// memoryCampaigns is the number of campaign ids the pairs are spread over.
const memoryCampaigns = 100

// Streams of the id generator: the fill pairs and the fresh pairs come from
// independent PCG streams of the same seed, so a run is reproducible and the
// fresh pairs are, with overwhelming probability, pairs never inserted.
const (
	fillStream  = 0x66696c6c // "fill"
	freshStream = 0x66726573 // "fres"
)

// memoryConfig is the parsed command line of "loadtest memory".
type memoryConfig struct {
	pairs  []int
	fps    []float64
	slices int
	fresh  int
	modes  []string
	seed   uint64
}

// runMemory implements "loadtest memory": for every N of -pairs it fills
// each dedup mode with N distinct pairs within one TTL, in-process, and
// prints the heap the mode holds, its measured false-positive rate and, for
// Bloom, how close it comes to the information-theoretic bounds. It writes
// only the table to stdout; flag errors go to stderr.
func runMemory(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("memory", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: loadtest memory [flags]

Fills each dedup mode in-process with N distinct (campaign, user) pairs
spread evenly over the slices of one TTL, then reports the heap it holds and
its false-positive rate measured on pairs never inserted.

Flags:
`)
		fs.PrintDefaults()
	}
	pairs := fs.String("pairs", "1000000,10000000", "comma-separated `list` of distinct pairs per TTL to fill; each is also the dedup's capacity")
	fps := fs.String("fp", "0.01,0.001", "comma-separated `list` of target false-positive rates (bloom only; exact ignores them)")
	slices := fs.Int("slices", 6, "slices per TTL (K); K+1 generations are kept")
	fresh := fs.Int("fresh", 1_000_000, "fresh pairs tested to measure the false-positive rate; the default resolves 0.1% to about ±3%")
	modes := fs.String("modes", "bloom,exact", "comma-separated dedup `modes` to measure: bloom, exact")
	seed := fs.Uint64("seed", 1, "seed of the id generator; the same seed fills the same pairs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	cfg, err := parseMemoryFlags(fs.Args(), *pairs, *fps, *slices, *fresh, *modes, *seed)
	if err != nil {
		fmt.Fprintf(fs.Output(), "loadtest memory: %v\nRun \"loadtest memory -h\" for its flags.\n", err)
		return errUsage
	}
	return measureMemory(cfg, stdout)
}

func parseMemoryFlags(rest []string, pairs, fps string, slices, fresh int, modes string, seed uint64) (memoryConfig, error) {
	cfg := memoryConfig{slices: slices, fresh: fresh, seed: seed}
	if len(rest) > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", rest)
	}
	for _, s := range commaList(pairs) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("-pairs: %q is not a positive integer", s)
		}
		cfg.pairs = append(cfg.pairs, n)
	}
	for _, s := range commaList(fps) {
		p, err := strconv.ParseFloat(s, 64)
		if err != nil || !(p > 0 && p < 1) {
			return cfg, fmt.Errorf("-fp: %q is not a rate in (0, 1)", s)
		}
		cfg.fps = append(cfg.fps, p)
	}
	seen := map[string]bool{}
	for _, m := range commaList(modes) {
		if m != "bloom" && m != "exact" {
			return cfg, fmt.Errorf("-modes: unknown mode %q (want bloom or exact)", m)
		}
		if !seen[m] {
			seen[m] = true
			cfg.modes = append(cfg.modes, m)
		}
	}
	switch {
	case len(cfg.pairs) == 0:
		return cfg, errors.New("-pairs: no sizes given")
	case len(cfg.modes) == 0:
		return cfg, errors.New("-modes: no modes given")
	case seen["bloom"] && len(cfg.fps) == 0:
		return cfg, errors.New("-fp: no rates given for bloom")
	case slices < 1:
		return cfg, fmt.Errorf("-slices: must be positive, got %d", slices)
	case fresh < 1:
		return cfg, fmt.Errorf("-fresh: must be positive, got %d", fresh)
	}
	return cfg, nil
}

func commaList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// memoryResult is one filled dedup: one row of the table.
type memoryResult struct {
	mode     string
	n        int     // distinct pairs filled, the dedup's capacity
	k        int     // slices per TTL
	p        float64 // target false-positive rate; 0 for exact
	fillSeen int     // fill pairs reported as seen: false positives (bloom)
	fresh    int     // fresh pairs tested
	hits     int     // fresh pairs reported as seen
	held     int64   // heap bytes held by the filled dedup
}

func measureMemory(cfg memoryConfig, w io.Writer) error {
	campaigns := campaignIDs(memoryCampaigns)
	fmt.Fprintf(w, "dedup memory: K=%d slices of %s (TTL %s); %d campaign ids like %s, user ids UUIDs (8-4-4-4-12 hex, 36 bytes) like %s; FP measured on %s fresh pairs at the end of the fill\n",
		cfg.slices, memoryTTL/time.Duration(cfg.slices), memoryTTL, memoryCampaigns, campaigns[42],
		appendUUID(nil, 0x6f1c2b3a9d4e5f60, 0x8a7b6c5d4e3f2a1b), groupThousands(cfg.fresh))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, memoryHeader)
	var summary []string
	for _, n := range cfg.pairs {
		var bloomRows []memoryResult
		exactHeld := int64(-1)
		for _, mode := range cfg.modes {
			// Exact ignores the rate: one run per N is enough, and it is
			// the slow, big one.
			rates := cfg.fps
			if mode == "exact" {
				rates = []float64{0}
			}
			for _, p := range rates {
				r, err := fillAndMeasure(mode, n, p, cfg, campaigns)
				if err != nil {
					return err
				}
				fmt.Fprintln(tw, formatMemoryRow(r))
				if mode == "exact" {
					exactHeld = r.held
				} else {
					bloomRows = append(bloomRows, r)
				}
			}
		}
		if exactHeld > 0 && len(bloomRows) > 0 {
			parts := make([]string, len(bloomRows))
			for i, r := range bloomRows {
				parts[i] = fmt.Sprintf("bloom at p=%s is %.1f× smaller than exact", formatRate(r.p), float64(exactHeld)/float64(r.held))
			}
			summary = append(summary, fmt.Sprintf("N=%s: %s", groupThousands(n), strings.Join(parts, ", ")))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range summary {
		if _, err := fmt.Fprintln(w, s); err != nil {
			return err
		}
	}
	return nil
}

// fillAndMeasure builds one dedup, fills it with n distinct pairs and
// measures the heap it holds and its false-positive rate.
//
// The n pairs are spread evenly over the K slices of one TTL, slice i
// receiving its share at t0 + i·TTL/K with t0 on a slice boundary: the
// dedup then holds n pairs in K generations, as in steady state with n
// distinct pairs per TTL just before a rotation. The (K+1)th generation is
// still empty, so a Bloom lookup probes K full filters and one empty one;
// in steady state the oldest generation would also hold up to n/K pairs
// still inside its TTL, raising the measured rate by about (K+1)/K.
func fillAndMeasure(mode string, n int, p float64, cfg memoryConfig, campaigns [][]byte) (memoryResult, error) {
	r := memoryResult{mode: mode, n: n, k: cfg.slices, p: p, fresh: cfg.fresh}
	slice := memoryTTL / time.Duration(cfg.slices)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	t0 := time.Unix(0, base-base%int64(slice)).UTC()

	// Everything the fill loop uses is allocated before the first heap
	// reading, so the difference is the dedup alone.
	fill := rand.NewPCG(cfg.seed, fillStream)
	user := make([]byte, 0, uuidLen)

	before := heapInUse()
	d, err := sketch.New(mode, sketch.Options{TTL: memoryTTL, Slices: cfg.slices, Capacity: n, FalsePositiveRate: p})
	if err != nil {
		return r, err
	}
	c := 0
	for s := range cfg.slices {
		now := t0.Add(time.Duration(s) * slice)
		count := n / cfg.slices
		if s < n%cfg.slices {
			count++
		}
		for range count {
			user = appendUUID(user[:0], fill.Uint64(), fill.Uint64())
			if d.TestAndAdd(campaigns[c], user, now) {
				r.fillSeen++
			}
			if c++; c == len(campaigns) {
				c = 0
			}
		}
	}
	after := heapInUse()
	runtime.KeepAlive(d)
	r.held = int64(after) - int64(before)
	if mode == "exact" && r.fillSeen > 0 {
		return r, fmt.Errorf("exact reported %d of %d distinct fill pairs as seen", r.fillSeen, n)
	}

	// Fresh pairs are new users of the same campaigns, the case a false
	// positive costs in production: a new impression undercounted. They
	// are tested read-only, so they do not load the filters further.
	last := t0.Add(time.Duration(cfg.slices-1) * slice)
	freshRand := rand.NewPCG(cfg.seed, freshStream)
	for i := range cfg.fresh {
		user = appendUUID(user[:0], freshRand.Uint64(), freshRand.Uint64())
		if d.Test(campaigns[i%len(campaigns)], user, last) {
			r.hits++
		}
	}
	if mode == "exact" && r.hits > 0 {
		return r, fmt.Errorf("exact reported %d of %d fresh pairs as seen", r.hits, cfg.fresh)
	}
	return r, nil
}

// heapInUse returns the bytes of live heap objects after a full collection.
// It collects twice: objects kept alive for a finalizer by the first cycle
// are freed by the second, so readings taken before and after a fill differ
// only by what the fill still references.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// campaignIDs returns n campaign ids like campaign-0042.
func campaignIDs(n int) [][]byte {
	ids := make([][]byte, n)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "campaign-%04d", i)
	}
	return ids
}

// uuidLen is the length of a UUID in its canonical text form.
const uuidLen = 36

// appendUUID appends the 128 bits hi:lo as a random (version 4, RFC 9562
// variant) UUID in canonical lowercase form, 8-4-4-4-12 hex digits, the
// shape of the advertising ids (IDFA, GAID) ad SDKs send. Six of the bits
// are overwritten by the version and variant. It does not allocate when dst
// has room for 36 more bytes.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	const hex = "0123456789abcdef"
	hi = hi&^0xf000 | 0x4000 // version 4
	lo = lo&^(3<<62) | 2<<62 // variant 10
	for i := 60; i >= 0; i -= 4 {
		if i == 28 || i == 12 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[hi>>uint(i)&0xf])
	}
	for i := 60; i >= 0; i -= 4 {
		if i == 60 || i == 44 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[lo>>uint(i)&0xf])
	}
	return dst
}

// singleBound is the size in bits of one optimally sized Bloom filter
// holding n pairs at false-positive rate p: n·log2(1/p)/ln 2. No Bloom
// filter for n pairs at p is smaller; a window of rotating filters cannot
// reach it, as it also holds the slice of pairs about to expire and splits
// p among its generations.
func singleBound(n int, p float64) float64 {
	return float64(n) * math.Log2(1/p) / math.Ln2
}

// slicedBound is the size in bits of k+1 optimal filters of n/k pairs each,
// each at rate p/(k+1) so that a lookup probing all of them stays at p:
// (k+1)/k · n · log2((k+1)/p) / ln 2. It is what a window of k slices must
// hold with optimally sized filters, the yardstick for Bloom's layout.
func slicedBound(n int, p float64, k int) float64 {
	kk := float64(k)
	return (kk + 1) / kk * float64(n) * math.Log2((kk+1)/p) / math.Ln2
}

const memoryHeader = "mode\tpairs\ttarget FP\tmeasured FP\tseen in fill\theld MiB\tbytes/pair\tbits/pair\tsingle bound MiB\tsliced bound MiB\theld/sliced\t"

// formatMemoryRow returns one table row: tab-terminated cells in the order of
// memoryHeader. Exact rows have no target and no bounds: "-".
func formatMemoryRow(r memoryResult) string {
	const mib = 1 << 20
	cells := []string{
		r.mode,
		groupThousands(r.n),
		"-",
		formatRate(float64(r.hits) / float64(r.fresh)),
		strconv.Itoa(r.fillSeen),
		fmt.Sprintf("%.2f", float64(r.held)/mib),
		fmt.Sprintf("%.2f", float64(r.held)/float64(r.n)),
		fmt.Sprintf("%.1f", float64(r.held)*8/float64(r.n)),
		"-",
		"-",
		"-",
	}
	if r.mode == "bloom" {
		sliced := slicedBound(r.n, r.p, r.k)
		cells[2] = formatRate(r.p)
		cells[8] = fmt.Sprintf("%.2f", singleBound(r.n, r.p)/8/mib)
		cells[9] = fmt.Sprintf("%.2f", sliced/8/mib)
		cells[10] = fmt.Sprintf("%.3f", float64(r.held)*8/sliced)
	}
	return strings.Join(cells, "\t") + "\t"
}

// formatRate formats a rate as a percentage with three significant
// digits: 0.01 is "1%", 0.000871 is "0.0871%", 0 is "0%".
func formatRate(p float64) string {
	return strconv.FormatFloat(p*100, 'g', 3, 64) + "%"
}

// groupThousands formats n with thousands separators: 10000000 is
// "10,000,000".
func groupThousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
