// Command floor is "the HTTP floor": a baseline that exists only to be
// measured against. It is not a counter and shares no code with impressiond.
//
// It is a fasthttp server whose handler does nothing but reply. Every
// request is answered 200 with the body impressiond sends for a counted
// impression; POST /api/v1/campaigns is answered 201 with a fixed campaign
// body whose id is always "floor" (the request body is never read or
// parsed). No routing beyond that one check, no JSON decoding, no dedup and
// no counting happen, so its throughput is the most any fasthttp service
// can reach on the same machine with the same load generator. Comparing
// impressiond with it shows what impressiond's own work costs.
//
// Usage:
//
//	floor [-addr 127.0.0.1:8081]
//
// It stops on SIGINT or SIGTERM after in-flight requests finish.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

const contentTypeJSON = "application/json"

var (
	pathCampaigns = []byte("/api/v1/campaigns")
	bodyCounted   = []byte(`{"status":"counted","message":"impression counted"}`)
	bodyCampaign  = []byte(`{"id":"floor","name":"floor","start_time":"2020-01-01T00:00:00Z","message":"campaign created"}`)
)

// handle replies without looking at the request beyond its method and path.
func handle(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentTypeJSON)
	if ctx.IsPost() && bytes.Equal(ctx.Path(), pathCampaigns) {
		ctx.SetStatusCode(fasthttp.StatusCreated)
		ctx.SetBody(bodyCampaign)
		return
	}
	ctx.SetBody(bodyCounted)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()
	if err := run(*addr); err != nil {
		fmt.Fprintf(os.Stderr, "floor: %v\n", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	srv := &fasthttp.Server{
		Handler:                      handle,
		Name:                         "floor",
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  60 * time.Second,
		MaxRequestBodySize:           4 << 20,
		CloseOnShutdown:              true,
		DisablePreParseMultipartForm: true,
		NoDefaultContentType:         true,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on -addr %s: %w", addr, err)
	}
	log.Printf("floor baseline listening on %s", ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	log.Print("floor baseline stopped")
	return nil
}
