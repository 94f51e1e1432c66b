package api

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// This file holds the decoder of the two track endpoints' bodies: a single
// pass over the bytes that validates the whole body as JSON (RFC 8259) and
// fills trackRequests as it goes, without building a value tree and without
// allocating once its buffers are warm.
//
// Guarantees:
//
//   - A body is accepted as JSON exactly when encoding/json.Valid accepts it
//     and no value is nested deeper than maxDepth. Invalid UTF-8 inside
//     strings is accepted, as encoding/json and fastjson do.
//   - Values are skipped iteratively, in time linear in the body, whatever
//     their nesting: a hostile body cannot exhaust the stack.
//   - A string value without escapes is returned as a slice of the body
//     itself; one with escapes is unescaped into the scanner's scratch
//     buffer. Escapes decode as encoding/json decodes them, a lone surrogate
//     to U+FFFD, but raw bytes are passed through unchanged, invalid UTF-8
//     included (encoding/json would replace it with U+FFFD): ids are compared
//     byte for byte, so they are kept as sent.
//   - Keys are compared exactly, case included, after unescaping.
//   - A malformed body yields a 400 naming the first problem and its byte
//     offset, quoting at most one byte of the input.

// maxDepth bounds the nesting of values, the top-level value being at depth
// 1 and any value, scalar or not, one deeper than its container. It is the
// limit fastjson.MaxDepth had when fastjson parsed these bodies.
const maxDepth = 300

// scanner decodes track request bodies. Its zero value is ready to use; it
// is not safe for concurrent use. The slices it hands out point into the
// body or into its scratch buffer, so they are valid until the next decode
// with the same scanner, and the scanner must not be reused (or returned to
// a pool) while they are in use.
type scanner struct {
	// scratch receives unescaped string values. Its capacity is reserved
	// before the first write of a decode (see unescape), so appending never
	// moves it while slices of it are handed out.
	scratch []byte

	// failAt and failWhy describe the first syntax error: its byte offset,
	// and the context in which the byte there was unexpected. failAt is -1
	// while the body is well-formed so far.
	failAt  int
	failWhy string
}

// Contexts of syntax errors, worded after encoding/json's.
const (
	ctxValue       = "looking for beginning of value"
	ctxKey         = "looking for beginning of object key string"
	ctxAfterKey    = "after object key"
	ctxAfterMember = "after object key:value pair"
	ctxAfterElem   = "after array element"
	ctxAfterTop    = "after top-level value"
	ctxString      = "in string literal"
	ctxEscape      = "in string escape code"
	ctxNumber      = "in numeric literal"
	ctxLiteral     = "in literal"
	ctxDepth       = "depth" // not a character error: nesting beyond maxDepth
)

// fail records a syntax error at offset i, unless one is recorded already,
// and returns -1, which every scanning function returns on error.
func (s *scanner) fail(i int, why string) int {
	if s.failAt < 0 {
		s.failAt, s.failWhy = i, why
	}
	return -1
}

// syntaxError renders the recorded syntax error as the 400 answered for a
// malformed body.
func (s *scanner) syntaxError(data []byte) *apiError {
	i := s.failAt
	var reason string
	switch {
	case s.failWhy == ctxDepth:
		reason = fmt.Sprintf("nesting deeper than %d levels at offset %d", maxDepth, i)
	case i >= len(data):
		reason = fmt.Sprintf("unexpected end of input at offset %d", len(data))
	default:
		reason = fmt.Sprintf("invalid character %s %s at offset %d", quoteByte(data[i]), s.failWhy, i)
	}
	return errorf(fasthttp.StatusBadRequest, "malformed JSON: %s", reason)
}

// quoteByte renders a byte for an error message: printable ASCII quoted,
// anything else in hex, so a message never carries control characters or
// pieces of multi-byte sequences.
func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	return fmt.Sprintf("0x%02x", c)
}

func (s *scanner) reset() {
	s.scratch = s.scratch[:0]
	s.failAt, s.failWhy = -1, ""
}

