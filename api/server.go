package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/impressiond/impressiond/sketch"
	"github.com/impressiond/impressiond/store/redisstore"
)

const (
	contentTypeJSON = "application/json"
	serverName      = "impressiond"
)

// Options configure a Server.
type Options struct {
	// Dedup decides which impressions are repeats. Required unless Redis
	// is set. With DataDir it must be a new window: New keys it with the
	// data directory's secret (Deduper.SetSecret) before restoring into it.
	Dedup sketch.Deduper

	// Redis, when set, keeps campaigns, dedup and counters in a shared
	// Redis instead of this process: any number of servers on one Redis
	// agree. Dedup and DataDir must then be unset.
	Redis *redisstore.Store

	// MaxBodySize is the largest request body accepted, in bytes; larger
	// ones get a 413. By default 4 MiB, which fits a full batch.
	MaxBodySize int

	// MaxBodyMemory bounds the memory that the request bodies being read
	// hold, all requests together, in bytes. A body's buffer grows only as
	// its bytes arrive, each growth reserved from this budget first; a
	// request whose growth does not fit is answered 503 and its connection
	// closed. On top of it fasthttp reads ahead at most 8 KiB of a body per
	// connection, so bodies in flight hold at most MaxBodyMemory + 8 KiB ×
	// MaxConns (206 MiB at the defaults). It must be at least MaxBodySize.
	// By default 128 MiB.
	MaxBodyMemory int

	// MaxSkew is how far ahead of the server's clock an impression
	// timestamp may be. Zero rejects any timestamp ahead of the clock.
	MaxSkew time.Duration

	// Now is the clock. By default a coarse clock with millisecond
	// resolution, owned and stopped by the Server.
	Now func() time.Time

	// Logger receives errors and panics. By default slog.Default().
	Logger *slog.Logger

	// ReadTimeout bounds reading one request, headers and body, so a client
	// that opens a connection and stalls is cut off. By default 5s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response. By default 5s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection may wait for its
	// next request. By default 60s.
	IdleTimeout time.Duration
	// MaxConns caps concurrent connections. At the cap a new connection
	// closes the longest-idle keep-alive connection (answered, waiting for
	// its next request) and takes its slot; only when none is idle is it
	// refused with a 503 JSON error. By default 10,000.
	MaxConns int
	// MaxConnsPerIP caps concurrent connections from one client IP; more
	// are refused with a 429 JSON error. By default 1,000.
	MaxConnsPerIP int
	// MaxHeaderBytes caps the request line and headers; larger ones get a
	// 431. By default 8 KiB.
	MaxHeaderBytes int
	// MaxCampaigns caps the campaigns that can be created. By default
	// 100,000.
	MaxCampaigns int

	// AdminToken, when set, is required as "Authorization: Bearer <token>"
	// to create, list and read campaigns and their stats.
	AdminToken string
	// IngestToken, when set, is required the same way to track impressions;
	// the pixel takes it as its token query parameter.
	IngestToken string

	// CORSOrigins are the origins whose pages may call the ingest routes
	// (impressions, batch, pixel) from a browser: each "scheme://host[:port]"
	// as browsers send it in Origin, or "*" for any origin. By default none:
	// no response carries CORS headers (see cors.go).
	CORSOrigins []string

	// AccessLog logs one line per request to Logger. Off by default.
	AccessLog bool

	// DataDir, when set, makes the server durable: New restores the state
	// kept there (newest snapshot, then the write-ahead log after it), every
	// counted impression and created campaign is logged before it is
	// acknowledged, snapshots are written every SnapshotInterval and by
	// Shutdown. The directory keeps the secret the dedup window hashes
	// pairs with, in a secret file and in every snapshot, so that logged
	// keys stay valid across restarts and backups. Empty keeps everything
	// in memory only.
	DataDir string
	// ResetDedup lets New start with an empty dedup window when the one in
	// DataDir cannot be loaded: written by an earlier version (another
	// layout, or Bloom keys hashed without a secret) or with other -dedup
	// flags. Campaigns and counts are restored all the same; the price is
	// that repeats of pairs counted in the last TTL + TTL/K before the
	// restart are counted once more. By default such a directory is
	// refused, since that would be a silent double count.
	ResetDedup bool
	// FsyncInterval is how often the log is fsync'd. Zero makes every
	// write wait for the group commit that fsyncs it. The zero value means
	// zero: callers wanting the 1s default set it.
	FsyncInterval time.Duration
	// SnapshotInterval is how often a snapshot is written. By default 1m.
	SnapshotInterval time.Duration
}

