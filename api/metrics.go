package api

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// Metrics are exposed at GET /metrics in the Prometheus text format, with
// VictoriaMetrics/metrics for the latency histograms and the Go runtime and
// process metrics (see docs/DESIGN.md for the choice). Labels stay low
// cardinality: route templates, never campaign or user ids.
//
// On the hot path a counter costs one atomic add on a cache-line-padded
// cell picked by the request context's address, so two cores counting at
// once rarely touch the same line; cells are summed at scrape time. Latency
// is observed on every latencySample-th request of a cell (the add returns
// the count, so the choice is free), from the time fasthttp stamped on the
// request when it started serving it: one clock read per sampled request,
// none for the others.

const (
	counterCells  = 16
	latencySample = 16 // power of two
)

// latencyBuckets are the upper bounds of the latency histograms: 1, 2.5 and
// 5 per decade from 10µs to 10s, 19 buckets. A track request takes about
// 7µs in the handler, a batch of 10,000 some milliseconds, a stalled
// storage write seconds: each lands within a bucket whose bounds are at
// most 2.5× apart, so histogram_quantile's linear interpolation is off by
// less than that, where the library's default buckets (lowest 5ms) put
// every track request in the first bucket.
var latencyBuckets = []float64{
	10e-6, 25e-6, 50e-6,
	100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3,
	10e-3, 25e-3, 50e-3,
	100e-3, 250e-3, 500e-3,
	1, 2.5, 5,
	10,
}

// shardedCounter is a monotonic counter split over padded cells. It is
// safe for concurrent use.
type shardedCounter struct {
	cells [counterCells]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

// add adds n and returns the new value of the cell it used, which callers
// use as a free sampling decision.
func (c *shardedCounter) add(ctx *fasthttp.RequestCtx, n uint64) uint64 {
	h := uint64(uintptr(unsafe.Pointer(ctx))) * 0x9e3779b97f4a7c15
	return c.cells[h>>(64-4)].n.Add(n)
}

func (c *shardedCounter) value() uint64 {
	var v uint64
	for i := range c.cells {
		v += c.cells[i].n.Load()
	}
	return v
}

// statusClasses are the classes a response is counted in.
var statusClasses = [...]string{"2xx", "3xx", "4xx", "5xx"}

func statusClass(code int) int {
	switch {
	case code < 300:
		return 0
	case code < 400:
		return 1
	case code < 500:
		return 2
	}
	return 3
}

// routeMetrics are the request counters and latency of one route.
type routeMetrics struct {
	method, route string
	requests      [len(statusClasses)]shardedCounter
	latency       *metrics.PrometheusHistogram
	// derived, when set, computes the request counts at scrape time
	// instead of requests: the single-impression route, whose every
	// request already lands in exactly one outcome counter.
	derived func() [len(statusClasses)]uint64
}

// serverMetrics holds every metric of one Server. It is safe for
// concurrent use.
type serverMetrics struct {
	set                          *metrics.Set // histograms
	counted, duplicate, rejected shardedCounter
	dedupLimit                   shardedCounter // batch items refused at -dedup-max-pairs
	// The single-impression route's outcomes, one add per request: its
	// request counts are derived from them, so it pays one atomic, not two.
	single        [singleOutcomes]shardedCounter
	singleLatency *metrics.PrometheusHistogram
	panics        atomic.Uint64
	routes        []*routeMetrics
}

// Outcomes of a single-impression request.
const (
	singleCounted = iota
	singleDuplicate
	singleRejected     // 400, 404, 422: one impression rejected
	singleUnauthorized // 401: not an impression at all
	singleUnavailable  // 503: storage failing
	singleDedupLimit   // 503: the dedup window holds -dedup-max-pairs
	singleBodyRefused  // 400, 413, 415 of a compressed body: no impression read
	singleBodyBusy     // 503: no body memory to decode it into
	singleOutcomes
)

func newServerMetrics() *serverMetrics {
	return &serverMetrics{set: metrics.NewSet()}
}

// route registers a route's metrics; called while building the router.
func (m *serverMetrics) route(method, route string) *routeMetrics {
	r := &routeMetrics{method: method, route: route}
	r.latency = m.set.NewPrometheusHistogramExt(fmt.Sprintf(
		`impressiond_http_request_duration_seconds{method=%q,route=%q}`, method, route), latencyBuckets)
	m.routes = append(m.routes, r)
	return r
}

// instrumentSingle registers the single-impression route, whose handler
// counts each request in exactly one outcome (countSingle): its request
// counts are derived from those at scrape time, so a request pays one
// atomic add, not two.
func (s *Server) instrumentSingle(method, route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	m := s.metrics
	r := m.route(method, route)
	m.singleLatency = r.latency
	r.derived = func() (c [len(statusClasses)]uint64) {
		c[0] = m.single[singleCounted].value() + m.single[singleDuplicate].value()
		c[2] = m.single[singleRejected].value() + m.single[singleUnauthorized].value() + m.single[singleBodyRefused].value()
		c[3] = m.panics.Load() + m.single[singleUnavailable].value() + m.single[singleDedupLimit].value() + m.single[singleBodyBusy].value()
		return c
	}
	return h
}

// countSingle counts one single-impression request's outcome and samples
// its latency.
func (s *Server) countSingle(ctx *fasthttp.RequestCtx, outcome int) {
	if s.metrics.single[outcome].add(ctx, 1)%latencySample == 0 {
		observe(s.metrics.singleLatency, ctx)
	}
}

// observe records the time since fasthttp started serving the request.
func observe(h *metrics.PrometheusHistogram, ctx *fasthttp.RequestCtx) {
	if t := ctx.Time(); !t.IsZero() {
		h.Update(time.Since(t).Seconds())
	}
}

// instrument counts h's responses by status class and samples its latency.
func (s *Server) instrument(method, route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	r := s.metrics.route(method, route)
	return func(ctx *fasthttp.RequestCtx) {
		h(ctx)
		if r.requests[statusClass(ctx.Response.StatusCode())].add(ctx, 1)%latencySample == 0 {
			observe(r.latency, ctx)
		}
	}
}

// metricsHandler serves GET /metrics.
func (s *Server) metricsHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(ctx)
}

