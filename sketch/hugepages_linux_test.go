package sketch

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// vmFlagsAt returns the VmFlags of the mapping of this process holding
// addr, from /proc/self/smaps.
func vmFlagsAt(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := strings.Cut(strings.Fields(line)[0], "-"); ok && !strings.HasSuffix(line, ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uint64(addr) >= a && uint64(addr) < b
				continue
			}
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(line)[1:]
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

// TestAdviseHugePages: the tables the sketches read at random are marked
// for transparent huge pages ("hg" in the mapping's VmFlags), the
// frequency sketch's counters and the Bloom window's slab alike.
func TestAdviseHugePages(t *testing.T) {
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil || strings.Contains(string(b), "[never]") {
		t.Skip("transparent huge pages are not available here")
	}
	check := func(name string, p unsafe.Pointer, size uintptr) {
		t.Helper()
		// The first whole huge page inside the table is the one advised.
		addr := (uintptr(p) + hugePage - 1) &^ (hugePage - 1)
		if addr+hugePage > uintptr(p)+size {
			t.Fatalf("%s: %d bytes hold no whole huge page", name, size)
		}
		flags := vmFlagsAt(t, addr)
		for _, f := range flags {
			if f == "hg" {
				return
			}
		}
		t.Errorf("%s: mapping of %#x has VmFlags %v, want hg (MADV_HUGEPAGE)", name, addr, flags)
	}
	f := NewFrequencySketch(100_000)
	c := f.levels[3].counters
	check("frequency sketch", unsafe.Pointer(&c[0]), uintptr(len(c))*4)

	b, err := NewBloom(Options{TTL: 3600e9, Slices: 6, Capacity: 10_000_000, FalsePositiveRate: 0.001})
	if err != nil {
		t.Fatal(err)
	}
	// The slab runs from the first shard's open sub-filter to the end of
	// the last shard's closed ones.
	first, last := &b.shards[0].cur[0], b.shards[len(b.shards)-1].old
	end := uintptr(unsafe.Pointer(&last[len(last)-1])) + 8
	check("bloom slab", unsafe.Pointer(first), end-uintptr(unsafe.Pointer(first)))

	// A table under 2 MiB is left alone, and nothing panics on empty ones.
	adviseHugePages([]uint64(nil))
	adviseHugePages(make([]byte, 100))
}