func (o *Options) setDefaults() {
	defaults := []struct {
		v   *int
		def int
	}{
		{&o.MaxBodySize, 4 << 20},
		{&o.MaxBodyMemory, 128 << 20},
		{&o.MaxConns, 10000},
		{&o.MaxConnsPerIP, 1000},
		{&o.MaxHeaderBytes, 8 << 10},
		{&o.MaxCampaigns, 100000},
	}
	for _, d := range defaults {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.ReadTimeout, 5 * time.Second},
		{&o.WriteTimeout, 5 * time.Second},
		{&o.IdleTimeout, 60 * time.Second},
		{&o.SnapshotInterval, time.Minute},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Server is the impressiond HTTP API. It is safe for concurrent use.
type Server struct {
	dedup     sketch.Deduper
	keyed     keyedDeduper   // dedup, when it takes pre-hashed keys (bloom)
	limited   limitedDeduper // dedup, when it bounds the pairs it holds (exact)
	hasher    sketch.Hasher  // dedup's, which keys the pairs given to keyed
	campaigns *campaignTable
	parsers   fastjson.ParserPool
	now       func() time.Time
	maxSkew   time.Duration
	maxConns  int
	perIP     int
	maxBody   int
	bodyMem   bodyBudget                    // reserved by the bodies being read
	listener  atomic.Pointer[limitListener] // the one Serve accepts on, for metrics
	log       *slog.Logger
	admin     token
	ingest    token
	cors      *cors
	http      *fasthttp.Server

	errTooFarAhead  *apiError
	errBodyTooLarge *apiError

	persist     *persister        // nil unless Options.DataDir
	remote      *redisstore.Store // nil unless Options.Redis
	remoteCache remoteCampaigns   // campaigns read from Redis
	remoteLists *remoteLister     // coalesces lists of every campaign in Redis
	redisLog    logLimiter        // paces the log lines of failing Redis calls
	restored    RestoreStats

	ready   atomic.Bool         // serving and not shutting down: /readyz answers 200
	access  *accessLog          // nil unless Options.AccessLog
	routes  map[string][]string // method → paths, as registered; for tests
	handler fasthttp.RequestHandler
	metrics *serverMetrics
	clock   *coarseClock // nil when Options.Now was given
	stopCh  chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// New returns a Server and starts its maintenance goroutines; Shutdown or
// Close stops them. With Options.DataDir it first restores the state kept
// there; damaged data fails New with an error naming the file and offset
// (a *store.CorruptError).
func New(o Options) (*Server, error) {
	switch {
	case o.Redis != nil && (o.Dedup != nil || o.DataDir != ""):
		return nil, errors.New("api: Options.Redis excludes Dedup and DataDir: the state lives in Redis")
	case o.Redis == nil && o.Dedup == nil:
		return nil, errors.New("api: Options.Dedup is required")
	}
	if o.MaxSkew < 0 {
		return nil, errors.New("api: Options.MaxSkew must not be negative")
	}
	o.setDefaults()
	cors, err := newCORS(o.CORSOrigins)
	if err != nil {
		return nil, err
	}
	if o.MaxBodyMemory < o.MaxBodySize {
		return nil, fmt.Errorf("api: Options.MaxBodyMemory (%d) must be at least MaxBodySize (%d), or no body of the largest size could be read", o.MaxBodyMemory, o.MaxBodySize)
	}
	s := &Server{
		dedup:       o.Dedup,
		remote:      o.Redis,
		campaigns:   newCampaignTable(o.MaxCampaigns),
		now:         o.Now,
		maxSkew:     o.MaxSkew,
		maxConns:    o.MaxConns,
		perIP:       o.MaxConnsPerIP,
		maxBody:     o.MaxBodySize,
		bodyMem:     bodyBudget{max: int64(o.MaxBodyMemory)},
		log:         o.Logger,
		stopCh:      make(chan struct{}),
		admin:       newToken(o.AdminToken),
		metrics:     newServerMetrics(),
		remoteLists: newRemoteLister(),
		ingest:      newToken(o.IngestToken),
		cors:        cors,

		errTooFarAhead:  errorf(fasthttp.StatusUnprocessableEntity, "timestamp is more than %s in the future", o.MaxSkew),
		errBodyTooLarge: errorf(fasthttp.StatusRequestEntityTooLarge, "request body is larger than %d bytes", o.MaxBodySize),
	}
	if o.AccessLog {
		s.access = newAccessLog(o.Logger)
	}
	if s.now == nil {
		s.clock = newCoarseClock()
		s.now = s.clock.Now
	}
	s.keyed, _ = o.Dedup.(keyedDeduper)
	s.limited, _ = o.Dedup.(limitedDeduper)
	if o.Dedup != nil {
		s.hasher = o.Dedup.Hasher() // a data directory's replaces it (adoptSecret)
	}
	if o.DataDir != "" {
		if err := s.openStore(&o); err != nil {
			if s.clock != nil {
				s.clock.Stop()
			}
			return nil, err
		}
	}
	s.handler = s.buildHandler()
	s.http = &fasthttp.Server{
		Handler:                       s.handler,
		ErrorHandler:                  s.handleServerError,
		ExpectHandler:                 s.expectContinue,
		Name:                          serverName,
		MaxRequestBodySize:            o.MaxBodySize,
		StreamRequestBody:             true, // bodies are read by readBodies, within s.bodyMem
		ConnState:                     connState,
		ReadTimeout:                   o.ReadTimeout,
		WriteTimeout:                  o.WriteTimeout,
		IdleTimeout:                   o.IdleTimeout,
		ReadBufferSize:                o.MaxHeaderBytes,
		CloseOnShutdown:               true,
		DisablePreParseMultipartForm:  true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		Logger:                        fasthttpLogger{o.Logger},
	}
	// Idle shards rotate (and, in exact mode, free memory) without traffic.
	s.every(time.Second, func() {
		if s.dedup != nil {
			s.dedup.Advance(s.now())
		}
	})
	if p := s.persist; p != nil {
		s.every(p.every, func() {
			if _, err := s.snapshotIfChanged(); err != nil {
				s.log.Error("snapshot failed; the log is kept until one succeeds", "err", err)
			}
		})
	}
	return s, nil
}

// Restored describes what New restored from Options.DataDir.
func (s *Server) Restored() RestoreStats { return s.restored }

// Handler returns the request handler: the router with every route of the
// API. It is built once, by New.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handler }

func (s *Server) buildHandler() fasthttp.RequestHandler {
	r := router.New()
	// Redirects would answer API clients with 301/308 instead of an error;
	// OPTIONS would answer 200 with no body. Both fall to 404/405 instead,
	// except on the ingest routes, whose OPTIONS answers CORS preflights.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.NotFound = func(ctx *fasthttp.RequestCtx) { writeError(ctx, errRouteNotFound) }
	r.MethodNotAllowed = methodNotAllowed
	r.PanicHandler = s.handlePanic

	route := func(method, path string, h fasthttp.RequestHandler) {
		r.Handle(method, path, s.instrument(method, path, h))
	}
	// get serves GET and HEAD alike: fasthttp drops a HEAD answer's body
	// and keeps its Content-Length (RFC 9110 §9.3.2).
	get := func(path string, h fasthttp.RequestHandler) {
		route("GET", path, h)
		route("HEAD", path, h)
	}
	route("POST", "/api/v1/campaigns", guard(s.admin, s.createCampaign))
	get("/api/v1/campaigns", guard(s.admin, s.listCampaigns))
	get("/api/v1/campaigns/{id}", guard(s.admin, s.getCampaign))
	get("/api/v1/campaigns/{id}/stats", guard(s.admin, s.getStats))
	get("/api/v1/campaigns/{id}/series", guard(s.admin, s.getSeries))
	r.Handle("POST", "/api/v1/impressions", s.instrumentSingle("POST", "/api/v1/impressions",
		s.cors.wrap(guardCounted(s.ingest, &s.metrics.single[singleUnauthorized], s.trackImpression))))
	route("POST", "/api/v1/impressions/batch", s.cors.wrap(guard(s.ingest, s.trackBatch)))
	get(pixelPath, s.cors.wrap(s.pixel))
	route("OPTIONS", "/api/v1/impressions", s.cors.preflight("OPTIONS, POST", "POST"))
	route("OPTIONS", "/api/v1/impressions/batch", s.cors.preflight("OPTIONS, POST", "POST"))
	route("OPTIONS", pixelPath, s.cors.preflight("GET, HEAD, OPTIONS", "GET, HEAD"))
	get("/healthz", s.healthz)
	get("/readyz", s.readyz)
	get("/metrics", s.metricsHandler)
	get("/", s.dashboard)
	r.NotFound = s.instrument("", "unmatched", r.NotFound)
	r.MethodNotAllowed = s.instrument("", "method_not_allowed", r.MethodNotAllowed)
	s.routes = r.List()
	h := s.recoverPanics(routeOnCleanPath(r.Handler))
	if s.access != nil {
		h = s.access.wrap(h)
	}
	return s.readBodies(h)
}

// Serve accepts connections on ln until Shutdown, within the connection
// limits of Options.
func (s *Server) Serve(ln net.Listener) error {
	s.ready.Store(true)
	l := newLimitListener(ln, s.maxConns, s.perIP)
	s.listener.Store(l)
	return s.http.Serve(l)
}

// Shutdown stops accepting connections, waits for in-flight requests to
// finish (or ctx to end), then stops the background goroutines. A durable
// server then writes a last snapshot and closes its log: everything
// acknowledged is on disk when Shutdown returns nil.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false) // load balancers stop sending before connections close
	err := s.http.ShutdownWithContext(ctx)
	return errors.Join(err, s.stop(true))
}

// Close stops the background goroutines without touching connections; a
// durable server flushes its log, without a snapshot. It is idempotent.
func (s *Server) Close() error { return s.stop(false) }

func (s *Server) stop(snapshot bool) error {
	var err error
	s.once.Do(func() {
		close(s.stopCh)
		s.wg.Wait()
		if s.persist != nil {
			err = s.closeStore(snapshot)
		}
		if s.clock != nil {
			s.clock.Stop()
		}
		if s.access != nil {
			s.access.stop()
		}
	})
	return err
}

// every runs f each interval, in a goroutine of its own, until stopCh
// closes; Close waits for it.
func (s *Server) every(interval time.Duration, f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stopCh:
				return
			case <-t.C:
				f()
			}
		}
	}()
}

