package api

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/valyala/fasthttp"
)

// token is a bearer credential, kept as its SHA-256 digest so that the
// comparison takes the same time whatever the length or content of what a
// client sends.
type token struct {
	digest [sha256.Size]byte
	set    bool
}

func newToken(s string) token {
	if s == "" {
		return token{}
	}
	return token{digest: sha256.Sum256([]byte(s)), set: true}
}

var bearerPrefix = []byte("bearer ")

// allows reports whether the request carries this token as
// "Authorization: Bearer <token>". An unset token allows every request.
func (t token) allows(ctx *fasthttp.RequestCtx) bool {
	if !t.set {
		return true
	}
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if len(h) < len(bearerPrefix) || !bytes.EqualFold(h[:len(bearerPrefix)], bearerPrefix) {
		return false
	}
	got := sha256.Sum256(bytes.TrimSpace(h[len(bearerPrefix):]))
	return subtle.ConstantTimeCompare(got[:], t.digest[:]) == 1
}

var errUnauthorized = newError(fasthttp.StatusUnauthorized, "missing or invalid bearer token")

// guard wraps h so that it runs only for requests carrying t. Each token
// opens only its own endpoints: the ingest token is not an admin
// credential, nor the reverse.
func guard(t token, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return guardCounted(t, nil, h)
}

// guardCounted is guard that also counts refusals in refused, if not nil.
func guardCounted(t token, refused *shardedCounter, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	if !t.set {
		return h
	}
	return func(ctx *fasthttp.RequestCtx) {
		if !t.allows(ctx) {
			if refused != nil {
				refused.add(ctx, 1)
			}
			ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="impressiond"`)
			writeError(ctx, errUnauthorized)
			return
		}
		h(ctx)
	}
}
