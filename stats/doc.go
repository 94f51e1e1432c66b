// Package stats keeps per-campaign impression counters in per-minute
// buckets and sums them into the windows impressiond reports.
//
// Buckets are keyed by the event-time minute of an impression (its
// timestamp, floored to the minute, in Unix minutes). A Counter keeps the
// last Minutes buckets in a ring plus a running total, all atomics: adds
// never lock and never lose a count, reads never block adds.
//
// Windows have minute resolution: LastHour sums the 60 buckets ending with
// the current minute, LastDay the 1440. An impression whose minute is older
// than the ring counts in Total only.
//
// It owns the counters and their encoding only, on the standard library;
// it must not import the other packages of this module.
package stats
