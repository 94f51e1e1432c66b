package api

import "github.com/valyala/fasthttp"

// metricsHandler serves GET /metrics in the Prometheus text format.
func (s *Server) metricsHandler(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
}
