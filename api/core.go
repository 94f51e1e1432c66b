package api

import (
	"github.com/valyala/fasthttp"

	"github.com/impressiond/impressiond/tracker"
)

// The tracker's errors as the API answers them. Each fixed error is
// rendered once (coreErrors), so answering it allocates nothing.
var (
	errCampaignNotFound   = fromCore(tracker.ErrCampaignNotFound)
	errCampaignIDRequired = fromCore(tracker.ErrCampaignIDRequired)
	errUserIDRequired     = fromCore(tracker.ErrUserIDRequired)
	errUserIDTooLong      = fromCore(tracker.ErrUserIDTooLong)
	errUserIDChars        = fromCore(tracker.ErrUserIDChars)
	errAdIDChars          = fromCore(tracker.ErrAdIDChars)
	errAdIDTooLong        = fromCore(tracker.ErrAdIDTooLong)
	errTimestampFormat    = fromCore(tracker.ErrTimestampFormat)
	errBeforeStart        = fromCore(tracker.ErrBeforeStart)
	errAfterEnd           = fromCore(tracker.ErrAfterEnd)
	errEndTimeFormat      = fromCore(tracker.ErrEndTimeFormat)
	errEndTimeRange       = fromCore(tracker.ErrEndTimeRange)
	errNameRequired       = fromCore(tracker.ErrNameRequired)
	errNameLength         = fromCore(tracker.ErrNameLength)
	errNameUTF8           = fromCore(tracker.ErrNameUTF8)
	errIDInvalid          = fromCore(tracker.ErrIDInvalid)
	errStartTimeFormat    = fromCore(tracker.ErrStartTimeFormat)
	errStartTimeRange     = fromCore(tracker.ErrStartTimeRange)
	errDedupLimit         = fromCore(tracker.ErrDedupLimit)
	errRedisUnavailable   = fromCore(tracker.ErrSharedUnavailable)
)

var coreErrors = map[*tracker.Error]*apiError{}

// fromCore renders a fixed error of the tracker and registers it.
func fromCore(e *tracker.Error) *apiError {
	a := newError(statusOf(e.Kind), e.Msg)
	coreErrors[e] = a
	return a
}

// statusOf maps what went wrong to its HTTP status.
func statusOf(k tracker.Kind) int {
	switch k {
	case tracker.Invalid:
		return fasthttp.StatusUnprocessableEntity
	case tracker.NotFound:
		return fasthttp.StatusNotFound
	case tracker.Conflict:
		return fasthttp.StatusConflict
	case tracker.Unavailable, tracker.DedupLimit:
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusInternalServerError
}

// apiErrorOf answers an error of the tracker: a fixed one from its
// rendering, any other *tracker.Error rendered now (those carry a reason
// or a name), anything else as a 500, which would be a bug.
func (s *Server) apiErrorOf(err error) *apiError {
	e, ok := err.(*tracker.Error)
	if !ok {
		s.log.Error("BUG: the tracker returned an error of no kind", "err", err)
		return errInternal
	}
	if a := coreErrors[e]; a != nil {
		return a
	}
	if e == s.core.TooFarAhead() {
		return s.errTooFarAhead
	}
	return newError(statusOf(e.Kind), e.Msg)
}

// fromCoreOnce renders an error of one tracker's (its TooFarAhead, which
// names its skew) without registering it.
func fromCoreOnce(e *tracker.Error) *apiError { return newError(statusOf(e.Kind), e.Msg) }