// decodeTrack decodes the body of POST /api/v1/impressions into r. A
// malformed body is a 400 "malformed JSON", checked over the whole body
// first; then a body that is not an object is errNotObject, and a known
// field of the wrong type is its wrong-type error, the first one in the
// body.
func (s *scanner) decodeTrack(data []byte, r *trackRequest) *apiError {
	s.reset()
	*r = trackRequest{}
	var e *apiError
	i := skipWS(data, 0)
	if i < len(data) && data[i] == '{' {
		i, e = s.decodeObject(data, i+1, 1, r)
	} else {
		i, e = s.skipValue(data, i, 1), errNotObject
	}
	if i >= 0 {
		if i = skipWS(data, i); i < len(data) {
			s.fail(i, ctxAfterTop)
		}
	}
	if s.failAt >= 0 {
		return s.syntaxError(data)
	}
	return e
}

// decodeBatch decodes the body of POST /api/v1/impressions/batch into
// *items, reusing its memory. The checks, in order of precedence: the whole
// body must be well-formed JSON (400), an array (errNotArray) of 1 to
// MaxBatch elements (errBatchEmpty, errBatchTooLarge); then each item must
// be an object without fields of the wrong type (400 naming the first
// failing item). Items past MaxBatch, and past the first failing one, are
// only validated, never decoded.
func (s *scanner) decodeBatch(data []byte, items *[]trackRequest) *apiError {
	s.reset()
	list := (*items)[:0]
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '[' {
		if i = s.skipValue(data, i, 1); i >= 0 {
			if i = skipWS(data, i); i < len(data) {
				s.fail(i, ctxAfterTop)
			}
		}
		if s.failAt >= 0 {
			return s.syntaxError(data)
		}
		return errNotArray
	}
	n := 0          // elements seen
	bad := -1       // index of the first failing item
	var e *apiError // and its error
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for {
			if n < MaxBatch && bad < 0 && i < len(data) && data[i] == '{' {
				if n < cap(list) {
					list = list[:n+1]
				} else {
					list = append(list, trackRequest{})
				}
				var te *apiError
				if i, te = s.decodeObject(data, i+1, 2, &list[n]); te != nil {
					bad, e = n, te
				}
			} else {
				if n < MaxBatch && bad < 0 {
					bad, e = n, errNotObject
				}
				i = s.skipValue(data, i, 2)
			}
			if i < 0 {
				break
			}
			n++
			if i = skipWS(data, i); i >= len(data) {
				s.fail(i, ctxAfterElem)
				break
			}
			if data[i] == ',' {
				i = skipWS(data, i+1)
				continue
			}
			if data[i] == ']' {
				i++
				break
			}
			s.fail(i, ctxAfterElem)
			break
		}
	}
	if i >= 0 {
		if i = skipWS(data, i); i < len(data) {
			s.fail(i, ctxAfterTop)
		}
	}
	*items = list
	switch {
	case s.failAt >= 0:
		return s.syntaxError(data)
	case n == 0:
		return errBatchEmpty
	case n > MaxBatch:
		return errBatchTooLarge
	case bad < 0:
		return nil
	case e == errNotObject:
		return errorf(e.code, "item %d must be a JSON object", bad)
	default:
		return errorf(e.code, "item %d: %s", bad, e.msg)
	}
}

// The fields of a track request, as told by scanKey.
const (
	fieldUnknown = iota
	fieldCampaignID
	fieldUserID
	fieldAdID
	fieldTimestamp
)

// Little-endian words of the field names' first bytes, closing quote
// included, for scanKey's fast path.
const (
	wordCampaign  = 'c' | 'a'<<8 | 'm'<<16 | 'p'<<24 | 'a'<<32 | 'i'<<40 | 'g'<<48 | 'n'<<56 // campaign
	wordCampaign2 = '_' | 'i'<<8 | 'd'<<16 | '"'<<24                                         // _id"
	wordUserID    = 'u' | 's'<<8 | 'e'<<16 | 'r'<<24 | '_'<<32 | 'i'<<40 | 'd'<<48 | '"'<<56 // user_id"
	wordAdID      = 'a' | 'd'<<8 | '_'<<16 | 'i'<<24 | 'd'<<32 | '"'<<40                     // ad_id"
	wordTimestamp = 't' | 'i'<<8 | 'm'<<16 | 'e'<<24 | 's'<<32 | 't'<<40 | 'a'<<48 | 'm'<<56 // timestam
	wordTimestam2 = 'p' | '"'<<8                                                             // p"
)

