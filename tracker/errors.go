package tracker

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"
)

// Kind says what went wrong, for a front end to map to its own codes (HTTP
// statuses, gRPC codes, a consumer's retry policy).
type Kind uint8

const (
	// Invalid: the request breaks a rule (HTTP 422). Nothing changed.
	Invalid Kind = iota + 1
	// NotFound: no campaign has the id (HTTP 404). Nothing changed.
	NotFound
	// Conflict: the campaign exists, or the campaign limit is reached
	// (HTTP 409). Nothing changed.
	Conflict
	// Unavailable: the state cannot be read or written now (HTTP 503); a
	// retry is safe. Error.Changed says whether the request may have
	// taken effect (it is then answered as a duplicate on retry).
	Unavailable
	// DedupLimit: the exact dedup window holds its most pairs; the
	// impression was neither counted nor recorded (HTTP 503 with
	// Retry-After, see Tracker.RetryAfter).
	DedupLimit
)

// Error is every error the tracker answers a request with. Its message is
// meant for the client: it names no file, path or address (those go to
// the log). Errors of a fixed text are package variables, compared with
// ==, so answering them allocates nothing.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func newError(k Kind, msg string) *Error { return &Error{Kind: k, Msg: msg} }

// The rules of an impression and of a campaign, in the order they are
// checked (DESIGN.md, "Request flow of one impression").
var (
	ErrCampaignIDRequired = newError(Invalid, "campaign_id is required")
	ErrUserIDRequired     = newError(Invalid, "user_id is required")
	ErrUserIDTooLong      = newError(Invalid, "user_id must be at most "+strconv.Itoa(MaxIDBytes)+" bytes")
	ErrAdIDTooLong        = newError(Invalid, "ad_id must be at most "+strconv.Itoa(MaxIDBytes)+" bytes")
	ErrUserIDChars        = newError(Invalid, "user_id must be valid UTF-8 without control characters")
	ErrAdIDChars          = newError(Invalid, "ad_id must be valid UTF-8 without control characters")
	ErrTimestampFormat    = newError(Invalid, "timestamp must be an RFC 3339 date-time, e.g. 2026-01-02T15:04:05Z")
	ErrCampaignNotFound   = newError(NotFound, "campaign not found")
	ErrBeforeStart        = newError(Invalid, "timestamp is before the campaign's start_time")
	ErrAfterEnd           = newError(Invalid, "timestamp is after the campaign's end_time")

	ErrNameRequired    = newError(Invalid, "name is required")
	ErrNameLength      = newError(Invalid, "name must be 1 to "+strconv.Itoa(MaxNameRunes)+" characters")
	ErrNameUTF8        = newError(Invalid, "name must be valid UTF-8")
	ErrIDInvalid       = newError(Invalid, "id must match ^[A-Za-z0-9._-]{1,64}$ and not be . or ..")
	ErrStartTimeFormat = newError(Invalid, "start_time must be an RFC 3339 date-time, e.g. 2026-01-02T15:04:05Z")
	ErrStartTimeRange  = newError(Invalid, "start_time must be from 1678-01-01T00:00:00Z to 2261-12-31T23:59:59.999999999Z, the range that is stored without change")
	ErrEndTimeFormat   = newError(Invalid, "end_time must be an RFC 3339 date-time, e.g. 2026-01-02T15:04:05Z, or null to remove it")
	ErrEndTimeRange    = newError(Invalid, "end_time must not be before start_time, and before 2262-01-01T00:00:00Z")

	// ErrDedupLimit answers an impression of a new pair while the exact
	// window holds -dedup-max-pairs pairs: nothing was counted or
	// recorded.
	ErrDedupLimit = newError(DedupLimit,
		"dedup limit reached: the dedup window holds -dedup-max-pairs distinct pairs; this impression was not counted, retry after Retry-After seconds")

	// ErrSharedUnavailable answers a request that Redis could not serve
	// within the timeout. A retry is safe: an impression counted by the
	// failed call is a duplicate for the retry. It names no cause: the
	// cause (an address, a dial error) is for the operator's log.
	ErrSharedUnavailable = newError(Unavailable,
		"shared store unavailable, retry later (a retried impression is never counted twice)")
)

// errCampaignExists and errCampaignLimit are what a state's create returns;
// Create turns them into client messages naming the campaign or limit.
var (
	errCampaignExists = errors.New("campaign id already exists")
	errCampaignLimit  = errors.New("campaign limit reached")
)

func campaignExists(id string) *Error {
	return newError(Conflict, fmt.Sprintf("campaign %q already exists", id))
}

func campaignLimit(max int) *Error {
	return newError(Conflict, fmt.Sprintf("campaign limit reached: this server holds at most %d campaigns", max))
}

func tooFarAhead(skew time.Duration) *Error {
	return newError(Invalid, fmt.Sprintf("timestamp is more than %s in the future", skew))
}

// errStorage answers writes while the log cannot write: nothing changed,
// reads go on.
func errStorage(err error) *Error {
	return newError(Unavailable, "storage unavailable, nothing was counted or created by this request; retry later: "+storageReason(err))
}

// errNotDurable answers a write whose records were applied in memory but
// could not be made durable. A retry is safe: it finds the impression
// already counted and answers duplicate.
func errNotDurable(err error) *Error {
	return newError(Unavailable, "storage unavailable, the request may not survive a restart; retrying it is safe: "+storageReason(err))
}

// storageReason says what kind of failure err is, for clients: the
// operating system's words for it ("no space left on device"), never the
// file names and paths of the data directory the full error carries, which
// the server's log has.
func storageReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "the data directory cannot be written (see the server's log)"
}
