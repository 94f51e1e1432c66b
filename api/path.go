package api

import (
	"bytes"
	"sync"

	"github.com/valyala/fasthttp"
)

// The router matches the path as sent (fasthttp/router reads
// URI.PathOriginal), so routeOnCleanPath hands it a clean one first: the
// rule docs/openapi.yaml states.
//
//   - Percent-escapes are decoded, except %2F and %25: an encoded "/" stays
//     inside its segment (a%2Fb is one segment, never a and b), and an
//     encoded "%" cannot start a second round of decoding. A "%" that
//     starts no valid escape is taken as a literal one, written %25, so
//     the clean path is its own clean path.
//   - Empty segments are dropped (// is /), and "." and ".." segments
//     resolved as in RFC 3986 §5.2.4, never above the root.
//   - A trailing slash is kept: /healthz/ is another path.
//
// A path with no "%", "//" or "/." is clean already and costs one scan.

// routeOnCleanPath wraps the router h so that it routes on the clean path.
func routeOnCleanPath(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		uri := ctx.Request.URI()
		if p := uri.PathOriginal(); needsCleaning(p) {
			buf := pathBufs.Get().(*[]byte)
			*buf = cleanPath((*buf)[:0], p)
			uri.SetPathBytes(*buf) // copies
			pathBufs.Put(buf)
		}
		h(ctx)
	}
}

var pathBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

var (
	doubleSlash = []byte("//")
	slashDot    = []byte("/.")
)

func needsCleaning(p []byte) bool {
	return bytes.IndexByte(p, '%') >= 0 || bytes.Contains(p, doubleSlash) || bytes.Contains(p, slashDot)
}

// cleanPath appends the clean form of p to dst (see routeOnCleanPath).
func cleanPath(dst, p []byte) []byte {
	start := len(dst)
	dst = append(dst, '/')
	trailing := false
	for len(p) > 0 {
		var seg []byte
		if i := bytes.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
			trailing = len(p) == 0
		} else {
			seg, p = p, nil
			trailing = false
		}
		mark := len(dst)
		dst = decodeSegment(dst, seg)
		switch string(dst[mark:]) {
		case "":
			continue
		case ".":
			dst = dst[:mark]
			trailing = len(p) == 0
			continue
		case "..":
			dst = dst[:mark]
			// Drop the segment before, and its slash, but not the root's.
			if prev := bytes.LastIndexByte(dst[start:len(dst)-1], '/'); prev >= 0 {
				dst = dst[:start+prev+1]
			}
			trailing = len(p) == 0
			continue
		}
		dst = append(dst, '/')
	}
	// Every kept segment is followed by a slash; the last one only if the
	// path ended with one.
	if !trailing && len(dst) > start+1 {
		dst = dst[:len(dst)-1]
	}
	return dst
}

// decodeSegment appends seg with its percent-escapes decoded, except %2F
// and %25, which are kept (upper-cased); a stray "%" becomes %25.
func decodeSegment(dst, seg []byte) []byte {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' && i+2 < len(seg) && isHex(seg[i+1]) && isHex(seg[i+2]) {
			d := unhex(seg[i+1])<<4 | unhex(seg[i+2])
			if d == '/' || d == '%' {
				dst = append(dst, '%', upperHex(seg[i+1]), upperHex(seg[i+2]))
			} else {
				dst = append(dst, d)
			}
			i += 2
			continue
		}
		if c == '%' {
			// A stray "%" is encoded, so that it cannot form an escape
			// with the characters decoded after it ("%0%41" is not "%0A").
			dst = append(dst, "%25"...)
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}
