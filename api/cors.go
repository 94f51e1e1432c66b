package api

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"
)

// CORS (Fetch standard, "CORS protocol") lets a page of another origin
// call the ingest routes with fetch: JSON bodies and the Authorization
// header make a request non-simple, so the browser first sends an OPTIONS
// preflight and sends the request only if the answer allows it.
//
// For an allowed origin, a preflight gets 204 with
// Access-Control-Allow-Origin (the origin itself, or * when every origin
// is allowed), -Methods, -Headers (Authorization, Content-Type,
// Content-Encoding) and -Max-Age; actual responses carry
// Access-Control-Allow-Origin and expose Retry-After, X-Error and
// X-Impression-Status. Credentials (cookies) are never allowed: the ingest
// token travels in a header the page sets itself.
//
// A preflight from an origin not allowed gets the same 204 without any
// Access-Control-* header: the browser then refuses the request itself,
// and the page sees a network error, as the Fetch standard prescribes; a
// 403 would tell the page no more. With CORS on, every answer of these
// routes says Vary: Origin, since whether it carries the allow headers
// depends on the Origin.
//
// CORS is enforced by browsers only: it decides which pages may read the
// answers and send non-simple requests, not who may call the API. Any
// other client ignores it; the ingest token is what refuses them.

const (
	corsAllowHeaders  = "Authorization, Content-Type, Content-Encoding"
	corsExposeHeaders = "Retry-After, X-Error, X-Impression-Status"
	// corsMaxAge is how long a browser may cache a preflight, in seconds;
	// Chromium caps it at 7200.
	corsMaxAge = "7200"
)

// cors is the CORS policy of the ingest routes. A nil *cors is off. It is
// read-only after newCORS and safe for concurrent use.
type cors struct {
	any     bool                // "*" was configured
	origins map[string]struct{} // the allowed origins, as browsers serialize them
}

// newCORS parses the allowed origins; none turns CORS off (nil).
func newCORS(origins []string) (*cors, error) {
	if len(origins) == 0 {
		return nil, nil
	}
	c := &cors{origins: map[string]struct{}{}}
	for _, o := range origins {
		norm, err := ParseCORSOrigin(o)
		if err != nil {
			return nil, err
		}
		if norm == "*" {
			c.any = true
			continue
		}
		c.origins[norm] = struct{}{}
	}
	return c, nil
}

// ParseCORSOrigin checks one allowed origin, "*" or
// "scheme://host[:port]" (http or https, no path, query or user), and
// returns it as browsers send it in Origin: lower case, without a trailing
// slash.
func ParseCORSOrigin(o string) (string, error) {
	o = strings.TrimSpace(o)
	if o == "*" {
		return o, nil
	}
	u, err := url.Parse(strings.TrimSuffix(o, "/"))
	switch {
	case err != nil:
		return "", fmt.Errorf("api: CORS origin %q: %w", o, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("api: CORS origin %q: want http:// or https://", o)
	case u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", fmt.Errorf("api: CORS origin %q: want scheme://host[:port] and nothing more", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// allowOrigin sets Access-Control-Allow-Origin if the request's Origin is
// allowed, and reports whether it did; it sets Vary: Origin either way.
func (c *cors) allowOrigin(ctx *fasthttp.RequestCtx) bool {
	return c.allowOriginOn(&ctx.Response.Header, ctx.Request.Header.Peek(fasthttp.HeaderOrigin))
}

// allowOriginOn is allowOrigin for a response header h other than the
// context's own.
func (c *cors) allowOriginOn(h *fasthttp.ResponseHeader, origin []byte) bool {
	h.Set(fasthttp.HeaderVary, "Origin")
	if len(origin) == 0 {
		return false
	}
	if c.any {
		h.Set(fasthttp.HeaderAccessControlAllowOrigin, "*")
		return true
	}
	if _, ok := c.origins[string(origin)]; !ok {
		return false
	}
	h.SetBytesV(fasthttp.HeaderAccessControlAllowOrigin, origin)
	return true
}

// refusal sets on h, the header of an answer written before routing (a
// body over -max-body or over the body memory budget), the CORS headers
// the route's own answers carry: without them a page calling an ingest
// route could not read why it was refused, only see a network error. It
// covers the methods wrap covers (POST on the track routes, GET and HEAD
// on the pixel), on the path as the router will see it. Off, or for any
// other request, it sets nothing.
func (c *cors) refusal(ctx *fasthttp.RequestCtx, h *fasthttp.ResponseHeader) {
	if c == nil {
		return
	}
	p := ctx.Request.URI().PathOriginal()
	if needsCleaning(p) {
		p = cleanPath(nil, p) // rare: the fast path has no escapes
	}
	m := ctx.Request.Header.Method()
	switch string(p) {
	case "/api/v1/impressions", "/api/v1/impressions/batch":
		if string(m) != fasthttp.MethodPost {
			return
		}
	case pixelPath:
		if string(m) != fasthttp.MethodGet && string(m) != fasthttp.MethodHead {
			return
		}
	default:
		return
	}
	if c.allowOriginOn(h, ctx.Request.Header.Peek(fasthttp.HeaderOrigin)) {
		h.Set(fasthttp.HeaderAccessControlExposeHeaders, corsExposeHeaders)
	}
}

// wrap adds the CORS headers of actual responses to h's; off, it is h.
func (c *cors) wrap(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if c == nil {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		if c.allowOrigin(ctx) {
			ctx.Response.Header.Set(fasthttp.HeaderAccessControlExposeHeaders, corsExposeHeaders)
		}
		h(ctx)
	}
}

// preflight answers OPTIONS on a route serving allow (the Allow header);
// an allowed origin is allowed methods.
func (c *cors) preflight(allow, methods string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		if c == nil || !c.allowOrigin(ctx) {
			return
		}
		h := &ctx.Response.Header
		h.Set(fasthttp.HeaderAccessControlAllowMethods, methods)
		h.Set(fasthttp.HeaderAccessControlAllowHeaders, corsAllowHeaders)
		h.Set(fasthttp.HeaderAccessControlMaxAge, corsMaxAge)
	}
}

// servesOPTIONS reports whether path is one of the routes that answer
// OPTIONS (the preflights).
func servesOPTIONS(path []byte) bool {
	switch string(path) {
	case "/api/v1/impressions", "/api/v1/impressions/batch", pixelPath:
		return true
	}
	return false
}
