// Package api serves impressiond's REST API on fasthttp: campaigns,
// impression tracking (one or a batch) and stats, with one JSON error shape
// for every failure.
//
// Request bodies are read as JSON whatever their Content-Type says; unknown
// fields are ignored and a JSON null counts as absent. Every error is
// {"error": "<message>", "code": <HTTP status>} and changes no state. See
// docs/openapi.yaml for the full contract.
//
// The track path holds no global lock and does not allocate: bodies are
// decoded by a schema-specific scanner into slices of the body (scan.go),
// campaigns are read from copy-on-write shards without locking, dedup and
// counters are sharded or atomic, and the clock is a coarse one refreshed
// by a ticker.
package api