// methodNotAllowed answers 405. The router lists OPTIONS in Allow even
// when it does not serve OPTIONS; it is dropped, except on the paths that
// serve it, so that Allow tells the truth. The pixel answers with its GIF.
func methodNotAllowed(ctx *fasthttp.RequestCtx) {
	allow := ctx.Response.Header.Peek("Allow")
	servesOptions := servesOPTIONS(ctx.Request.URI().PathOriginal())
	var kept []byte
	for m := range bytes.SplitSeq(allow, []byte(", ")) {
		if string(m) == fasthttp.MethodOptions && !servesOptions {
			continue
		}
		if len(kept) > 0 {
			kept = append(kept, ", "...)
		}
		kept = append(kept, m...)
	}
	ctx.Response.Header.SetBytesV("Allow", kept)
	if string(ctx.Request.URI().PathOriginal()) == pixelPath {
		writePixelError(ctx, errMethodNotAllowed)
		return
	}
	writeError(ctx, errMethodNotAllowed)
}

// expectContinue refuses a request announcing "Expect: 100-continue" with
// a Content-Length over Options.MaxBodySize: it is answered 413, with the
// JSON error, before the client is invited to send the body, and the
// connection is closed. fasthttp writes the response set here, with the
// status returned, in place of calling the handler
// (TestExpectContinueOverLimit pins that). A chunked body (no
// Content-Length) is invited and bounded while it is read.
func (s *Server) expectContinue(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > s.maxBody {
		ctx.SetContentType(contentTypeJSON)
		ctx.SetBody(s.errBodyTooLarge.body)
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

var (
	errNotReady  = newError(fasthttp.StatusServiceUnavailable, "not ready: starting or shutting down")
	errRedisDown = newError(fasthttp.StatusServiceUnavailable, "not ready: the shared store (Redis) does not answer")
)

// readyz answers 200 while the server is serving, 503 before Serve and
// from the start of Shutdown, so a load balancer drains it first.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if !s.ready.Load() {
		writeError(ctx, errNotReady)
		return
	}
	if s.remote != nil && !s.remote.Healthy() {
		writeError(ctx, errRedisDown)
		return
	}
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBodyString(`{"status":"ready"}`)
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBodyString(`{"status":"ok"}`)
}

// fasthttpLogger routes fasthttp's own messages to slog.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	level := slog.LevelWarn
	if strings.Contains(msg, fasthttp.ErrBodyTooLarge.Error()) {
		level = slog.LevelDebug // answered with a 413; not a server problem
	}
	l.log.Log(context.Background(), level, "fasthttp: "+msg)
}
