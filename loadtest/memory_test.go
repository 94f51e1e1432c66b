package main

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestMemorySingleBound(t *testing.T) {
	for _, c := range []struct {
		n    int
		p    float64
		want float64 // n·log2(1/p)/ln 2
	}{
		{1_000_000, 0.01, 9_585_058.4},
		{10_000_000, 0.001, 143_775_875.7},
		{1, 0.5, 1 / math.Ln2},
	} {
		if got := singleBound(c.n, c.p); math.Abs(got-c.want) > 1 {
			t.Errorf("singleBound(%d, %g) = %.1f, want %.1f ± 1", c.n, c.p, got, c.want)
		}
	}
}

func TestMemorySlicedBound(t *testing.T) {
	for _, c := range []struct {
		n    int
		p    float64
		k    int
		want float64 // (k+1)/k · n · log2((k+1)/p) / ln 2
	}{
		{1_000_000, 0.01, 6, 15_907_751.3},
		{10_000_000, 0.001, 6, 214_990_353.6},
		// One slice: two generations of n pairs, each at p/2.
		{1_000_000, 0.01, 1, 2 * 1_000_000 * math.Log2(200) / math.Ln2},
	} {
		if got := slicedBound(c.n, c.p, c.k); math.Abs(got-c.want) > 1 {
			t.Errorf("slicedBound(%d, %g, %d) = %.1f, want %.1f ± 1", c.n, c.p, c.k, got, c.want)
		}
	}
	// More slices hold the expiring slice more tightly, and the bound
	// approaches the single filter's from above.
	n, p := 1_000_000, 0.001
	prev := math.Inf(1)
	for _, k := range []int{1, 2, 6, 60, 600} {
		b := slicedBound(n, p, k)
		if b <= singleBound(n, p) {
			t.Errorf("slicedBound(k=%d) = %.0f, not above singleBound %.0f", k, b, singleBound(n, p))
		}
		if k < 60 && b >= prev {
			t.Errorf("slicedBound(k=%d) = %.0f, not below k's predecessor %.0f", k, b, prev)
		}
		prev = b
	}
}

func TestMemoryAppendUUID(t *testing.T) {
	got := appendUUID([]byte("u:"), 0x0123456789abcdef, 0xfedcba9876543210)
	// Version nibble 4 replaces the c of cdef; variant bits 10 turn fe into be.
	if want := "u:01234567-89ab-4def-bedc-ba9876543210"; string(got) != want {
		t.Errorf("appendUUID = %q, want %q", got, want)
	}
	if got := appendUUID(nil, 0, 0); string(got) != "00000000-0000-4000-8000-000000000000" {
		t.Errorf("appendUUID(0, 0) = %q", got)
	}
	if got := appendUUID(nil, ^uint64(0), ^uint64(0)); string(got) != "ffffffff-ffff-4fff-bfff-ffffffffffff" {
		t.Errorf("appendUUID(max, max) = %q", got)
	}
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if u := appendUUID(nil, 0x6f1c2b3a9d4e5f60, 0x8a7b6c5d4e3f2a1b); len(u) != uuidLen || !v4.Match(u) {
		t.Errorf("appendUUID = %q, not a canonical version 4 UUID", u)
	}
	buf := make([]byte, 0, uuidLen)
	if n := testing.AllocsPerRun(100, func() { buf = appendUUID(buf[:0], 1, 2) }); n != 0 {
		t.Errorf("appendUUID into a buffer with room allocates %v times", n)
	}
}

func TestMemoryFormatRow(t *testing.T) {
	bloom := memoryResult{mode: "bloom", n: 10_000_000, k: 6, p: 0.001, fillSeen: 2919, fresh: 1_000_000, hits: 707, held: 29_556_736}
	// held is 28.1875 MiB, 2.956 bytes or 23.65 bits per pair; the bounds
	// are 143,775,875.7 bits (17.14 MiB) and 214,990,353.6 bits (25.63
	// MiB), and 29,556,736·8 / 214,990,353.6 = 1.0998.
	want := "bloom\t10,000,000\t0.1%\t0.0707%\t2919\t28.19\t2.96\t23.6\t17.14\t25.63\t1.100\t"
	if got := formatMemoryRow(bloom); got != want {
		t.Errorf("bloom row:\n got %q\nwant %q", got, want)
	}
	exact := memoryResult{mode: "exact", n: 1_000_000, k: 6, fresh: 1_000_000, held: 106_090_000}
	want = "exact\t1,000,000\t-\t0%\t0\t101.18\t106.09\t848.7\t-\t-\t-\t"
	if got := formatMemoryRow(exact); got != want {
		t.Errorf("exact row:\n got %q\nwant %q", got, want)
	}
	if cells, cols := strings.Count(want, "\t"), strings.Count(memoryHeader, "\t"); cells != cols {
		t.Errorf("row has %d cells, header %d", cells, cols)
	}
}

func TestMemoryFormatHelpers(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 60_000: "60,000", 10_000_000: "10,000,000", -1234: "-1,234"} {
		if got := groupThousands(n); got != want {
			t.Errorf("groupThousands(%d) = %q, want %q", n, got, want)
		}
	}
	for p, want := range map[float64]string{0.01: "1%", 0.001: "0.1%", 0.000707: "0.0707%", 0: "0%"} {
		if got := formatRate(p); got != want {
			t.Errorf("formatRate(%g) = %q, want %q", p, got, want)
		}
	}
}

func TestRunMemory(t *testing.T) {
	var out bytes.Buffer
	if err := runMemory([]string{"-pairs", "60000", "-fp", "0.01", "-fresh", "100000"}, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	rows := map[string][]string{}
	for _, line := range strings.Split(out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) == 11 && (f[0] == "bloom" || f[0] == "exact") {
			rows[f[0]] = f
		}
	}
	bloom, exact := rows["bloom"], rows["exact"]
	if bloom == nil || exact == nil {
		t.Fatalf("want a bloom and an exact row, got:\n%s", out.String())
	}
	if exact[1] != "60,000" || exact[3] != "0%" || exact[4] != "0" {
		t.Errorf("exact row %q: want 60,000 pairs, measured FP 0%% and none seen in fill", exact)
	}
	if bloom[1] != "60,000" || bloom[2] != "1%" {
		t.Errorf("bloom row %q: want 60,000 pairs at target 1%%", bloom)
	}
	if !strings.Contains(out.String(), "N=60,000: bloom at p=1% is ") {
		t.Errorf("no summary line for N=60,000:\n%s", out.String())
	}
}

func TestRunMemoryFlags(t *testing.T) {
	if err := runMemory([]string{"-h"}, new(bytes.Buffer)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
	for _, args := range [][]string{
		{"-nope"},
		{"-pairs", "0"},
		{"-pairs", "1e6x"},
		{"-fp", "1"},
		{"-fp", "0"},
		{"-modes", "bloom,cuckoo"},
		{"-slices", "0"},
		{"-fresh", "0"},
		{"extra"},
	} {
		var out bytes.Buffer
		if err := runMemory(args, &out); !errors.Is(err, errUsage) {
			t.Errorf("%q: got %v, want errUsage", args, err)
		}
		if out.Len() > 0 {
			t.Errorf("%q: wrote %q to stdout, want nothing", args, out.String())
		}
	}
}
