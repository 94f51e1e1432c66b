package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/impressiond/impressiond/api"
)

// envPrefix names the environment variable of every flag:
// -dedup-ttl reads IMPRESSIOND_DEDUP_TTL. A flag on the command line wins.
const envPrefix = "IMPRESSIOND_"

// defaultMaxPairs bounds exact mode's window at about 0.5 GiB of live heap
// with UUID user ids (106 bytes a pair, measured by the sketch package's
// TestExactBytesMatchesHeap), about 1 GiB of RSS with the garbage
// collector's default headroom, and 1.7 GiB of heap if every id is as long
// as the API allows (339 bytes a pair): within a 2 to 4 GiB VM.
const defaultMaxPairs = 5_000_000

// defaultFrequencyCapacity sizes the bloom-mode frequency sketch; its
// memory is sketch.NewFrequencySketch's formula of it.
const defaultFrequencyCapacity = 20_000

type config struct {
	addr              string
	dedup             string
	dedupTTL          time.Duration
	dedupSlices       int
	dedupCapacity     int
	dedupFP           float64
	dedupMaxPairs     int
	freqCapacity      int
	maxBody           int
	maxBodyMemory     int
	maxSkew           time.Duration
	debugAddr         string
	logFormat         string
	logLevel          string
	accessLog         bool
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxConns          int
	maxConnsPerIP     int
	maxHeader         int
	maxCampaigns      int
	maxAdsPerCampaign int
	adminToken        string
	ingestToken       string
	corsOrigins       string // comma-separated; see corsOriginList
	store             string
	dataDir           string
	fsyncInterval     time.Duration
	snapshotEvery     time.Duration
	dedupReset        bool
	redisTimeout      time.Duration
	version           bool
}

