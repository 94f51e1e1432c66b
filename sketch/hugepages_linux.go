package sketch

import (
	"syscall"
	"unsafe"
)

// hugePage is the transparent huge page size of amd64 and arm64 with 4 KiB
// base pages, the platforms the service is built for.
const hugePage = 2 << 20

// madvHugepage is MADV_HUGEPAGE, 14 on every Linux architecture.
const madvHugepage = 14

// adviseHugePages asks the kernel to back the whole 2 MiB pages inside s
// with transparent huge pages (madvise(MADV_HUGEPAGE)): on kernels whose
// THP mode is "madvise", the usual default, nothing else gets them. The
// tables it is used for are tens to thousands of MiB read at random, one
// cache line per access, so on 4 KiB pages nearly every access also misses
// the TLB and walks the page tables (twice over in a virtual machine);
// huge pages make those walks rare. It must be called before s is first
// written, so that the first touch faults in huge pages rather than
// waiting for khugepaged to collapse small ones. It is a hint: an error
// (no THP in the kernel, THP off) changes nothing else, and slices under
// 2 MiB are left alone.
func adviseHugePages[T any](s []T) {
	if len(s) == 0 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	size := uintptr(len(s)) * unsafe.Sizeof(s[0])
	start := (uintptr(p) + hugePage - 1) &^ (hugePage - 1)
	end := (uintptr(p) + size) &^ (hugePage - 1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, start-uintptr(p))), end-start)
	_ = syscall.Madvise(b, madvHugepage)
}
