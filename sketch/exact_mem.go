package sketch

import (
	"math"
	"unsafe"
)

// The heap model behind Exact.Bytes: Go's maps (swiss tables since Go
// 1.24) and allocator size classes, measured on Go 1.26 by
// TestExactBytesMatchesHeap, which holds the model within 20% of the heap
// a filled window holds.
//
// A map[string]struct{} of at most 8 pairs is a header and one group of 8
// slots. Larger, it is a directory of tables, each a power-of-two number
// of slots in groups of 8, filled to at most 7/8: a table grows by
// doubling up to 1024 slots, and a full table of 1024 splits in two. A
// group is 8 control bytes and 8 slots; a slot is a string header padded
// for the empty value (24 bytes on 64-bit platforms).
const (
	mapHeaderBytes = 48   // the map's own struct
	tableBytes     = 32   // one table's struct
	dirEntryBytes  = 8    // one directory pointer
	groupSlots     = 8    // slots per group
	maxTableSlots  = 1024 // a table splits instead of growing past this
	maxTableLoad   = maxTableSlots * 7 / 8
	tinySize       = 16 // pointer-free allocations below this share blocks
	pageSize       = 8192
)

// mapSlot is laid out as the map's slots are: a trailing zero-size field
// is padded, so that its address stays inside the slot.
type mapSlot struct {
	key  string
	elem struct{}
}

const groupBytes = groupSlots + groupSlots*int(unsafe.Sizeof(mapSlot{}))

// sizeClasses are the Go allocator's small object sizes (runtime
// sizeclasses.go); larger objects take whole pages.
var sizeClasses = [...]int{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// allocBytes returns the heap an allocation of n bytes takes.
func allocBytes(n int) int {
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + pageSize - 1) &^ (pageSize - 1)
	}
	lo, hi := 0, len(sizeClasses)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if sizeClasses[mid] >= n {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return sizeClasses[lo]
}

// keyBytes returns the heap one pair key of n bytes takes: the string a
// map insert allocates for it. Keys below 16 bytes share blocks of the
// tiny allocator.
func keyBytes(n int) int {
	if n < tinySize {
		return n
	}
	return allocBytes(n)
}

// mapBytes returns the heap a map[string]struct{} of n pairs built by
// inserts takes, keys aside. Up to one full table it is exact; beyond,
// tables split one by one as each fills, and keys spread binomially over
// them, so the number of tables is an expectation (expectedTables).
func mapBytes(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= groupSlots:
		return mapHeaderBytes + allocBytes(groupBytes)
	case n <= maxTableLoad:
		slots := 2 * groupSlots
		for slots*7/8 < n {
			slots *= 2
		}
		return mapHeaderBytes + tableBytes + dirEntryBytes + allocBytes(slots/groupSlots*groupBytes)
	}
	t := expectedTables(n)
	perTable := tableBytes + dirEntryBytes + allocBytes(maxTableSlots/groupSlots*groupBytes)
	return mapHeaderBytes + int(math.Round(t*float64(perTable)))
}

// expectedTables returns the expected number of full-size tables of a map
// of n > maxTableLoad pairs. The first table splits at maxTableLoad+1
// pairs; a table at depth d holds about n/2^d of them (binomially) and
// splits once it holds more than maxTableLoad, so it has split with
// probability P_d ≈ Φ((n/2^d − maxTableLoad − ½)/σ_d). The tables are the
// nodes of depth d that exist and did not split: Σ 2^d·(P_{d−1} − P_d).
func expectedTables(n int) float64 {
	prev, tables := 1.0, 0.0 // P_0: the first table has split
	for d := 1; d < 64; d++ {
		q := math.Ldexp(1, -d)
		mean := float64(n) * q
		sd := math.Sqrt(mean * (1 - q))
		p := 0.5 * math.Erfc(-(mean-maxTableLoad-0.5)/(sd*math.Sqrt2))
		p = min(p, prev)
		tables += math.Ldexp(prev-p, d)
		if p < 1e-12 {
			break
		}
		prev = p
	}
	return tables
}
