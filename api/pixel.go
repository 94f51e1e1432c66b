package api

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/valyala/fasthttp"
)

// pixelPath is the tracking pixel: an impression reported by loading an
// image, GET /api/v1/pixel.gif?campaign_id=…&user_id=…[&ad_id=…][&timestamp=…][&token=…].
const pixelPath = "/api/v1/pixel.gif"

// pixelGIF is a 1×1 transparent GIF (GIF89a, a two-colour table and a
// graphic control extension marking colour 0 transparent): 43 bytes.
var pixelGIF = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff" +
	"!\xf9\x04\x01\x00\x00\x00\x00" +
	",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

var (
	errPixelRepeated = newError(fasthttp.StatusBadRequest, "a query parameter is given more than once")
	errPixelToken    = newError(fasthttp.StatusUnauthorized, "missing or invalid token query parameter")
)

// pixel serves GET (and HEAD) /api/v1/pixel.gif: the query parameters
// campaign_id, user_id, ad_id and timestamp are one impression, judged by
// the tracker exactly like a POST /api/v1/impressions body, with the same
// status codes. Every answer's body is the GIF, uncacheable so that each
// view reaches the server; an error's message is in X-Error, the outcome
// of a 200 in X-Impression-Status. With an ingest token the request must
// carry it as token: a page that embeds the pixel shows it to anyone.
func (s *Server) pixel(ctx *fasthttp.RequestCtx) {
	var req trackRequest
	if e := s.decodePixel(ctx, &req); e != nil {
		if e.code == fasthttp.StatusUnauthorized {
			ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="impressiond"`)
		} else {
			s.metrics.rejected.add(ctx, 1)
		}
		writePixelError(ctx, e)
		return
	}
	dup, err := s.core.Track(&req)
	var e *apiError
	if err != nil {
		e = s.apiErrorOf(err)
	}
	switch {
	case e == errDedupLimit:
		s.metrics.dedupLimit.add(ctx, 1)
		s.setRetryAfter(ctx)
	case e != nil && e.code != fasthttp.StatusServiceUnavailable:
		s.metrics.rejected.add(ctx, 1)
	case e != nil:
	case dup:
		s.metrics.duplicate.add(ctx, 1)
	default:
		s.metrics.counted.add(ctx, 1)
	}
	if e != nil {
		writePixelError(ctx, e)
		return
	}
	status := "counted"
	if dup {
		status = "duplicate"
	}
	ctx.Response.Header.Set("X-Impression-Status", status)
	writePixel(ctx)
}

// decodePixel reads the impression and checks the token; a repeated token
// is no token. The values point into the request's query arguments.
func (s *Server) decodePixel(ctx *fasthttp.RequestCtx, req *trackRequest) *apiError {
	var seen [5]bool
	var repeated, tokRepeated bool
	var tok []byte
	for k, v := range ctx.QueryArgs().All() {
		var i int
		switch string(k) {
		case "campaign_id":
			i, req.CampaignID = 0, v
		case "user_id":
			i, req.UserID = 1, v
		case "ad_id":
			i, req.AdID = 2, v
		case "timestamp":
			i, req.Timestamp, req.HasTimestamp = 3, v, true
		case "token":
			i, tok = 4, v
		default:
			continue // unknown parameters are ignored, as unknown JSON fields are
		}
		if seen[i] {
			repeated, tokRepeated = true, tokRepeated || i == 4
		}
		seen[i] = true
	}
	// As on the POST routes, the token is checked before the impression.
	if s.ingest.set && (tokRepeated || !s.ingest.matches(tok)) {
		return errPixelToken
	}
	if repeated {
		return errPixelRepeated
	}
	return nil
}

// matches reports, in constant time, whether v is this token.
func (t token) matches(v []byte) bool {
	got := sha256.Sum256(v)
	return subtle.ConstantTimeCompare(got[:], t.digest[:]) == 1
}

func writePixel(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("image/gif")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	ctx.SetBody(pixelGIF)
}

// writePixelError answers e with the pixel: an image the page can show
// whatever happened, the error in X-Error.
func writePixelError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.SetStatusCode(e.code)
	ctx.Response.Header.Set("X-Error", e.msg)
	writePixel(ctx)
}
