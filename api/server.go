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

	"github.com/impressiond/impressiond/tracker"
)

const (
	contentTypeJSON = "application/json"
	serverName      = "impressiond"
)

// Options configure a Server.
type Options struct {
	// Tracker is the product the API serves: campaigns, the track
	// decision and the stats. Required. The Server owns it from New on:
	// Shutdown and Close close it.
	Tracker *tracker.Tracker

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
	core     *tracker.Tracker
	parsers  fastjson.ParserPool
	maxConns int
	perIP    int
	maxBody  int
	bodyMem  bodyBudget                    // reserved by the bodies being read
	listener atomic.Pointer[limitListener] // the one Serve accepts on, for metrics
	log      *slog.Logger
	admin    token
	ingest   token
	cors     *cors
	http     *fasthttp.Server

	errTooFarAhead  *apiError
	errBodyTooLarge *apiError

	ready   atomic.Bool         // serving and not shutting down: /readyz answers 200
	access  *accessLog          // nil unless Options.AccessLog
	routes  map[string][]string // method → paths, as registered; for tests
	handler fasthttp.RequestHandler
	metrics *serverMetrics
	once    sync.Once
}

// New returns a Server on o.Tracker. It takes the tracker over when it
// succeeds (Shutdown and Close close it); on an error the caller keeps it.
func New(o Options) (*Server, error) {
	if o.Tracker == nil {
		return nil, errors.New("api: Options.Tracker is required")
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
		core:     o.Tracker,
		maxConns: o.MaxConns,
		perIP:    o.MaxConnsPerIP,
		maxBody:  o.MaxBodySize,
		bodyMem:  bodyBudget{max: int64(o.MaxBodyMemory)},
		log:      o.Logger,
		admin:    newToken(o.AdminToken),
		metrics:  newServerMetrics(),
		ingest:   newToken(o.IngestToken),
		cors:     cors,

		errTooFarAhead:  fromCoreOnce(o.Tracker.TooFarAhead()),
		errBodyTooLarge: errorf(fasthttp.StatusRequestEntityTooLarge, "request body is larger than %d bytes", o.MaxBodySize),
	}
	if o.AccessLog {
		s.access = newAccessLog(o.Logger)
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
	return s, nil
}

// Tracker returns the tracker the server serves.
func (s *Server) Tracker() *tracker.Tracker { return s.core }

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
	route("PATCH", "/api/v1/campaigns/{id}", guard(s.admin, s.updateCampaign))
	route("DELETE", "/api/v1/campaigns/{id}", guard(s.admin, s.deleteCampaign))
	get("/api/v1/campaigns/{id}/stats", guard(s.admin, s.getStats))
	get("/api/v1/campaigns/{id}/series", guard(s.admin, s.getSeries))
	get("/api/v1/campaigns/{id}/ads", guard(s.admin, s.getAds))
	route("PUT", "/api/v1/campaigns/{id}/frequency-caps", guard(s.admin, s.setFrequencyCaps))
	route("POST", "/api/v1/frequency", guard(s.ingest, s.checkFrequency))
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
// finish (or ctx to end), then shuts the tracker down: a durable one writes
// a last snapshot if one is due and closes its log, so everything
// acknowledged is on disk when Shutdown returns nil.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false) // load balancers stop sending before connections close
	err := s.http.ShutdownWithContext(ctx)
	return errors.Join(err, s.stop(true))
}

// Close closes the tracker without touching connections; a durable one
// flushes its log, without a snapshot. It is idempotent.
func (s *Server) Close() error { return s.stop(false) }

func (s *Server) stop(final bool) error {
	var err error
	s.once.Do(func() {
		if final {
			err = s.core.Shutdown()
		} else {
			err = s.core.Close()
		}
		if s.access != nil {
			s.access.stop()
		}
	})
	return err
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

var errNotReady = newError(fasthttp.StatusServiceUnavailable, "not ready: starting or shutting down")

// readyz answers 200 while the server is serving, 503 before Serve and
// from the start of Shutdown, so a load balancer drains it first, and
// while the tracker cannot serve (its shared store does not answer).
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	if !s.ready.Load() {
		writeError(ctx, errNotReady)
		return
	}
	if err := s.core.Ready(); err != nil {
		writeError(ctx, newError(fasthttp.StatusServiceUnavailable, "not ready: "+err.Error()))
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
