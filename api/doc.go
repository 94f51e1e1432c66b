// Package api serves impressiond's REST API on fasthttp: campaigns,
// impression tracking (one, a batch, or a tracking pixel) and stats, with
// one JSON error shape for every failure. It is the HTTP layer only: it
// decodes requests, checks their shape, calls the domain core (package
// tracker), maps the core's errors to status codes and encodes the
// answers. It does not know where the state lives, and must not import
// store, store/redisstore, sketch or stats.
//
// Request bodies are read as JSON whatever their Content-Type says; unknown
// fields are ignored and a JSON null counts as absent. Every error is
// {"error": "<message>", "code": <HTTP status>} and changes no state. See
// docs/openapi.yaml for the full contract.
//
// The track path holds no global lock and does not allocate: bodies are
// decoded by a schema-specific scanner into slices of the body (scan.go),
// and the tracker reads campaigns from copy-on-write shards without
// locking, dedups and counts in sharded or atomic structures, on a coarse
// clock refreshed by a ticker.
package api