// scanKey validates the object key whose opening quote precedes data[i]
// and tells which field it names. It returns the offset after the closing
// quote, or -1 on a syntax error.
func (s *scanner) scanKey(data []byte, i int) (end, field int) {
	// Fast path: a field name without escapes, told by comparing words;
	// its closing quote, which no backslash precedes, ends the key.
	if i+12 <= len(data) {
		w := binary.LittleEndian.Uint64(data[i:])
		switch {
		case w == wordUserID:
			return i + 8, fieldUserID
		case w == wordCampaign && binary.LittleEndian.Uint32(data[i+8:]) == wordCampaign2:
			return i + 12, fieldCampaignID
		case w == wordTimestamp && binary.LittleEndian.Uint16(data[i+8:]) == wordTimestam2:
			return i + 10, fieldTimestamp
		case w&(1<<48-1) == wordAdID:
			return i + 6, fieldAdID
		}
	}
	end, esc := s.scanString(data, i)
	if end < 0 {
		return -1, fieldUnknown
	}
	key := data[i : end-1]
	if esc && len(key) <= 6*len("campaign_id") {
		// An escape takes at most 6 bytes per byte it stands for, so a
		// longer escaped key cannot unescape to a field name.
		var buf [6 * len("campaign_id")]byte
		key = appendUnescaped(buf[:0], key)
	}
	switch string(key) {
	case "campaign_id":
		return end, fieldCampaignID
	case "user_id":
		return end, fieldUserID
	case "ad_id":
		return end, fieldAdID
	case "timestamp":
		return end, fieldTimestamp
	}
	return end, fieldUnknown
}

// decodeObject decodes the members of an object whose '{' precedes
// data[i] and which sits at the given depth, into r, which it zeroes first.
// It returns the offset after the closing '}', or -1 on a syntax error.
// A string sets its field and null clears it; of duplicate keys the last
// wins. A known field of another type is a wrong-type error: the first one
// in the object is returned, once the object has been validated to its end.
// Unknown keys are skipped whatever their value.
func (s *scanner) decodeObject(data []byte, i, depth int, r *trackRequest) (int, *apiError) {
	*r = trackRequest{}
	var bad *apiError
	i = skipWS(data, i)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return s.fail(i, ctxKey), nil
		}
		end, field := s.scanKey(data, i+1)
		if end < 0 {
			return -1, nil
		}
		var dst *[]byte
		var typeErr *apiError
		switch field {
		case fieldCampaignID:
			dst, typeErr = &r.CampaignID, errCampaignIDType
		case fieldUserID:
			dst, typeErr = &r.UserID, errUserIDType
		case fieldAdID:
			dst, typeErr = &r.AdID, errAdIDType
		case fieldTimestamp:
			dst, typeErr = &r.Timestamp, errTimestampType
		}
		if i = skipWS(data, end); i >= len(data) || data[i] != ':' {
			return s.fail(i, ctxAfterKey), nil
		}
		// Members sit at depth+1 <= 3 here, well within maxDepth.
		i = skipWS(data, i+1)
		switch {
		case dst == nil:
			i = s.skipValue(data, i, depth+1)
		case i < len(data) && data[i] == '"':
			start := i + 1
			var esc bool
			if i, esc = s.scanString(data, start); i < 0 {
				return -1, nil
			}
			if esc {
				*dst = s.unescape(data, start, i-1)
			} else {
				// Non-nil even when empty, and capped so that appending to
				// it could never write over the body.
				*dst = data[start : i-1 : i-1]
			}
		case i < len(data) && data[i] == 'n':
			i = s.scanLiteral(data, i, "null")
			*dst = nil
		default:
			if bad == nil {
				bad = typeErr
			}
			i = s.skipValue(data, i, depth+1)
		}
		if i < 0 {
			return -1, nil
		}
		if i = skipWS(data, i); i >= len(data) {
			return s.fail(i, ctxAfterMember), nil
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			r.HasTimestamp = r.Timestamp != nil
			return i + 1, bad
		default:
			return s.fail(i, ctxAfterMember), nil
		}
	}
}

