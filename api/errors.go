package api

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// apiError is an error answered to the client. Its body is rendered once,
// so static errors cost nothing on the hot path.
type apiError struct {
	code int
	msg  string
	body []byte
}

func newError(code int, msg string) *apiError {
	return &apiError{code: code, msg: msg, body: appendErrorBody(nil, code, msg)}
}

func errorf(code int, format string, args ...any) *apiError {
	return newError(code, fmt.Sprintf(format, args...))
}

func (e *apiError) Error() string { return e.msg }

var (
	errRouteNotFound    = newError(fasthttp.StatusNotFound, "route not found")
	errMethodNotAllowed = newError(fasthttp.StatusMethodNotAllowed, "method not allowed")
	errInternal         = newError(fasthttp.StatusInternalServerError, "internal server error")
	errHeaderTooLarge   = newError(fasthttp.StatusRequestHeaderFieldsTooLarge, "request line and headers are too large")
	errNotObject        = newError(fasthttp.StatusBadRequest, "request body must be a JSON object")
	errNotArray         = newError(fasthttp.StatusBadRequest, "request body must be a JSON array of impressions")
	errBatchEmpty       = newError(fasthttp.StatusUnprocessableEntity, "batch must contain at least one impression")
	errBatchTooLarge    = newError(fasthttp.StatusUnprocessableEntity, "batch must contain at most "+strconv.Itoa(MaxBatch)+" impressions")
)

// wrongType is the 400 for a field holding a value of the wrong JSON type.
func wrongType(field, want string) *apiError {
	return errorf(fasthttp.StatusBadRequest, "%s must be %s", field, want)
}

var (
	errCampaignIDType = wrongType("campaign_id", "a string")
	errUserIDType     = wrongType("user_id", "a string")
	errAdIDType       = wrongType("ad_id", "a string")
	errTimestampType  = wrongType("timestamp", "a string")
	errIDType         = wrongType("id", "a string")
	errNameType       = wrongType("name", "a string")
	errStartTimeType  = wrongType("start_time", "a string")
	errEndTimeType    = wrongType("end_time", "a string or null")
)

func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.SetStatusCode(e.code)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(e.body)
}

func malformedJSON(ctx *fasthttp.RequestCtx, err error) {
	writeError(ctx, errorf(fasthttp.StatusBadRequest, "malformed JSON: %v", err))
}

// appendErrorBody renders {"error": msg, "code": code}.
func appendErrorBody(dst []byte, code int, msg string) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendJSONString(dst, msg)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string, escaping quotes, backslashes
// and control characters and replacing invalid UTF-8 with U+FFFD, so any
// message, even one quoting client input, stays valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// handleServerError answers the errors fasthttp raises before a handler
// runs (oversized body, malformed request, timeout) with the JSON error
// shape instead of fasthttp's plain text.
func (s *Server) handleServerError(ctx *fasthttp.RequestCtx, err error) {
	var e *apiError
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = s.errBodyTooLarge
		s.rejectAndDrain(ctx, e)
		return
	case isTimeout(err):
		e = newError(fasthttp.StatusRequestTimeout, "request timed out")
	case errors.As(err, new(*fasthttp.ErrSmallBuffer)):
		e = errHeaderTooLarge
	default:
		e = newError(fasthttp.StatusBadRequest, "malformed HTTP request")
	}
	writeError(ctx, e)
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// maxDrain bounds how much of an oversized body is read and discarded.
const (
	maxDrain     = 64 << 20
	drainTimeout = 2 * time.Second
)

// rejectAndDrain answers 413 itself, then half-closes the connection and
// discards what the client is still sending. fasthttp would close right
// away, and closing a socket with unread data makes the kernel send a reset
// that destroys the 413 before most clients (curl, Go's http.Client) read
// it.
func (s *Server) rejectAndDrain(ctx *fasthttp.RequestCtx, e *apiError) {
	conn := ctx.Conn()
	cw, ok := conn.(interface{ CloseWrite() error })
	if !ok {
		writeError(ctx, e)
		s.cors.refusal(ctx, &ctx.Response.Header)
		return
	}
	var resp fasthttp.Response
	resp.SetStatusCode(e.code)
	resp.Header.SetContentType(contentTypeJSON)
	resp.Header.SetServer(serverName)
	// Written before routing, so the CORS wrapper of the route never ran.
	s.cors.refusal(ctx, &resp.Header)
	resp.SetConnectionClose()
	resp.SetBody(e.body)
	resp.SkipBody = ctx.IsHead() // a HEAD answer has no body (RFC 9110 §9.3.2), its length all the same
	if _, err := resp.WriteTo(conn); err != nil {
		return
	}
	cw.CloseWrite()
	conn.SetReadDeadline(time.Now().Add(drainTimeout))
	io.CopyN(io.Discard, conn, maxDrain)
	// fasthttp writes ctx.Response next, to a connection we already
	// half-closed: make it empty so nothing more is attempted than needed.
	ctx.Response.Reset()
}

// recoverPanics answers a panic anywhere below h with a 500 JSON error and
// logs it with its stack; the connection and the server carry on.
// fasthttp itself recovers nothing.
func (s *Server) recoverPanics(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if v := recover(); v != nil {
				s.handlePanic(ctx, v)
			}
		}()
		h(ctx)
	}
}

func (s *Server) handlePanic(ctx *fasthttp.RequestCtx, v any) {
	s.metrics.panics.Add(1)
	s.log.Error("panic in handler", "method", string(ctx.Method()), "path", string(ctx.Path()), "panic", v, "stack", string(debug.Stack()))
	ctx.Response.Reset()
	writeError(ctx, errInternal)
}
