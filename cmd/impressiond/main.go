// Command impressiond serves the impression-counting API. See README.md for
// the flags; each also reads IMPRESSIOND_<FLAG> from the environment.
//
// It owns the flags, the environment, the start-up log and the process
// lifecycle: it builds the dedup window or opens the Redis store from the
// flags, opens a tracker.Tracker on it, and serves it with api.Server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/impressiond/impressiond/api"
	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store/redisstore"
	"github.com/impressiond/impressiond/tracker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownTimeout bounds how long in-flight requests get to finish.
const shutdownTimeout = 30 * time.Second

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "impressiond: %v\n", err)
		os.Exit(2)
	}
	if cfg.version {
		fmt.Println("impressiond", version)
		return
	}
	log := cfg.logger(os.Stderr)
	if err := run(cfg, log); err != nil {
		log.Error("impressiond stopped", "err", err)
		os.Exit(1)
	}
}

// isLoopback reports whether a listener only accepts local connections.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func run(cfg *config, log *slog.Logger) error {
	dedupOpts := sketch.Options{
		TTL:               cfg.dedupTTL,
		Slices:            cfg.dedupSlices,
		Capacity:          cfg.dedupCapacity,
		FalsePositiveRate: cfg.dedupFP,
	}
	var dedup sketch.Deduper
	var freq sketch.Frequency
	var shared *redisstore.Store
	var err error
	if cfg.store == "memory" {
		o := dedupOpts
		o.MaxPairs = cfg.dedupMaxPairs // Redis's sets are bounded by Redis
		if dedup, err = sketch.New(cfg.dedup, o); err != nil {
			return err
		}
		// Exact dedup counts exposures exactly too; bloom in fixed memory.
		if cfg.dedup == "exact" {
			freq = sketch.NewFrequencyExact()
		} else {
			freq = sketch.NewFrequencySketch(cfg.freqCapacity)
		}
	} else {
		shared, err = redisstore.Open(redisstore.Options{URL: cfg.store, Timeout: cfg.redisTimeout, Mode: cfg.dedup, Dedup: dedupOpts})
		if err != nil {
			return err
		}
		defer shared.Close()
	}
	core, err := tracker.Open(tracker.Options{
		Dedup:             dedup,
		Frequency:         freq,
		Redis:             shared,
		MaxSkew:           cfg.maxSkew,
		MaxCampaigns:      cfg.maxCampaigns,
		MaxAdsPerCampaign: cfg.maxAdsPerCampaign,
		Logger:            log,
		DataDir:           cfg.dataDir,
		FsyncInterval:     cfg.fsyncInterval,
		SnapshotInterval:  cfg.snapshotEvery,
		ResetDedup:        cfg.dedupReset,
	})
	if err != nil {
		return err
	}
	srv, err := api.New(api.Options{
		Tracker:       core,
		MaxBodySize:   cfg.maxBody,
		MaxBodyMemory: cfg.maxBodyMemory,
		Logger:        log,

		ReadTimeout:    cfg.readTimeout,
		WriteTimeout:   cfg.writeTimeout,
		IdleTimeout:    cfg.idleTimeout,
		MaxConns:       cfg.maxConns,
		MaxConnsPerIP:  cfg.maxConnsPerIP,
		MaxHeaderBytes: cfg.maxHeader,
		AdminToken:     cfg.adminToken,
		IngestToken:    cfg.ingestToken,
		CORSOrigins:    cfg.corsOriginList(),
		AccessLog:      cfg.accessLog,
	})
	if err != nil {
		core.Close()
		return err
	}
	if cfg.debugAddr != "" {
		stopDebug, err := serveDebug(cfg.debugAddr, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer stopDebug()
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("cannot listen on -addr %s: %w", cfg.addr, err)
	}

	attrs := []any{
		"version", version, "addr", ln.Addr().String(), "dedup", cfg.dedup,
		"dedup_ttl", cfg.dedupTTL, "dedup_slices", cfg.dedupSlices,
		"dedup_capacity", cfg.dedupCapacity, "dedup_fp", cfg.dedupFP, "dedup_max_pairs", cfg.dedupMaxPairs,
		"max_body", cfg.maxBody, "max_body_memory", cfg.maxBodyMemory, "max_skew", cfg.maxSkew,
		"read_timeout", cfg.readTimeout, "write_timeout", cfg.writeTimeout, "idle_timeout", cfg.idleTimeout,
		"max_conns", cfg.maxConns, "max_conns_per_ip", cfg.maxConnsPerIP, "max_header_bytes", cfg.maxHeader,
		"max_campaigns", cfg.maxCampaigns, "access_log", cfg.accessLog, "cors_origins", cfg.corsOrigins,
		"store", redisstore.Redact(cfg.store), "data_dir", cfg.dataDir, "fsync_interval", cfg.fsyncInterval, "snapshot_interval", cfg.snapshotEvery,
		// Never the tokens themselves: only whether they are set.
		"admin_token", cfg.adminToken != "", "ingest_token", cfg.ingestToken != "",
	}
	if b, ok := dedup.(*sketch.Bloom); ok {
		attrs = append(attrs, "dedup_bytes", b.Bytes(), "dedup_memory", fmt.Sprintf("%.1fMiB", float64(b.Bytes())/(1<<20)),
			"bloom_filters", fmt.Sprintf("%d shards x %d sub-filters of %d pairs x %d bits, k=%d", b.Shards(), b.Pool().Slots, b.Pool().Load, b.FilterBits(), b.HashCount()))
	}
	switch f := freq.(type) {
	case *sketch.FrequencySketch:
		attrs = append(attrs, "frequency", "count-min sketch", "frequency_capacity", cfg.freqCapacity,
			"frequency_bytes", f.Bytes(), "frequency_memory", fmt.Sprintf("%.1fMiB", float64(f.Bytes())/(1<<20)))
	case *sketch.FrequencyExact:
		attrs = append(attrs, "frequency", "exact")
	}
	log.Info("impressiond starting", attrs...)
	logRestore(log, cfg, core.Restored())
	if (cfg.adminToken == "" || cfg.ingestToken == "") && !isLoopback(ln.Addr()) {
		log.Warn("listening on a non-loopback address without -admin-token and -ingest-token: anyone who can reach it can create campaigns and track impressions",
			"addr", ln.Addr().String(), "admin_token", cfg.adminToken != "", "ingest_token", cfg.ingestToken != "")
	}

	if shared != nil {
		if p := shared.Layout(); p.Slots > 0 {
			log.Info("bloom dedup in Redis: per active campaign, a pool of at most P sub-filters", "p", p.Slots,
				"bits_each", p.Bits, "k", p.Hashes, "pairs_each", p.Load,
				"redis_bytes_per_campaign", shared.MaxBytesPerCampaign())
		}
		if !shared.Healthy() {
			log.Warn("Redis does not answer yet; requests that need it get 503 until it does", "store", redisstore.Redact(cfg.store))
		}
	} else if cfg.dataDir == "" {
		log.Warn("persistence is off (-data-dir is empty): every count and dedup decision is lost when the process stops")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	if cfg.dataDir != "" {
		log.Info("shutting down: draining in-flight requests, then writing a snapshot")
	} else {
		log.Info("shutting down: draining in-flight requests")
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	log.Info("impressiond stopped")
	return nil
}

// logRestore reports what was restored from the data directory, and a torn
// write cut off the log's end.
func logRestore(log *slog.Logger, cfg *config, st tracker.RestoreStats) {
	if cfg.dataDir == "" {
		return
	}
	if st.Torn != nil {
		log.Warn("the write-ahead log ended in a torn write (a crash or power loss mid-write); the damaged tail was dropped", "err", st.Torn)
	}
	attrs := []any{"data_dir", cfg.dataDir, "campaigns", st.Campaigns, "log_segments", st.Segments,
		"log_records", st.Records, "took", st.Took.Round(time.Millisecond)}
	if st.Snapshot != "" {
		attrs = append(attrs, "snapshot", st.Snapshot, "snapshot_age", st.SnapshotAge.Round(time.Second))
	} else {
		attrs = append(attrs, "snapshot", "none")
	}
	attrs = append(attrs, "new_secret", st.NewSecret)
	log.Info("state restored", attrs...)
	if st.DedupReset != "" {
		log.Warn("-dedup-reset: the dedup window was started empty; repeats of pairs counted in the last TTL are counted again until it passes", "why", st.DedupReset)
	}
}