func (s *Server) writeMetrics(w io.Writer) {
	m := s.metrics
	help := func(name, typ, text string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
	}
	help("impressiond_impressions_total", "counter", "Impressions by outcome: counted, duplicate (within the dedup window), rejected (404/422, or a single impression with a 400), dedup_limit (a new pair refused with 503 while the exact window holds -dedup-max-pairs).")
	fmt.Fprintf(w, "impressiond_impressions_total{result=\"counted\"} %d\n", m.counted.value()+m.single[singleCounted].value())
	fmt.Fprintf(w, "impressiond_impressions_total{result=\"duplicate\"} %d\n", m.duplicate.value()+m.single[singleDuplicate].value())
	fmt.Fprintf(w, "impressiond_impressions_total{result=\"rejected\"} %d\n", m.rejected.value()+m.single[singleRejected].value())
	fmt.Fprintf(w, "impressiond_impressions_total{result=\"dedup_limit\"} %d\n", m.dedupLimit.value()+m.single[singleDedupLimit].value())

	help("impressiond_http_requests_total", "counter", "HTTP requests by method, route template and status class.")
	for _, r := range m.routes {
		var counts [len(statusClasses)]uint64
		if r.derived != nil {
			counts = r.derived()
		} else {
			for i := range counts {
				counts[i] = r.requests[i].value()
			}
		}
		for i, class := range statusClasses {
			// 2xx, 4xx and 5xx exist from the start, at 0, so that the
			// first errors are a rise rate() sees, not a new series.
			if v := counts[i]; v > 0 || class != "3xx" {
				fmt.Fprintf(w, "impressiond_http_requests_total{method=%q,route=%q,code=%q} %d\n", r.method, r.route, class, v)
			}
		}
	}
	writeLibraryMetrics(w, m.set.WritePrometheus) // HELP and TYPE: fixMetadata

	help("impressiond_panics_total", "counter", "Panics recovered in handlers (each answered with a 500).")
	fmt.Fprintf(w, "impressiond_panics_total %d\n", m.panics.Load())
	help("impressiond_body_memory_bytes", "gauge", "Memory reserved now by the request bodies being read, all requests together; at most impressiond_body_memory_max_bytes.")
	fmt.Fprintf(w, "impressiond_body_memory_bytes %d\n", s.bodyMem.used.Load())
	help("impressiond_body_memory_peak_bytes", "gauge", "The most memory the request bodies being read have reserved at once since start-up.")
	fmt.Fprintf(w, "impressiond_body_memory_peak_bytes %d\n", s.bodyMem.peak.Load())
	help("impressiond_body_memory_max_bytes", "gauge", "The budget of request body memory (-max-body-memory).")
	fmt.Fprintf(w, "impressiond_body_memory_max_bytes %d\n", s.bodyMem.max)
	help("impressiond_body_memory_refused_total", "counter", "Requests answered 503 and closed because their body did not fit in the body memory budget.")
	fmt.Fprintf(w, "impressiond_body_memory_refused_total %d\n", s.bodyMem.refused.Load())
	var refusedPerIP, refusedMax uint64
	if l := s.listener.Load(); l != nil {
		open, evicted := l.stats()
		help("impressiond_connections", "gauge", "Client connections open (at most -max-conns).")
		fmt.Fprintf(w, "impressiond_connections %d\n", open)
		help("impressiond_connections_evicted_total", "counter", "Idle keep-alive connections closed at -max-conns to admit a new connection.")
		fmt.Fprintf(w, "impressiond_connections_evicted_total %d\n", evicted)
		refusedPerIP, refusedMax = l.refusedPerIP.Load(), l.refusedMax.Load()
	}
	help("impressiond_connections_refused_total", "counter", "Connections refused on accept: per_ip with a 429 at -max-conns-per-ip, max_conns with a 503 at -max-conns when no idle connection could be closed instead.")
	fmt.Fprintf(w, "impressiond_connections_refused_total{reason=\"per_ip\"} %d\n", refusedPerIP)
	fmt.Fprintf(w, "impressiond_connections_refused_total{reason=\"max_conns\"} %d\n", refusedMax)
	s.core.WriteMetrics(w, help)
	if s.access != nil {
		help("impressiond_access_log_dropped_total", "counter", "Access log lines dropped because the writer fell behind.")
		fmt.Fprintf(w, "impressiond_access_log_dropped_total %d\n", s.access.dropped.Load())
	}
	writeProcessMetrics(w)
}

// writeProcessMetrics writes the Go runtime and process metrics, file
// descriptors included (process_open_fds, process_max_fds: Linux, Darwin).
func writeProcessMetrics(w io.Writer) {
	writeLibraryMetrics(w, func(w io.Writer) {
		metrics.WriteProcessMetrics(w)
		metrics.WriteFDMetrics(w)
	})
}
