package main

import (
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		addr: "127.0.0.1:8080", dedup: "bloom", dedupTTL: time.Hour, dedupSlices: 6,
		dedupCapacity: 10_000_000, dedupFP: 0.001, dedupMaxPairs: 5_000_000, freqCapacity: defaultFrequencyCapacity, maxBody: 4194304, maxBodyMemory: 128 << 20, maxSkew: time.Minute,
		readTimeout: 5 * time.Second, writeTimeout: 5 * time.Second, idleTimeout: time.Minute,
		maxConns: 10000, maxConnsPerIP: 1000, maxHeader: 8192, maxCampaigns: 100000, maxAdsPerCampaign: 1000,
		logFormat: "text", logLevel: "info", fsyncInterval: time.Second, snapshotEvery: time.Minute,
		store: "memory", redisTimeout: 200 * time.Millisecond,
	}
	if *c != want {
		t.Fatalf("defaults: got %+v, want %+v", *c, want)
	}
}

// TestCORSOriginsFlag: -cors-origins is a comma-separated list, spaces
// and empty entries ignored, from the flag or the environment.
func TestCORSOriginsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{nil, nil, nil},
		{[]string{"-cors-origins", "*"}, nil, []string{"*"}},
		{[]string{"-cors-origins", "https://shop.example, http://127.0.0.1:3000,"}, nil, []string{"https://shop.example", "http://127.0.0.1:3000"}},
		{nil, map[string]string{"IMPRESSIOND_CORS_ORIGINS": "https://a.example,https://b.example"}, []string{"https://a.example", "https://b.example"}},
	} {
		c, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.args, tc.env, err)
		}
		if got := c.corsOriginList(); !slices.Equal(got, tc.want) {
			t.Errorf("%v %v: got %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
}

// TestDedupDefaultWithRedis: exact is the default dedup mode on a shared
// Redis, bloom in process; an explicit -dedup (flag or environment) wins.
func TestDedupDefaultWithRedis(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "bloom"},
		{[]string{"-store", "redis://127.0.0.1:6379/0"}, nil, "exact"},
		{[]string{"-store", "redis://127.0.0.1:6379/0", "-dedup", "bloom"}, nil, "bloom"},
		{[]string{"-store", "redis://127.0.0.1:6379/0"}, map[string]string{"IMPRESSIOND_DEDUP": "bloom"}, "bloom"},
	} {
		cfg, err := parseConfig(c.args, env(c.env), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.dedup != c.want {
			t.Fatalf("%v %v: -dedup %s, want %s", c.args, c.env, cfg.dedup, c.want)
		}
	}
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	c, err := parseConfig(
		[]string{"-dedup-ttl", "30m", "-max-body=1024"},
		env(map[string]string{
			"IMPRESSIOND_DEDUP":             "exact",
			"IMPRESSIOND_DEDUP_TTL":         "2h", // the flag wins
			"IMPRESSIOND_DEDUP_SLICES":      "12",
			"IMPRESSIOND_DEDUP_CAPACITY":    "5000",
			"IMPRESSIOND_DEDUP_FP":          "0.01",
			"IMPRESSIOND_DEDUP_MAX_PAIRS":   "250000",
			"IMPRESSIOND_ADDR":              ":9999",
			"IMPRESSIOND_MAX_SKEW":          "5s",
			"IMPRESSIOND_READ_TIMEOUT":      "2s",
			"IMPRESSIOND_ADMIN_TOKEN":       "s3cret",
			"IMPRESSIOND_MAX_CAMPAIGNS":     "7",
			"IMPRESSIOND_LOG_FORMAT":        "json",
			"IMPRESSIOND_LOG_LEVEL":         "debug",
			"IMPRESSIOND_ACCESS_LOG":        "true",
			"IMPRESSIOND_DATA_DIR":          "/var/lib/impressiond",
			"IMPRESSIOND_FSYNC_INTERVAL":    "0",
			"IMPRESSIOND_SNAPSHOT_INTERVAL": "5m",
		}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		addr: ":9999", dedup: "exact", dedupTTL: 30 * time.Minute, dedupSlices: 12,
		dedupCapacity: 5000, dedupFP: 0.01, dedupMaxPairs: 250000, freqCapacity: defaultFrequencyCapacity, maxBody: 1024, maxBodyMemory: 128 << 20, maxSkew: 5 * time.Second,
		readTimeout: 2 * time.Second, writeTimeout: 5 * time.Second, idleTimeout: time.Minute,
		maxConns: 10000, maxConnsPerIP: 1000, maxHeader: 8192, maxCampaigns: 7, maxAdsPerCampaign: 1000, adminToken: "s3cret",
		logFormat: "json", logLevel: "debug", accessLog: true,
		dataDir: "/var/lib/impressiond", fsyncInterval: 0, snapshotEvery: 5 * time.Minute,
		store: "memory", redisTimeout: 200 * time.Millisecond,
	}
	if *c != want {
		t.Fatalf("got %+v, want %+v", *c, want)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		flag string // the message must name it
	}{
		{[]string{"-dedup", "lru"}, nil, "-dedup"},
		{[]string{"-dedup-ttl", "soon"}, nil, "-dedup-ttl"},
		{[]string{"-dedup-ttl", "0s"}, nil, "-dedup-ttl"},
		{[]string{"-dedup-ttl", "5ms", "-dedup-slices", "6"}, nil, "-dedup-ttl"},
		{[]string{"-dedup-slices", "0"}, nil, "-dedup-slices"},
		{[]string{"-dedup-slices", "six"}, nil, "-dedup-slices"},
		{[]string{"-dedup-capacity", "-1"}, nil, "-dedup-capacity"},
		{[]string{"-dedup-fp", "1"}, nil, "-dedup-fp"},
		{[]string{"-dedup-fp", "0"}, nil, "-dedup-fp"},
		{[]string{"-dedup-max-pairs", "0"}, nil, "-dedup-max-pairs"},
		{[]string{"-dedup-max-pairs", "-5"}, nil, "-dedup-max-pairs"},
		{[]string{"-dedup-max-pairs", "lots"}, nil, "-dedup-max-pairs"},
		{nil, map[string]string{"IMPRESSIOND_DEDUP_MAX_PAIRS": "1e6"}, "-dedup-max-pairs"},
		{[]string{"-max-body", "0"}, nil, "-max-body"},
		{[]string{"-max-body-memory", "1048575", "-max-body", "1048576"}, nil, "-max-body-memory"},
		{nil, map[string]string{"IMPRESSIOND_MAX_BODY_MEMORY": "lots"}, "-max-body-memory"},
		{[]string{"-fsync-interval", "-1s"}, nil, "-fsync-interval"},
		{[]string{"-store", "postgres"}, nil, "-store"},
		{[]string{"-store", "redis://127.0.0.1:6379/0", "-data-dir", "d"}, nil, "-data-dir"},
		{[]string{"-redis-timeout", "0s"}, nil, "-redis-timeout"},
		{[]string{"-snapshot-interval", "0"}, nil, "-snapshot-interval"},
		{nil, map[string]string{"IMPRESSIOND_FSYNC_INTERVAL": "often"}, "-fsync-interval"},
		{[]string{"-max-skew", "-1s"}, nil, "-max-skew"},
		{[]string{"-addr", ""}, nil, "-addr"},
		{[]string{"-no-such-flag"}, nil, "-no-such-flag"},
		{nil, map[string]string{"IMPRESSIOND_DEDUP_FP": "lots"}, "-dedup-fp"},
		{nil, map[string]string{"IMPRESSIOND_MAX_BODY": "4MB"}, "-max-body"},
		{nil, map[string]string{"IMPRESSIOND_DEDUP": "maybe"}, "-dedup"},
		{[]string{"-read-timeout", "0s"}, nil, "-read-timeout"},
		{[]string{"-idle-timeout", "-1s"}, nil, "-idle-timeout"},
		{[]string{"-max-conns", "0"}, nil, "-max-conns"},
		{[]string{"-max-conns-per-ip", "0"}, nil, "-max-conns-per-ip"},
		{[]string{"-max-header-bytes", "100"}, nil, "-max-header-bytes"},
		{[]string{"-max-campaigns", "0"}, nil, "-max-campaigns"},
		{[]string{"-log-format", "xml"}, nil, "-log-format"},
		{[]string{"-log-level", "loud"}, nil, "-log-level"},
		{nil, map[string]string{"IMPRESSIOND_ACCESS_LOG": "maybe"}, "-access-log"},
		{[]string{"-cors-origins", "shop.example"}, nil, "-cors-origins"},
		{[]string{"-cors-origins", "https://shop.example,https://shop.example/page"}, nil, "-cors-origins"},
		{nil, map[string]string{"IMPRESSIOND_CORS_ORIGINS": "ftp://shop.example"}, "-cors-origins"},
	} {
		_, err := parseConfig(tc.args, env(tc.env), io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v %v: got %v, want a usage error", tc.args, tc.env, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.flag) || strings.Contains(msg, "\n") {
			t.Errorf("%v %v: message %q must be one line naming %s", tc.args, tc.env, msg, tc.flag)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:8080", true},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.1.2.3:8080", false},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != tc.want {
			t.Errorf("isLoopback(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