// unescape unescapes the string data[start:end], known to be valid and to
// contain an escape, into the scratch buffer and returns the result.
//
// Unescaping never lengthens a string, and the strings unescaped during one
// decode lie one after another in the body, so from the first of them on,
// the scratch buffer never needs more than the rest of the body: reserving
// that much at the first one means the buffer never moves afterwards. (Were
// it to move, slices already handed out would keep the old array alive and
// intact; the reservation is what keeps the steady state allocation-free.)
func (s *scanner) unescape(data []byte, start, end int) []byte {
	if need := len(data) - start; cap(s.scratch)-len(s.scratch) < need {
		s.scratch = make([]byte, 0, len(data))
	}
	from := len(s.scratch)
	s.scratch = appendUnescaped(s.scratch, data[start:end])
	to := len(s.scratch)
	return s.scratch[from:to:to]
}

// appendUnescaped appends the unescaped form of the contents of a valid
// JSON string to dst. Like encoding/json, it decodes a \u escape of a lone
// surrogate, or of a surrogate pair in the wrong order, to U+FFFD; unlike
// it, it copies other bytes unchanged, invalid UTF-8 included.
func appendUnescaped(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		c = src[i+1]
		if c != 'u' {
			dst = append(dst, unescapeByte[c])
			i += 2
			continue
		}
		r := rune(hex4(src[i+2:]))
		i += 6
		if utf16.IsSurrogate(r) {
			r2 := rune(-1)
			if i+6 <= len(src) && src[i] == '\\' && src[i+1] == 'u' {
				r2 = rune(hex4(src[i+2:]))
			}
			if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
				r = d
				i += 6
			} else {
				r = utf8.RuneError
			}
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// unescapeByte maps the byte after a backslash to the byte it stands for,
// for the escapes other than \u.
var unescapeByte = [256]byte{
	'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
}

// hex4 decodes the 4 hex digits at the start of b, known to be there.
func hex4(b []byte) uint16 {
	_ = b[3]
	return uint16(hexVal[b[0]])<<12 | uint16(hexVal[b[1]])<<8 | uint16(hexVal[b[2]])<<4 | uint16(hexVal[b[3]])
}

// hexVal maps a hex digit to its value and any other byte to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
		t[c-'a'+'A'] = byte(c - 'a' + 10)
	}
	return t
}()

// isWS reports the bytes RFC 8259 allows between tokens.
var isWS = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// skipWS returns the offset of the first non-whitespace byte at or after i.
func skipWS(data []byte, i int) int {
	for i < len(data) && data[i] <= ' ' && isWS[data[i]] {
		i++
	}
	return i
}

// plainString reports the bytes that stand for themselves inside a string:
// all but the quote, the backslash and control characters.
var plainString = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string whose opening quote precedes data[i]. It
// returns the offset after the closing quote (-1 on a syntax error) and
// whether the string contains escapes.
func (s *scanner) scanString(data []byte, i int) (int, bool) {
	esc := false
	for {
		if i = nextSpecial(data, i); i >= len(data) {
			return s.fail(i, ctxString), esc
		}
		switch data[i] {
		case '"':
			return i + 1, esc
		case '\\':
			esc = true
			if i+1 >= len(data) {
				return s.fail(i+1, ctxEscape), esc
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				for j := i + 2; j < i+6; j++ {
					if j >= len(data) || hexVal[data[j]] == 0xff {
						return s.fail(j, ctxEscape), esc
					}
				}
				i += 6
			default:
				return s.fail(i+1, ctxEscape), esc
			}
		default:
			return s.fail(i, ctxString), esc // a control character
		}
	}
}

