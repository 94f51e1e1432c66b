package api

import "github.com/valyala/fasthttp"

// dashboard serves GET /: the single-page dashboard embedded in the binary.
func (s *Server) dashboard(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/html; charset=utf-8")
	ctx.SetBodyString("<!doctype html><title>impressiond</title><p>dashboard coming</p>")
}
