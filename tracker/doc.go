// Package tracker is impressiond's domain core: campaigns, the track
// decision and the stats, with plain Go values in and out. The HTTP API
// (package api) is one front end to it; a gRPC server, a queue consumer or
// a Go program embedding it would call the same methods.
//
// A Tracker judges an impression (the rules on its ids and timestamp, the
// campaign lookup, the start time), then hands it to its state to dedup
// and count. Where the state lives is one seam, the state interface, with
// two implementations: in this process (local.go; durable with a data
// directory: persist.go, secret.go) and in a shared Redis (shared.go).
// Nothing above the seam asks which one it has, and one test suite
// (state_test.go) runs against both.
//
// Errors are *Error values whose Kind a front end maps to its own codes
// and whose message is fit for a client: it names no file, path or
// address. The fixed ones are package variables, so the track path
// allocates nothing, refusals included.
//
// It imports sketch, stats, store and store/redisstore, and nothing that
// speaks a wire protocol: no fasthttp, no encoding/json.
package tracker
