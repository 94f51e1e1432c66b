package tracker

import (
	"io"
	"time"
)

// state is where campaigns, the dedup window and the counters live: in
// this process (local, with or without a write-ahead log) or in a shared
// Redis (shared). It is the one seam between the track decision and the
// storage: the Tracker above it never asks which one it has, and the
// suite in state_test.go runs against both.
//
// Every method is safe for concurrent use. Errors other than the
// sentinels named are *Error values fit for a client.
type state interface {
	// campaign returns the campaign with the given id, nil if there is
	// none. The id may point into a request; it is not kept.
	campaign(id []byte) (*Campaign, error)
	// create registers c, unless its id is taken (errCampaignExists) or
	// max campaigns exist (errCampaignLimit). Once it returns nil, c
	// survives whatever the state promises to survive.
	create(c *Campaign, max int) error
	// update replaces the campaign with the given id by what change
	// returns for it, and returns the new campaign; nil and no error when
	// there is none. Updates of one campaign are serialised. An error
	// from change (an *Error) cancels the update.
	update(id []byte, change func(old *Campaign) (*Campaign, error)) (*Campaign, error)
	// remove deletes the campaign with the given id, reporting false when
	// there is none. No impression of it is counted after it returns.
	remove(id []byte) (bool, error)
	// page returns the campaigns whose ids start with prefix and sort
	// strictly after after, in id order, at most limit of them, and
	// whether more such follow.
	page(prefix, after string, limit int) ([]Campaign, bool, error)
	// count returns the number of campaigns, for metrics.
	count() int

	// trackOne dedups and counts one judged impression of c by user, of
	// ad (nil: none), with event time at, arriving at now: dup reports a
	// repeat. It is track for one item without a slice: the
	// single-impression path allocates nothing.
	trackOne(c *Campaign, ad, user []byte, at, now time.Time) (dup bool, err error)
	// track dedups and counts the judged items of one batch, all
	// arriving at now, in order: out[it.index] gets each outcome. An
	// error fails the whole batch (no outcome is set then).
	track(items []judged, now time.Time, out []Outcome) error

	// frequency fills in the Count of every exposure of out[it.index]
	// for each item: user's exposures to it.c in the window, at now. An
	// item whose campaign was deleted since it was looked up gets
	// ErrCampaignNotFound instead.
	frequency(items []frequencyItem, user []byte, now time.Time, out []FrequencyResult) error

	// window reads c's counts, duplicates and reach in the windows ending
	// with minute now.
	window(c *Campaign, now int64) (Stats, error)
	// ads reads c's counted impressions by ad id in the windows ending
	// with minute now.
	ads(c *Campaign, now int64) (AdStats, error)
	// series fills dst with c's per-minute counts of the len(dst) minutes
	// ending with now, oldest first.
	series(c *Campaign, now int64, dst []uint64) error

	// history fills dst with c's counts per step (time.Minute, time.Hour
	// or a day) from the step numbered first (Unix minutes, hours or
	// days), oldest first. The range is one the Tracker checked is kept.
	history(c *Campaign, step time.Duration, first int64, dst []uint64) error

	// retryAfter is how long until the dedup window next frees room for
	// a new pair, when it bounds its pairs.
	retryAfter(now time.Time) time.Duration
	// snapshot writes a snapshot now, if the state keeps any.
	snapshot() error
	// ready reports a reason the state cannot serve now (Redis down),
	// nil when it can.
	ready() error
	// writeMetrics writes the state's metrics in the Prometheus text
	// format; help writes a family's HELP and TYPE lines.
	writeMetrics(w io.Writer, help func(name, typ, text string))
	// close stops the state's background work and releases it; with
	// final, a durable state first writes a snapshot if one is due.
	close(final bool) error
}

// judged is one batch item that passed the rules: its campaign, ad id,
// user and event time, and its place in the batch.
type judged struct {
	c        *Campaign
	ad, user []byte
	at       time.Time
	index    int
}