// usageError is a bad flag or environment value: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("impressiond", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&c.dedup, "dedup", "bloom", "dedup mode: bloom (fixed memory, may undercount by at most the false-positive rate) or exact (never wrong, memory grows with distinct users); with -store redis:// the default is exact")
	fs.DurationVar(&c.dedupTTL, "dedup-ttl", time.Hour, "how long a counted (campaign, user) pair blocks repeats")
	fs.IntVar(&c.dedupSlices, "dedup-slices", 6, "sub-windows per TTL; one filter (or map) per sub-window")
	fs.IntVar(&c.dedupCapacity, "dedup-capacity", 10_000_000, "expected distinct pairs per TTL (sizes the Bloom filters)")
	fs.Float64Var(&c.dedupFP, "dedup-fp", 0.001, "target false-positive rate of the whole bloom dedup layer")
	fs.IntVar(&c.dedupMaxPairs, "dedup-max-pairs", defaultMaxPairs, "most distinct pairs the exact dedup window holds (about 106 bytes each with UUID user ids); new pairs beyond it get 503 with Retry-After (ignored in bloom mode and with -store redis://)")
	fs.IntVar(&c.freqCapacity, "frequency-capacity", defaultFrequencyCapacity, "expected distinct (campaign, user) pairs exposed per day, spread over it: sizes the fixed-memory count-min sketch frequency caps are checked against in bloom mode (its memory is logged at start-up; counts may only be overestimated, more often beyond it); ignored with -dedup exact, which counts exactly, and with -store redis://")
	fs.IntVar(&c.maxBody, "max-body", 4<<20, "largest request body in bytes")
	fs.IntVar(&c.maxBodyMemory, "max-body-memory", 128<<20, "most memory in bytes the request bodies being read hold, all together (plus at most 8 KiB read ahead per connection); a request whose body does not fit gets 503 and its connection closed. At least -max-body")
	fs.DurationVar(&c.maxSkew, "max-skew", time.Minute, "how far in the future an impression timestamp may be")
	fs.DurationVar(&c.readTimeout, "read-timeout", 5*time.Second, "longest time to read one request, headers and body")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 5*time.Second, "longest time to write one response")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 60*time.Second, "longest time a keep-alive connection may wait for its next request")
	fs.IntVar(&c.maxConns, "max-conns", 10000, "most concurrent connections; at the cap the longest-idle keep-alive connection is closed for a new one, and only when none is idle is the new one refused with 503")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", 1000, "most concurrent connections from one client IP; more are refused with 429")
	fs.IntVar(&c.maxHeader, "max-header-bytes", 8192, "largest request line and headers in bytes; larger get 431")
	fs.IntVar(&c.maxCampaigns, "max-campaigns", 100000, "most campaigns that can be created")
	fs.IntVar(&c.maxAdsPerCampaign, "max-ads-per-campaign", 1000, "most ad ids a campaign counts one by one (GET /api/v1/campaigns/{id}/ads); impressions of later new ids count as other")
	fs.StringVar(&c.adminToken, "admin-token", "", "if set, bearer token required to create, list and read campaigns and stats")
	fs.StringVar(&c.ingestToken, "ingest-token", "", "if set, bearer token required to track impressions")
	fs.StringVar(&c.corsOrigins, "cors-origins", "", "comma-separated origins (scheme://host[:port], or * for any) whose pages may call the ingest routes from a browser (CORS); empty sends no CORS headers")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "least severe level logged: debug, info, warn or error")
	fs.BoolVar(&c.accessLog, "access-log", false, "log one line per request")
	fs.StringVar(&c.debugAddr, "debug-addr", "", "if set, serve net/http/pprof on this separate address (never on -addr)")
	fs.StringVar(&c.store, "store", "memory", "where state lives: memory (this process, with -data-dir for durability), or redis://host:port/db, rediss://... or a comma-separated list of Redis Cluster seeds, shared by every instance")
	fs.DurationVar(&c.redisTimeout, "redis-timeout", 200*time.Millisecond, "longest wait for Redis on any request; slower requests get 503")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for the write-ahead log and snapshots; empty keeps everything in memory only (lost on restart)")
	fs.DurationVar(&c.fsyncInterval, "fsync-interval", time.Second, "how often the write-ahead log is fsync'd; 0 makes every write wait for the group commit that fsyncs it")
	fs.DurationVar(&c.snapshotEvery, "snapshot-interval", time.Minute, "how often a snapshot of the whole state is written (and the log before it deleted)")
	fs.BoolVar(&c.dedupReset, "dedup-reset", false, "with -data-dir: if the dedup window there cannot be loaded (an earlier version's, or other -dedup flags), start it empty and keep the campaigns and counts; repeats of pairs counted in the last TTL are then counted again")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")

	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := lookup(getenv, name)
		if !ok || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = &usageError{fmt.Sprintf("invalid value %q for flag -%s (from %s): %v", v, f.Name, name, unwrapFlagErr(err))}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintf(stderr, "Usage: impressiond [flags]\n\nEvery flag can also be set with %s<FLAG> (upper case, - as _).\n\n", envPrefix)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	// In Redis, exact mode is the better default: its sets cost about 88
	// bytes per pair and run batches fastest, where bloom mode fixes K+1
	// filters per campaign whatever its traffic (docs/SCALING.md).
	dedupSet := false
	fs.Visit(func(f *flag.Flag) { dedupSet = dedupSet || f.Name == "dedup" })
	if !dedupSet && c.store != "memory" {
		c.dedup = "exact"
	}
	return &c, c.validate()
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// unwrapFlagErr drops the flag package's own prefixes, which repeat what our
// message already says.
func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func (c *config) validate() error {
	bad := func(flag string, v any, why string) error {
		return &usageError{fmt.Sprintf("invalid value %q for flag -%s: %s", fmt.Sprint(v), flag, why)}
	}
	switch {
	case c.addr == "":
		return bad("addr", c.addr, "must not be empty")
	case c.dedup != "bloom" && c.dedup != "exact":
		return bad("dedup", c.dedup, "want bloom or exact")
	case c.dedupTTL <= 0:
		return bad("dedup-ttl", c.dedupTTL, "must be positive")
	case c.dedupSlices < 1 || c.dedupSlices > 1024:
		return bad("dedup-slices", c.dedupSlices, "must be between 1 and 1024")
	case c.dedupTTL/time.Duration(c.dedupSlices) < time.Millisecond:
		return bad("dedup-ttl", c.dedupTTL, fmt.Sprintf("ttl divided by -dedup-slices %d must be at least 1ms", c.dedupSlices))
	case c.dedupCapacity < 1:
		return bad("dedup-capacity", c.dedupCapacity, "must be positive")
	case !(c.dedupFP >= 1e-12 && c.dedupFP < 1):
		return bad("dedup-fp", c.dedupFP, "must be in [1e-12, 1)")
	case c.dedupMaxPairs < 1:
		return bad("dedup-max-pairs", c.dedupMaxPairs, "must be positive")
	case c.freqCapacity < 1:
		return bad("frequency-capacity", c.freqCapacity, "must be positive")
	case c.maxBody < 1:
		return bad("max-body", c.maxBody, "must be positive")
	case c.maxBodyMemory < c.maxBody:
		return bad("max-body-memory", c.maxBodyMemory, fmt.Sprintf("must be at least -max-body %d, or no body of the largest size could be read", c.maxBody))
	case c.maxSkew < 0:
		return bad("max-skew", c.maxSkew, "must not be negative")
	case c.readTimeout <= 0:
		return bad("read-timeout", c.readTimeout, "must be positive")
	case c.writeTimeout <= 0:
		return bad("write-timeout", c.writeTimeout, "must be positive")
	case c.idleTimeout <= 0:
		return bad("idle-timeout", c.idleTimeout, "must be positive")
	case c.maxConns < 1:
		return bad("max-conns", c.maxConns, "must be positive")
	case c.maxConnsPerIP < 1:
		return bad("max-conns-per-ip", c.maxConnsPerIP, "must be positive")
	case c.maxHeader < 1024:
		return bad("max-header-bytes", c.maxHeader, "must be at least 1024")
	case c.maxCampaigns < 1:
		return bad("max-campaigns", c.maxCampaigns, "must be positive")
	case c.maxAdsPerCampaign < 1:
		return bad("max-ads-per-campaign", c.maxAdsPerCampaign, "must be positive")
	case c.store != "memory" && !strings.HasPrefix(c.store, "redis://") && !strings.HasPrefix(c.store, "rediss://") && !strings.Contains(c.store, ":"):
		return bad("store", c.store, "want memory, redis://host:port/db, rediss://... or host:port seeds separated by commas")
	case c.store != "memory" && c.dataDir != "":
		return bad("data-dir", c.dataDir, "must be empty with -store redis: the state lives in Redis")
	case c.redisTimeout <= 0:
		return bad("redis-timeout", c.redisTimeout, "must be positive")
	case c.fsyncInterval < 0:
		return bad("fsync-interval", c.fsyncInterval, "must not be negative")
	case c.snapshotEvery <= 0:
		return bad("snapshot-interval", c.snapshotEvery, "must be positive")
	case c.logFormat != "text" && c.logFormat != "json":
		return bad("log-format", c.logFormat, "want text or json")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return bad("log-level", c.logLevel, "want debug, info, warn or error")
	}
	for _, o := range c.corsOriginList() {
		if _, err := api.ParseCORSOrigin(o); err != nil {
			return bad("cors-origins", c.corsOrigins, err.Error())
		}
	}
	return nil
}

// corsOriginList splits -cors-origins at commas, dropping empty entries.
func (c *config) corsOriginList() []string {
	var list []string
	for o := range strings.SplitSeq(c.corsOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			list = append(list, o)
		}
	}
	return list
}

// logger builds the process logger the flags ask for.
func (c *config) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.logLevel)) // validated by validate
	opts := &slog.HandlerOptions{Level: lvl}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
