package api

import (
	"bytes"
	"io"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// VictoriaMetrics/metrics writes the Go runtime and process metrics, and
// our latency histograms, with a "# TYPE" line but an empty "# HELP" line
// (metrics.ExposeMetadata), and names a few families against the
// Prometheus conventions that `promtool check metrics` enforces. The
// library's output goes through fixMetadata, which fills in every HELP
// text, retypes the monotonic process_io_* counters it types as gauges,
// and renames the three *_count families that are not histograms, so that
// the whole exposition passes promtool with no findings.
func init() { metrics.ExposeMetadata(true) }

// renamed are the library's families exposed under another name.
var renamed = map[string]string{
	"go_cgo_calls_count": "go_cgo_calls_total",
	"go_gc_forced_count": "go_gc_forced_total",
	"go_cpu_count":       "go_cpus",
}

// retyped are the library's families exposed with another type: counters
// the library calls gauges.
var retyped = map[string]string{
	"process_io_read_bytes_total":            "counter",
	"process_io_written_bytes_total":         "counter",
	"process_io_read_syscalls_total":         "counter",
	"process_io_write_syscalls_total":        "counter",
	"process_io_storage_read_bytes_total":    "counter",
	"process_io_storage_written_bytes_total": "counter",
}

// helpTexts are the HELP texts of the library's families, by exposed name.
// A family a later version adds gets a generic text (helpFallback).
var helpTexts = map[string]string{
	"impressiond_http_request_duration_seconds": "Latency from the request being read to the response being ready, by route, observed on one request in 16.",

	"go_sched_latencies_seconds":          "Time goroutines spent runnable before running (runtime/metrics /sched/latencies:seconds).",
	"go_mutex_wait_seconds_total":         "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex, or a runtime lock.",
	"go_gc_mark_assist_cpu_seconds_total": "CPU time goroutines spent assisting the garbage collector.",
	"go_gc_cpu_seconds_total":             "CPU time spent by the garbage collector.",
	"go_gc_pauses_seconds":                "Stop-the-world pauses of the garbage collector.",
	"go_scavenge_cpu_seconds_total":       "CPU time spent returning memory to the operating system.",
	"go_memlimit_bytes":                   "The Go runtime's soft memory limit (GOMEMLIMIT).",
	"go_memstats_alloc_bytes":             "Heap bytes allocated and still in use.",
	"go_memstats_alloc_bytes_total":       "Heap bytes allocated since start-up, freed or not.",
	"go_memstats_buck_hash_sys_bytes":     "Bytes used by the profiling bucket hash table.",
	"go_memstats_frees_total":             "Heap objects freed since start-up.",
	"go_memstats_gc_cpu_fraction":         "Fraction of the CPU time used by the garbage collector since start-up.",
	"go_memstats_gc_sys_bytes":            "Bytes used for garbage collection metadata.",
	"go_memstats_heap_alloc_bytes":        "Heap bytes allocated and still in use.",
	"go_memstats_heap_idle_bytes":         "Heap bytes in idle spans.",
	"go_memstats_heap_inuse_bytes":        "Heap bytes in in-use spans.",
	"go_memstats_heap_objects":            "Heap objects allocated and not yet freed.",
	"go_memstats_heap_released_bytes":     "Heap bytes returned to the operating system.",
	"go_memstats_heap_sys_bytes":          "Heap bytes obtained from the operating system.",
	"go_memstats_last_gc_time_seconds":    "Unix time of the last garbage collection.",
	"go_memstats_lookups_total":           "Pointer lookups by the runtime since start-up.",
	"go_memstats_mallocs_total":           "Heap objects allocated since start-up.",
	"go_memstats_mcache_inuse_bytes":      "Bytes in use by mcache structures.",
	"go_memstats_mcache_sys_bytes":        "Bytes obtained from the operating system for mcache structures.",
	"go_memstats_mspan_inuse_bytes":       "Bytes in use by mspan structures.",
	"go_memstats_mspan_sys_bytes":         "Bytes obtained from the operating system for mspan structures.",
	"go_memstats_next_gc_bytes":           "Heap size at which the next garbage collection starts.",
	"go_memstats_other_sys_bytes":         "Bytes used for other runtime allocations.",
	"go_memstats_stack_inuse_bytes":       "Bytes in use by goroutine stacks.",
	"go_memstats_stack_sys_bytes":         "Bytes obtained from the operating system for goroutine stacks.",
	"go_memstats_sys_bytes":               "Bytes obtained from the operating system, all uses together.",
	"go_cgo_calls_total":                  "Calls from Go to C since start-up.",
	"go_cpus":                             "Logical CPUs usable by the process.",
	"go_gc_duration_seconds":              "Stop-the-world pauses of the garbage collector, as a summary.",
	"go_gc_forced_total":                  "Garbage collections forced by the application (runtime.GC).",
	"go_gomaxprocs":                       "GOMAXPROCS: the CPUs that run Go code at once.",
	"go_goroutines":                       "Goroutines that exist now.",
	"go_threads":                          "Operating system threads created by the runtime.",
	"go_info":                             "The Go version the binary was built with, in the version label.",
	"go_info_ext":                         "GOGC and GOMEMLIMIT settings, in labels.",

	"process_cpu_seconds_system_total":              "CPU time spent in the kernel on behalf of the process.",
	"process_cpu_seconds_total":                     "CPU time spent by the process, user and kernel together.",
	"process_cpu_seconds_user_total":                "CPU time spent by the process in user space.",
	"process_major_pagefaults_total":                "Page faults that needed a disk read.",
	"process_minor_pagefaults_total":                "Page faults served without a disk read.",
	"process_num_threads":                           "Operating system threads of the process.",
	"process_resident_memory_bytes":                 "Resident set size (RSS) of the process.",
	"process_start_time_seconds":                    "Unix time the process started.",
	"process_virtual_memory_bytes":                  "Virtual memory size of the process.",
	"process_virtual_memory_peak_bytes":             "Largest virtual memory size of the process since start-up.",
	"process_resident_memory_peak_bytes":            "Largest resident set size of the process since start-up.",
	"process_resident_memory_anon_bytes":            "Resident anonymous memory (heap, stacks) of the process.",
	"process_resident_memory_file_bytes":            "Resident file-backed memory of the process.",
	"process_resident_memory_shared_bytes":          "Resident shared memory of the process.",
	"process_io_read_bytes_total":                   "Bytes the process read, from storage or cache.",
	"process_io_written_bytes_total":                "Bytes the process wrote, to storage or cache.",
	"process_io_read_syscalls_total":                "Read system calls of the process.",
	"process_io_write_syscalls_total":               "Write system calls of the process.",
	"process_io_storage_read_bytes_total":           "Bytes the process caused to be read from storage.",
	"process_io_storage_written_bytes_total":        "Bytes the process caused to be written to storage.",
	"process_pressure_cpu_waiting_seconds_total":    "Time the process's cgroup waited for a CPU (pressure stall information).",
	"process_pressure_cpu_stalled_seconds_total":    "Time all tasks of the process's cgroup were stalled for a CPU.",
	"process_pressure_io_waiting_seconds_total":     "Time the process's cgroup waited for I/O.",
	"process_pressure_io_stalled_seconds_total":     "Time all tasks of the process's cgroup were stalled on I/O.",
	"process_pressure_memory_waiting_seconds_total": "Time the process's cgroup waited for memory.",
	"process_pressure_memory_stalled_seconds_total": "Time all tasks of the process's cgroup were stalled for memory.",
	"process_cgroup_cpu_throttled_seconds_total":    "Time the process's cgroup was throttled by its CPU quota.",
	"process_max_fds":                               "The most file descriptors the process may open (RLIMIT_NOFILE soft limit).",
	"process_open_fds":                              "File descriptors the process has open: client connections, log segments, snapshots.",
}

const helpFallback = "Go runtime or process metric, as written by VictoriaMetrics/metrics."

var metaBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// writeLibraryMetrics writes what write produces, through fixMetadata.
func writeLibraryMetrics(w io.Writer, write func(io.Writer)) {
	buf := metaBufs.Get().(*bytes.Buffer)
	defer metaBufs.Put(buf)
	buf.Reset()
	write(buf)
	fixMetadata(w, buf.Bytes())
}

// fixMetadata copies the exposition in to w, line by line, renaming,
// retyping and filling in HELP texts as the tables above say.
func fixMetadata(w io.Writer, in []byte) {
	var out []byte
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line, in = in[:i], in[i+1:]
		} else {
			in = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("# HELP ")):
			name := exposedName(string(bytes.Fields(line[len("# HELP "):])[0]))
			text, ok := helpTexts[name]
			if !ok {
				text = helpFallback
			}
			out = append(append(append(append(out, "# HELP "...), name...), ' '), text...)
		case bytes.HasPrefix(line, []byte("# TYPE ")):
			f := bytes.Fields(line[len("# TYPE "):])
			name, typ := exposedName(string(f[0])), string(f[1])
			if t, ok := retyped[name]; ok {
				typ = t
			}
			out = append(append(append(append(out, "# TYPE "...), name...), ' '), typ...)
		default:
			end := bytes.IndexAny(line, "{ ")
			if end < 0 {
				end = len(line)
			}
			out = append(append(out, exposedName(string(line[:end]))...), line[end:]...)
		}
		out = append(out, '\n')
	}
	w.Write(out)
}

func exposedName(name string) string {
	if n, ok := renamed[name]; ok {
		return n
	}
	return name
}