// nextSpecial returns the offset of the first byte at or after i that does
// not stand for itself in a string, or len(data) if there is none. It looks
// at eight bytes at a time while it can, so that an id or a timestamp takes
// one to three steps.
func nextSpecial(data []byte, i int) int {
	for ; i+8 <= len(data); i += 8 {
		if m := specialBytes(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for i < len(data) && plainString[data[i]] {
		i++
	}
	return i
}

// specialBytes returns a word whose lowest set bit is the high bit of the
// first byte (in little-endian order) of x that is a quote, a backslash or
// below 0x20, and zero if there is none. It is the classic "has zero byte"
// test applied to x^'"', x^'\\' and (as "has byte less than") to x: the
// test can flag bytes above a flagged one spuriously, through the borrow,
// but never one below, so its lowest flag is exact.
func specialBytes(x uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ (ones * '"')
	b := x ^ (ones * '\\')
	return ((q-ones) & ^q | (b-ones) & ^b | (x-ones*0x20) & ^x) & highs
}

// scanLiteral validates the literal lit (true, false or null) at data[i].
func (s *scanner) scanLiteral(data []byte, i int, lit string) int {
	for j := 0; j < len(lit); j++ {
		if i+j >= len(data) || data[i+j] != lit[j] {
			return s.fail(i+j, ctxLiteral)
		}
	}
	return i + len(lit)
}

// scanNumber validates the number starting at data[i] with the grammar of
// RFC 8259: an optional minus, an integer part without leading zeros, an
// optional fraction and an optional exponent, each with at least one digit.
func (s *scanner) scanNumber(data []byte, i int) int {
	if data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return s.fail(i, ctxNumber)
	case data[i] == '0':
		i++
	case isDigit(data[i]):
		i = skipDigits(data, i+1)
	default:
		return s.fail(i, ctxNumber)
	}
	if i < len(data) && data[i] == '.' {
		if i++; i >= len(data) || !isDigit(data[i]) {
			return s.fail(i, ctxNumber)
		}
		i = skipDigits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return s.fail(i, ctxNumber)
		}
		i = skipDigits(data, i+1)
	}
	return i
}

func isDigit(c byte) bool { return c-'0' < 10 }

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

// skipValue validates the value starting at data[i], at the given depth,
// and returns the offset after it, or -1 on a syntax error. It keeps the
// containers it is inside of in a bit stack instead of recursing, so its
// stack use is constant and its time linear in the bytes it skips.
func (s *scanner) skipValue(data []byte, i, depth int) int {
	var inObject [(maxDepth + 63) / 64]uint64 // bit n: container n is an object
	open := 0                                 // containers opened by this call
	for {
		// data[i] should start a value at the given depth.
		if i >= len(data) {
			return s.fail(i, ctxValue)
		}
		if depth > maxDepth {
			return s.fail(i, ctxDepth)
		}
		switch c := data[i]; {
		case c == '{' || c == '[':
			if i = skipWS(data, i+1); i < len(data) && data[i] == c+2 { // '}' or ']'
				i++
				break
			}
			word, bit := open/64, uint64(1)<<(open%64)
			if c == '{' {
				inObject[word] |= bit
				if i = s.scanMemberKey(data, i); i < 0 {
					return -1
				}
			} else {
				inObject[word] &^= bit
			}
			open++
			depth++
			continue
		case c == '"':
			i, _ = s.scanString(data, i+1)
		case c == '-' || isDigit(c):
			i = s.scanNumber(data, i)
		case c == 't':
			i = s.scanLiteral(data, i, "true")
		case c == 'f':
			i = s.scanLiteral(data, i, "false")
		case c == 'n':
			i = s.scanLiteral(data, i, "null")
		default:
			return s.fail(i, ctxValue)
		}
		if i < 0 {
			return -1
		}
		// A value ended: close the containers it ends, then move on to
		// the next element or member, if any.
	next:
		for {
			if open == 0 {
				return i
			}
			obj := inObject[(open-1)/64]&(1<<((open-1)%64)) != 0
			why, closer := ctxAfterElem, byte(']')
			if obj {
				why, closer = ctxAfterMember, '}'
			}
			if i = skipWS(data, i); i >= len(data) {
				return s.fail(i, why)
			}
			switch data[i] {
			case closer:
				open--
				depth--
				i++
			case ',':
				i = skipWS(data, i+1)
				if obj {
					if i = s.scanMemberKey(data, i); i < 0 {
						return -1
					}
				}
				break next
			default:
				return s.fail(i, why)
			}
		}
	}
}

// scanMemberKey validates an object key at data[i] and the colon after it,
// and returns the offset of the member's value.
func (s *scanner) scanMemberKey(data []byte, i int) int {
	if i >= len(data) || data[i] != '"' {
		return s.fail(i, ctxKey)
	}
	if i, _ = s.scanString(data, i+1); i < 0 {
		return -1
	}
	if i = skipWS(data, i); i >= len(data) || data[i] != ':' {
		return s.fail(i, ctxAfterKey)
	}
	return skipWS(data, i+1)
}
