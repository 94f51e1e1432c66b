package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/valyala/fastjson"
)

// describe renders the fields of r, telling an absent field (nil) from a
// present one, for comparisons and failure messages.
func describe(r *trackRequest) string {
	f := func(b []byte) string {
		if b == nil {
			return "nil"
		}
		return strconv.Quote(string(b))
	}
	s := fmt.Sprintf("campaign=%s user=%s ad=%s ts=%s", f(r.CampaignID), f(r.UserID), f(r.AdID), f(r.Timestamp))
	if r.HasTimestamp != (r.Timestamp != nil) {
		s += fmt.Sprintf(" hasTS=%v", r.HasTimestamp)
	}
	return s
}

// fields is describe's expected value: campaign, user, ad and timestamp,
// with "nil" for an absent field and any other string quoted.
func fields(campaign, user, ad, ts string) string {
	f := func(s string) string {
		if s == "nil" {
			return s
		}
		return strconv.Quote(s)
	}
	return fmt.Sprintf("campaign=%s user=%s ad=%s ts=%s", f(campaign), f(user), f(ad), f(ts))
}

func isMalformed(e *apiError) bool {
	return e != nil && e.code == 400 && strings.HasPrefix(e.msg, "malformed JSON: ")
}

// malformed stands for any malformed-JSON error in the tables below.
var malformed = newError(400, "malformed JSON")

// checkError reports whether got is the error want stands for: nil, any
// malformed-JSON error, or an error of the same code and message.
func checkError(got, want *apiError) bool {
	switch {
	case want == nil || got == nil:
		return got == want
	case want == malformed:
		return isMalformed(got)
	}
	return got.code == want.code && got.msg == want.msg
}

func nest(open, inner, close string, n int) string {
	return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
}

func TestDecodeTrack(t *testing.T) {
	const ok = "campaign=nil user=nil ad=nil ts=nil"
	for _, tc := range []struct {
		name, body string
		want       string // describe of the result when err is nil
		err        *apiError
	}{
		// Shapes.
		{"minimal", `{"campaign_id":"c1","user_id":"u1"}`, fields("c1", "u1", "nil", "nil"), nil},
		{"all fields", `{"campaign_id":"c","user_id":"u","ad_id":"a","timestamp":"2026-11-26T10:00:00Z"}`, fields("c", "u", "a", "2026-11-26T10:00:00Z"), nil},
		{"empty object", `{}`, ok, nil},
		{"whitespace everywhere", " \t\r\n{ \t\r\n\"campaign_id\" \t\r\n: \t\r\n\"c\" \t\r\n, \t\r\n\"user_id\"\n:\n\"u\"\r\n} \t\r\n", fields("c", "u", "nil", "nil"), nil},
		{"empty strings are present", `{"campaign_id":"","user_id":"","ad_id":"","timestamp":""}`, fields("", "", "", ""), nil},
		{"nulls are absent", `{"campaign_id":null,"user_id":null,"ad_id":null,"timestamp":null}`, ok, nil},
		{"last key wins", `{"user_id":"a","user_id":"b"}`, fields("nil", "b", "nil", "nil"), nil},
		{"last null wins", `{"user_id":"a","user_id":null}`, ok, nil},
		{"string after null wins", `{"timestamp":null,"timestamp":"t"}`, fields("nil", "nil", "nil", "t"), nil},
		{"unknown keys skipped", `{"x":{"a":[1,{"b":[]},{}],"c":"\u0041\n"},"campaign_id":"c","y":[true,false,null,-0.5e+10,"s"],"z":{}}`, fields("c", "nil", "nil", "nil"), nil},
		{"keys are case-sensitive", `{"Campaign_ID":"c","USER_ID":"u","ad_id ":"a"," timestamp":"t"}`, ok, nil},
		{"unknown key of a wrong type", `{"campaign":5,"user":true}`, ok, nil},
		{"empty key", `{"":"x"}`, ok, nil},

		// Escapes.
		{"escaped key", `{"user\u005fid":"u","\u0063ampaign_id":"c","ad\u005Fid":"a"}`, fields("c", "u", "a", "nil"), nil},
		{"escaped key with solidus", `{"user\/id":"u"}`, ok, nil},
		{"long escaped key", `{"\u0075\u0073\u0065\u0072\u005f\u0069\u0064\u0075\u0073\u0065\u0072\u005f\u0069\u0064":"u"}`, ok, nil},
		{"two-character escapes", `{"user_id":"\"\\\/\b\f\n\r\t"}`, fields("nil", "\"\\/\b\f\n\r\t", "nil", "nil"), nil},
		{"unicode escapes", `{"user_id":"\u00e9t\u00E9 \u20ac \u0000"}`, fields("nil", "été € \x00", "nil", "nil"), nil},
		{"surrogate pair", `{"user_id":"\ud83d\ude00"}`, fields("nil", "😀", "nil", "nil"), nil},
		{"lone high surrogate", `{"user_id":"a\ud800b"}`, fields("nil", "a\uFFFDb", "nil", "nil"), nil},
		{"lone high surrogate at end", `{"user_id":"\uD800"}`, fields("nil", "\uFFFD", "nil", "nil"), nil},
		{"lone low surrogate", `{"user_id":"\udc00"}`, fields("nil", "\uFFFD", "nil", "nil"), nil},
		{"high surrogate then other escape", `{"user_id":"\ud800\u0041"}`, fields("nil", "\uFFFDA", "nil", "nil"), nil},
		{"high surrogate then \\n", `{"user_id":"\ud800\n"}`, fields("nil", "\uFFFD\n", "nil", "nil"), nil},
		{"two high surrogates", `{"user_id":"\ud800\ud800\udc00"}`, fields("nil", "\uFFFD\U00010000", "nil", "nil"), nil},
		{"reversed pair", `{"user_id":"\udc00\ud800"}`, fields("nil", "\uFFFD\uFFFD", "nil", "nil"), nil},
		{"raw UTF-8", `{"user_id":"été ☃ 🎉"}`, fields("nil", "été ☃ 🎉", "nil", "nil"), nil},
		{"invalid UTF-8 passed through", "{\"user_id\":\"u\xff\xfe\xc3\",\"ad_id\":\"\xed\xa0\x80\\n\"}", fields("nil", "u\xff\xfe\xc3", "\xed\xa0\x80\n", "nil"), nil},
		{"DEL is not a control character", "{\"user_id\":\"\x7f\"}", fields("nil", "\x7f", "nil", "nil"), nil},
		{"long strings", `{"user_id":"` + strings.Repeat("0123456789", 30) + `","ad_id":"` + strings.Repeat(`ab\"`, 100) + `"}`, fields("nil", strings.Repeat("0123456789", 30), strings.Repeat(`ab"`, 100), "nil"), nil},

		// Numbers, valid.
		{"numbers", `{"a":0,"b":-0,"c":1.5,"d":1e5,"e":1E+5,"f":1e-5,"g":-12.34e56,"h":123456789012345678901234567890,"i":0.0,"j":-0e0,"k":1E400}`, ok, nil},

		// Wrong types: the first in the body wins.
		{"campaign_id number", `{"campaign_id":1}`, "", errCampaignIDType},
		{"user_id true", `{"user_id":true}`, "", errUserIDType},
		{"ad_id false", `{"ad_id":false}`, "", errAdIDType},
		{"timestamp object", `{"timestamp":{}}`, "", errTimestampType},
		{"user_id array", `{"user_id":["u"]}`, "", errUserIDType},
		{"campaign_id object", `{"campaign_id":{"id":"c1"},"user_id":"u"}`, "", errCampaignIDType},
		{"first wrong type wins", `{"ad_id":1,"user_id":2}`, "", errAdIDType},
		{"wrong type after a string", `{"user_id":"a","user_id":5}`, "", errUserIDType},
		{"wrong type before a string", `{"user_id":5,"user_id":"a"}`, "", errUserIDType},
		{"wrong type is not a syntax error", `{"user_id":-1.5e3,"campaign_id":"c"}`, "", errUserIDType},

		// Not an object.
		{"array", `[]`, "", errNotObject},
		{"array of objects", ` [{"campaign_id":"c"}] `, "", errNotObject},
		{"string", `"c1"`, "", errNotObject},
		{"number", `-1`, "", errNotObject},
		{"true", `true`, "", errNotObject},
		{"null", ` null `, "", errNotObject},

		// Malformed.
		{"empty body", ``, "", malformed},
		{"only whitespace", " \n\t\r", "", malformed},
		{"unterminated object", `{"campaign_id":"c1",`, "", malformed},
		{"open brace", `{`, "", malformed},
		{"key without value", `{"a"}`, "", malformed},
		{"colon without value", `{"a":}`, "", malformed},
		{"trailing comma in object", `{"a":1,}`, "", malformed},
		{"leading comma", `{,"a":1}`, "", malformed},
		{"missing comma", `{"a":1 "b":2}`, "", malformed},
		{"single quotes", `{'a':1}`, "", malformed},
		{"unquoted key", `{a:1}`, "", malformed},
		{"number key", `{1:1}`, "", malformed},
		{"extra brace", `{"a":1}}`, "", malformed},
		{"trailing garbage", `{"a":1} x`, "", malformed},
		{"two values", `{} {}`, "", malformed},
		{"trailing NUL", "{}\x00", "", malformed},
		{"BOM", "\ufeff{}", "", malformed},
		{"vertical tab", "\v{}", "", malformed},
		{"non-breaking space", "{\u00a0}", "", malformed},
		{"leading zero", `{"a":01}`, "", malformed},
		{"negative leading zero", `{"a":-01}`, "", malformed},
		{"plus", `{"a":+1}`, "", malformed},
		{"bare fraction", `{"a":.5}`, "", malformed},
		{"bare point", `{"a":1.}`, "", malformed},
		{"point then exponent", `{"a":1.e5}`, "", malformed},
		{"bare exponent", `{"a":1e}`, "", malformed},
		{"signed bare exponent", `{"a":1e+}`, "", malformed},
		{"bare minus", `{"a":-}`, "", malformed},
		{"minus then point", `{"a":-.5}`, "", malformed},
		{"hex", `{"a":0x1}`, "", malformed},
		{"NaN", `{"a":NaN}`, "", malformed},
		{"Infinity", `{"a":Infinity}`, "", malformed},
		{"-Inf", `{"a":-Inf}`, "", malformed},
		{"truncated literal", `{"a":tru}`, "", malformed},
		{"truncated null", `{"user_id":nul}`, "", malformed},
		{"capitalised literal", `{"a":True}`, "", malformed},
		{"literal with suffix", `{"a":nullx}`, "", malformed},
		{"control character in value", "{\"user_id\":\"a\x01\"}", "", malformed},
		{"raw newline in value", "{\"user_id\":\"a\nb\"}", "", malformed},
		{"raw tab in value", "{\"user_id\":\"a\tb\"}", "", malformed},
		{"control character in key", "{\"user\x1f_id\":\"a\"}", "", malformed},
		{"control character in skipped value", "{\"x\":[\"\x00\"]}", "", malformed},
		{"unknown escape", `{"user_id":"\x41"}`, "", malformed},
		{"escaped quote, single", `{"user_id":"\'"}`, "", malformed},
		{"uppercase U escape", `{"user_id":"\U0041"}`, "", malformed},
		{"short unicode escape", `{"user_id":"\u12"}`, "", malformed},
		{"bad hex digit", `{"user_id":"\u12G4"}`, "", malformed},
		{"escape at end", `{"user_id":"\`, "", malformed},
		{"unterminated string", `{"user_id":"abc`, "", malformed},
		{"unterminated long string", `{"user_id":"` + strings.Repeat("a", 100), "", malformed},
		{"unterminated key", `{"user_`, "", malformed},
		{"array not closed", `{"a":[1,2}`, "", malformed},
		{"array missing comma", `{"a":[1 2]}`, "", malformed},
		{"trailing comma in array", `{"a":[1,]}`, "", malformed},
		{"nested key without value", `{"a":{"b"}}`, "", malformed},
		{"mismatched brackets", `{"a":[}]}`, "", malformed},
		{"malformed beats wrong type", `{"user_id":5,`, "", malformed},
		{"malformed after wrong type", `{"user_id":5,"x":[}`, "", malformed},
		{"malformed top-level array", `[1,]`, "", malformed},
		{"lone closer", `]`, "", malformed},
		{"lone comma", `,`, "", malformed},

		// Depth: the object is at depth 1, its members at depth 2.
		{"depth 300", `{"x":` + nest("[", "", "]", 299) + `}`, ok, nil},
		{"depth 300 with scalar", `{"x":` + nest("[", "1", "]", 298) + `}`, ok, nil},
		{"depth 300 with objects", nest(`{"x":`, "{}", "}", 299), ok, nil},
		{"depth 301", `{"x":` + nest("[", "", "]", 300) + `}`, "", malformed},
		{"depth 301 with scalar", `{"x":` + nest("[", "1", "]", 299) + `}`, "", malformed},
		{"depth 301 with objects", nest(`{"x":`, "{}", "}", 300), "", malformed},
		{"depth 301 in a wrong-typed field", `{"user_id":` + nest("[", "", "]", 300) + `}`, "", malformed},
		{"top-level array depth 300", nest("[", "", "]", 300), "", errNotObject},
		{"top-level array depth 301", nest("[", "", "]", 301), "", malformed},
		{"many siblings at depth 300", `{"x":` + nest("[", strings.Repeat("[],", 1000)+"[]", "]", 298) + `}`, ok, nil},
		{"hostile nesting", strings.Repeat("[", 100000), "", malformed},
		{"hostile nesting in a value", `{"x":` + strings.Repeat(`{"x":[`, 100000), "", malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s scanner
			var r trackRequest
			r.UserID = []byte("stale") // must be reset
			e := s.decodeTrack([]byte(tc.body), &r)
			if !checkError(e, tc.err) {
				t.Fatalf("error: got %v, want %v", e, tc.err)
			}
			if e == nil {
				if got := describe(&r); got != tc.want {
					t.Fatalf("got  %s\nwant %s", got, tc.want)
				}
			}
			if isMalformed(e) && (len(e.msg) > 120 || !strings.Contains(e.msg, " at offset ")) {
				t.Fatalf("syntax error message %q: want a short reason with an offset", e.msg)
			}
			if e != nil && !json.Valid(e.body) {
				t.Fatalf("error body is not JSON: %s", e.body)
			}
		})
	}
}

// TestSyntaxErrorMessages pins a few messages: the reason, the byte
// offset, and at most one byte of the input, rendered safely.
func TestSyntaxErrorMessages(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{``, "malformed JSON: unexpected end of input at offset 0"},
		{`{"campaign_id":"c1",`, "malformed JSON: unexpected end of input at offset 20"},
		{`{"a":01}`, "malformed JSON: invalid character '1' after object key:value pair at offset 6"},
		{`{"a":x}`, "malformed JSON: invalid character 'x' looking for beginning of value at offset 5"},
		{"{\"a\":\"\x01\"}", "malformed JSON: invalid character 0x01 in string literal at offset 6"},
		{"{\"a\":\"\\\xff\"}", "malformed JSON: invalid character 0xff in string escape code at offset 7"},
		{`{} "`, "malformed JSON: invalid character '\"' after top-level value at offset 3"},
		{`{"a":1}` + strings.Repeat("x", 1<<20), "malformed JSON: invalid character 'x' after top-level value at offset 7"},
		{nest("[", "", "]", 301), "malformed JSON: nesting deeper than 300 levels at offset 300"},
		{strings.Repeat("[", 300), "malformed JSON: unexpected end of input at offset 300"},
		{"{\"a\":\"\\u00e9\xff", "malformed JSON: unexpected end of input at offset 13"},
	} {
		var s scanner
		var r trackRequest
		if e := s.decodeTrack([]byte(tc.body), &r); e == nil || e.msg != tc.want || e.code != 400 {
			t.Errorf("%.40q: got %v, want %q", tc.body, e, tc.want)
		}
	}
}

// TestTrackEndpointsUseScanner checks the errors the handlers answer with
// the scanner: messages and codes, and nothing counted.
func TestTrackEndpointsUseScanner(t *testing.T) {
	ts := newTestServer(t, "exact")
	ts.createCampaign("c1")
	for _, tc := range []struct {
		path, body string
		status     int
		msg        string
	}{
		{"/api/v1/impressions", `{"campaign_id":"c1",`, 400, "malformed JSON: unexpected end of input at offset 20"},
		{"/api/v1/impressions", `{"campaign_id":"c1","user_id":"u"} x`, 400, "malformed JSON: invalid character 'x' after top-level value at offset 35"},
		{"/api/v1/impressions", `["c1"]`, 400, errNotObject.msg},
		{"/api/v1/impressions", `{"campaign_id":"c1","user_id":7}`, 400, errUserIDType.msg},
		{"/api/v1/impressions", `{"campaign_id":"c1","user_id":""}`, 422, errUserIDRequired.msg},
		{"/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u"},]`, 400, "malformed JSON: invalid character ']' looking for beginning of value at offset 36"},
		{"/api/v1/impressions/batch", `{}`, 400, errNotArray.msg},
		{"/api/v1/impressions/batch", `[]`, 422, errBatchEmpty.msg},
		{"/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u"},"x"]`, 400, "item 1 must be a JSON object"},
		{"/api/v1/impressions/batch", `[{"campaign_id":"c1","user_id":"u"},{"timestamp":1}]`, 400, "item 1: timestamp must be a string"},
	} {
		var e struct{ Error string }
		ts.do("POST", tc.path, tc.body).want(t, tc.status).decode(t, &e)
		if e.Error != tc.msg {
			t.Errorf("%s %s: got %q, want %q", tc.path, tc.body, e.Error, tc.msg)
		}
	}
	if got := ts.stats("c1"); got.Total != 0 {
		t.Fatalf("rejected bodies counted: %+v", got)
	}
	// Escaped and raw spellings of an id are the same id, in both endpoints.
	var one struct{ Status string }
	ts.do("POST", "/api/v1/impressions", `{"campaign_id":"c1","user_id":"\u00e9\ud83d\ude00"}`).want(t, 200).decode(t, &one)
	var batch struct{ Counted, Duplicates int }
	ts.do("POST", "/api/v1/impressions/batch", `[{"campaign_id":"c\u0031","user_id":"é😀"}]`).want(t, 200).decode(t, &batch)
	if one.Status != "counted" || batch.Duplicates != 1 {
		t.Fatalf("escaped ids: got %s then %+v, want counted then a duplicate", one.Status, batch)
	}
}

// scanItems returns a batch body of n items with distinct users.
func scanItems(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"campaign_id":"c1","user_id":"u%d"}`, i)
	}
	b.WriteByte(']')
	return b.String()
}

func TestDecodeBatch(t *testing.T) {
	full := scanItems(MaxBatch)
	tooMany := scanItems(MaxBatch + 1)
	for _, tc := range []struct {
		name, body string
		want       []string // describe of each item when err is nil
		err        *apiError
	}{
		{"one item", `[{"campaign_id":"c","user_id":"u"}]`, []string{fields("c", "u", "nil", "nil")}, nil},
		{"whitespace everywhere", " \n[ \t{ \"user_id\" : \"u\" } \r, \n{ } ]\n ", []string{fields("nil", "u", "nil", "nil"), fields("nil", "nil", "nil", "nil")}, nil},
		{"escapes in items", `[{"user_id":"\u00e9"},{"user_id":"x"},{"ad_id":"\n","user_id":"\ud83d\ude00"}]`,
			[]string{fields("nil", "é", "nil", "nil"), fields("nil", "x", "nil", "nil"), fields("nil", "😀", "\n", "nil")}, nil},
		{"items are independent", `[{"user_id":"a","timestamp":"t"},{"campaign_id":"c"}]`, []string{fields("nil", "a", "nil", "t"), fields("c", "nil", "nil", "nil")}, nil},

		{"empty array", `[]`, nil, errBatchEmpty},
		{"empty array with whitespace", " [ \n ] ", nil, errBatchEmpty},
		{"object", `{"campaign_id":"c","user_id":"u"}`, nil, errNotArray},
		{"string", `"x"`, nil, errNotArray},
		{"null", `null`, nil, errNotArray},
		{"number", `1`, nil, errNotArray},

		{"item not an object", `[1]`, nil, newError(400, "item 0 must be a JSON object")},
		{"array item", `[{},[]]`, nil, newError(400, "item 1 must be a JSON object")},
		{"null item", `[{},null]`, nil, newError(400, "item 1 must be a JSON object")},
		{"string item", `["c1"]`, nil, newError(400, "item 0 must be a JSON object")},
		{"wrong type in an item", `[{"campaign_id":"c"},{"campaign_id":"c","user_id":5}]`, nil, newError(400, "item 1: user_id must be a string")},
		{"first failing item wins", `[{},1,{"user_id":5}]`, nil, newError(400, "item 1 must be a JSON object")},
		{"first failing item wins, type error", `[{},{"ad_id":[]},2]`, nil, newError(400, "item 1: ad_id must be a string")},
		{"first wrong type in an item wins", `[{"timestamp":1,"campaign_id":2}]`, nil, newError(400, "item 0: timestamp must be a string")},

		{"malformed", `[{"campaign_id":"c"}`, nil, malformed},
		{"open bracket", `[`, nil, malformed},
		{"trailing comma", `[{},]`, nil, malformed},
		{"leading comma", `[,{}]`, nil, malformed},
		{"missing comma", `[{} {}]`, nil, malformed},
		{"trailing garbage", `[{}]]`, nil, malformed},
		{"malformed beats not an array", `{"a":1,}`, nil, malformed},
		{"malformed beats empty", `[] x`, nil, malformed},
		{"malformed beats item errors", `[1,{"user_id":5},x]`, nil, malformed},
		{"malformed inside an item", `[{"user_id":"a\x"}]`, nil, malformed},
		{"malformed after an item error", `[1,{"user_id":"\x"}]`, nil, malformed},
		{"depth 300", nest("[", "", "]", 300), nil, newError(400, "item 0 must be a JSON object")},
		{"depth 301", nest("[", "", "]", 301), nil, malformed},
		{"item depth 300", `[{"x":` + nest("[", "", "]", 298) + `}]`, []string{fields("nil", "nil", "nil", "nil")}, nil},
		{"item depth 301", `[{"x":` + nest("[", "", "]", 299) + `}]`, nil, malformed},
		{"hostile nesting", strings.Repeat("[", 100000), nil, malformed},

		{"MaxBatch items", full, nil, nil},
		{"MaxBatch+1 items", tooMany, nil, errBatchTooLarge},
		{"too large beats item errors", `[1,` + tooMany[1:], nil, errBatchTooLarge},
		{"items past MaxBatch are not checked", tooMany[:len(tooMany)-1] + `,5]`, nil, errBatchTooLarge},
		{"items past MaxBatch must be valid JSON", tooMany[:len(tooMany)-1] + `,{"a":}]`, nil, malformed},
		{"wrong type in the last item", full[:len(full)-1] + `,{"user_id":5}]`, nil, errBatchTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s scanner
			items := make([]trackRequest, 3, 3) // stale items, to be overwritten
			for i := range items {
				items[i].UserID = []byte("stale")
			}
			e := s.decodeBatch([]byte(tc.body), &items)
			if !checkError(e, tc.err) {
				t.Fatalf("error: got %v, want %v", e, tc.err)
			}
			if e != nil || tc.want == nil {
				return
			}
			if len(items) != len(tc.want) {
				t.Fatalf("got %d items, want %d", len(items), len(tc.want))
			}
			for i := range items {
				if got := describe(&items[i]); got != tc.want[i] {
					t.Errorf("item %d:\ngot  %s\nwant %s", i, got, tc.want[i])
				}
			}
		})
	}

	// A full batch decodes every item.
	var s scanner
	var items []trackRequest
	if e := s.decodeBatch([]byte(full), &items); e != nil || len(items) != MaxBatch {
		t.Fatalf("full batch: %v, %d items", e, len(items))
	}
	for i := range items {
		if want := fields("c1", fmt.Sprint("u", i), "nil", "nil"); describe(&items[i]) != want {
			t.Fatalf("item %d: got %s, want %s", i, describe(&items[i]), want)
		}
	}
}

// within reports whether b lies inside the memory of buf.
func within(b, buf []byte) bool {
	if len(b) == 0 || len(buf) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(cap(buf))
}

// TestDecodeMemory checks where values live: strings without escapes in
// the body, others in the scratch buffer, each capped so that appending to
// it cannot write over its neighbours, and earlier values intact when
// later ones are unescaped, also when the scanner is reused.
func TestDecodeMemory(t *testing.T) {
	var s scanner
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < 2000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"campaign_id":"c%d","user_id":"\u00e9%d\n","ad_id":"\ud83d\ude00%d"}`, i, i, i)
	}
	b.WriteByte(']')
	body := []byte(b.String())
	var items []trackRequest
	for round := 0; round < 3; round++ {
		if e := s.decodeBatch(body, &items); e != nil {
			t.Fatal(e)
		}
		for i := range items {
			r := &items[i]
			if want := fields(fmt.Sprint("c", i), fmt.Sprint("é", i, "\n"), fmt.Sprint("😀", i), "nil"); describe(r) != want {
				t.Fatalf("round %d item %d: got %s, want %s", round, i, describe(r), want)
			}
			if !within(r.CampaignID, body) || within(r.UserID, body) || !within(r.UserID, s.scratch) || !within(r.AdID, s.scratch) {
				t.Fatalf("item %d: values not where expected", i)
			}
			if cap(r.CampaignID) != len(r.CampaignID) || cap(r.UserID) != len(r.UserID) {
				t.Fatalf("item %d: values not capped", i)
			}
		}
		// A small body in between must not disturb the next round.
		var r trackRequest
		if e := s.decodeTrack([]byte(`{"user_id":"\u0041"}`), &r); e != nil || string(r.UserID) != "A" {
			t.Fatalf("small body: %v %s", e, describe(&r))
		}
	}
	// An empty string is present, and points into the body.
	var r trackRequest
	body = []byte(`{"user_id":""}`)
	if e := s.decodeTrack(body, &r); e != nil || r.UserID == nil || len(r.UserID) != 0 {
		t.Fatalf("empty string: %v %s", e, describe(&r))
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var s scanner
	one := []byte(`{"campaign_id":"lt1795658901-1-0","user_id":"\u00e9t\u00e9","ad_id":null,"timestamp":"2026-11-26T10:00:00Z","x":[1,{"y":"\u0041"}],"us\u0065r_id":"u"}`)
	batch := []byte(`[` + strings.Repeat(string(one)+",", 99) + string(one) + `]`)
	var r trackRequest
	var items []trackRequest
	s.decodeBatch(batch, &items) // warm the buffers
	if n := testing.AllocsPerRun(100, func() {
		if e := s.decodeTrack(one, &r); e != nil {
			t.Fatal(e)
		}
	}); n != 0 {
		t.Errorf("decodeTrack: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() {
		if e := s.decodeBatch(batch, &items); e != nil {
			t.Fatal(e)
		}
	}); n != 0 {
		t.Errorf("decodeBatch: %v allocations, want 0", n)
	}
}

// TestNextSpecial checks the word-at-a-time search against a byte loop, for
// every byte value at every position of a word, among plain bytes of both
// halves of the byte range, and on random words.
func TestNextSpecial(t *testing.T) {
	naive := func(data []byte, i int) int {
		for i < len(data) && data[i] >= 0x20 && data[i] != '"' && data[i] != '\\' {
			i++
		}
		return i
	}
	check := func(data []byte) {
		for i := 0; i <= len(data); i++ {
			if got, want := nextSpecial(data, i), naive(data, i); got != want {
				t.Fatalf("nextSpecial(%q, %d) = %d, want %d", data, i, got, want)
			}
		}
	}
	for _, fill := range []byte{'a', 0x7f, 0x80, 0xa0, 0xff, 0x21, 0x23, 0x5b, 0x5d} {
		for pos := 0; pos < 16; pos++ {
			for c := 0; c < 256; c++ {
				data := bytes.Repeat([]byte{fill}, 19)
				data[pos] = byte(c)
				check(data)
				data[pos+2] = '"' // a second special byte after the first
				check(data)
			}
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		data := make([]byte, 1+rnd.IntN(24))
		for i := range data {
			// Mostly plain bytes, now and then a special one.
			data[i] = byte(0x20 + rnd.IntN(224))
			if rnd.IntN(8) == 0 {
				data[i] = []byte{'"', '\\', 0, 0x1f, byte(rnd.IntN(0x20))}[rnd.IntN(5)]
			}
		}
		check(data)
	}
}

// The reference decoder below judges bodies with encoding/json, by the
// rules the scanner implements, for the differential fuzz tests.

// refValid reports whether data is JSON the scanner must accept: valid for
// encoding/json, and nested no deeper than maxDepth.
func refValid(data []byte) bool {
	return json.Valid(data) && refDepth(data) <= maxDepth
}

// refDepth returns the depth of the deepest value of a valid JSON text,
// counting the top-level value as 1. Keys are counted like their values,
// which changes nothing.
func refDepth(data []byte) int {
	deepest, open, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inString {
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r', ',', ':':
		case '}', ']':
			open--
		default:
			deepest = max(deepest, open+1)
			switch c {
			case '{', '[':
				open++
			case '"':
				inString = true
			}
		}
	}
	return deepest
}

// refObject decodes a valid JSON value as a track request with
// encoding/json, keeping document order for the first wrong type.
func refObject(t *testing.T, data []byte) (trackRequest, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // any number is valid JSON, even one no float64 holds
	tok, err := dec.Token()
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	var r trackRequest
	if tok != json.Delim('{') {
		return r, errNotObject
	}
	var bad *apiError
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("reference: %v", err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("reference: %v", err)
		}
		var dst *[]byte
		var typeErr *apiError
		switch tok.(string) {
		case "campaign_id":
			dst, typeErr = &r.CampaignID, errCampaignIDType
		case "user_id":
			dst, typeErr = &r.UserID, errUserIDType
		case "ad_id":
			dst, typeErr = &r.AdID, errAdIDType
		case "timestamp":
			dst, typeErr = &r.Timestamp, errTimestampType
		default:
			continue
		}
		switch raw = bytes.TrimLeft(raw, " \t\r\n"); raw[0] {
		case '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatalf("reference: %v", err)
			}
			*dst = append([]byte{}, s...)
		case 'n':
			*dst = nil
		default:
			if bad == nil {
				bad = typeErr
			}
		}
	}
	r.HasTimestamp = r.Timestamp != nil
	return r, bad
}

// refBatch decodes a valid JSON value as a batch with encoding/json.
func refBatch(t *testing.T, data []byte) ([]trackRequest, *apiError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // any number is valid JSON, even one no float64 holds
	tok, err := dec.Token()
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	if tok != json.Delim('[') {
		return nil, errNotArray
	}
	var raws []json.RawMessage
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatalf("reference: %v", err)
		}
		raws = append(raws, raw)
	}
	switch {
	case len(raws) == 0:
		return nil, errBatchEmpty
	case len(raws) > MaxBatch:
		return nil, errBatchTooLarge
	}
	items := make([]trackRequest, len(raws))
	for i, raw := range raws {
		var e *apiError
		if items[i], e = refObject(t, raw); e == errNotObject {
			return nil, errorf(400, "item %d must be a JSON object", i)
		} else if e != nil {
			return nil, errorf(e.code, "item %d: %s", i, e.msg)
		}
	}
	return items, nil
}

// asDecoded returns b as encoding/json would have decoded it: each byte
// of invalid UTF-8 replaced with U+FFFD. The scanner keeps such bytes.
func asDecoded(b []byte) []byte {
	if b == nil || utf8.Valid(b) {
		return b
	}
	out := []byte{}
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		out = utf8.AppendRune(out, r)
		b = b[n:]
	}
	return out
}

// sameRequest compares what the scanner decoded with the reference.
func sameRequest(got, want *trackRequest) bool {
	same := func(g, w []byte) bool {
		return (g == nil) == (w == nil) && bytes.Equal(asDecoded(g), w)
	}
	return same(got.CampaignID, want.CampaignID) && same(got.UserID, want.UserID) &&
		same(got.AdID, want.AdID) && same(got.Timestamp, want.Timestamp) && got.HasTimestamp == want.HasTimestamp
}

// fastjsonDecode decodes a track request the way the service did before
// the scanner: fastjson's parse, then a walk of the object.
func fastjsonDecode(v *fastjson.Value, r *trackRequest) *apiError {
	o, err := v.Object()
	if err != nil {
		return errNotObject
	}
	*r = trackRequest{}
	var bad *apiError
	o.Visit(func(key []byte, v *fastjson.Value) {
		var dst *[]byte
		var typeErr *apiError
		switch string(key) {
		case "campaign_id":
			dst, typeErr = &r.CampaignID, errCampaignIDType
		case "user_id":
			dst, typeErr = &r.UserID, errUserIDType
		case "ad_id":
			dst, typeErr = &r.AdID, errAdIDType
		case "timestamp":
			dst, typeErr = &r.Timestamp, errTimestampType
		default:
			return
		}
		b, ok := stringOrNull(v)
		if !ok {
			if bad == nil {
				bad = typeErr
			}
			return
		}
		*dst = b
	})
	r.HasTimestamp = r.Timestamp != nil
	return bad
}

// mayHoldSurrogate reports whether data may hold a \u escape of a
// surrogate, which fastjson decoded differently (it kept lone ones
// escaped); the comparison with fastjson skips such bodies.
func mayHoldSurrogate(data []byte) bool {
	return bytes.Contains(data, []byte(`\ud`)) || bytes.Contains(data, []byte(`\uD`))
}

var fuzzSeeds = []string{
	`{"campaign_id":"lt1795658901-1-0","user_id":"u12345","timestamp":"2026-11-26T10:00:00Z"}`,
	`{"campaign_id":"c","user_id":null,"ad_id":"a","user_id":"\u00e9\ud83d\ude00\ud800"}`,
	`{"x":[1,-2.5e+3,{"y":[true,false,null]}],"user\u005fid":"u","campaign_id":5}`,
	"{\"user_id\":\"\xff\\n\",\"ad_id\":\"\",\"timestamp\":{}}",
	` [ {"campaign_id":"c"} , {} , 1 ] `,
	`[{"user_id":"a"},{"user_id":["b"]}]`,
	`[]`, `{}`, `"s"`, `0`, `-0.0e-0`, `[[[[]]]]`, `{"a":01}`, `{"a":"\u12"}`,
}

// FuzzDecodeTrack compares decodeTrack with encoding/json: the same bodies
// accepted as JSON, the same fields decoded, the same error chosen; and,
// on valid bodies, with the fastjson decoding it replaces.
func FuzzDecodeTrack(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, data []byte) {
		var s scanner
		var got trackRequest
		e := s.decodeTrack(data, &got)
		valid := refValid(data)
		if isMalformed(e) == valid {
			t.Fatalf("%q: scanner says %v, want valid=%v", data, e, valid)
		}
		if !valid {
			return
		}
		want, we := refObject(t, data)
		if e != we {
			t.Fatalf("%q: got error %v, want %v", data, e, we)
		}
		if e == nil && !sameRequest(&got, &want) {
			t.Fatalf("%q:\ngot  %s\nwant %s", data, describe(&got), describe(&want))
		}
		// Decoding again with the same scanner gives the same result.
		var again trackRequest
		if e2 := s.decodeTrack(data, &again); e2 != e || describe(&again) != describe(&got) {
			t.Fatalf("%q: second decode differs: %v %s", data, e2, describe(&again))
		}
		if mayHoldSurrogate(data) {
			return
		}
		v, err := p.ParseBytes(data)
		if err != nil {
			t.Fatalf("%q: valid JSON rejected by fastjson: %v", data, err)
		}
		var old trackRequest
		if oe := fastjsonDecode(v, &old); oe != e || (e == nil && describe(&old) != describe(&got)) {
			t.Fatalf("%q: fastjson decoded %v %s, scanner %v %s", data, oe, describe(&old), e, describe(&got))
		}
	})
}

// FuzzDecodeBatch does the same for decodeBatch.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, data []byte) {
		var s scanner
		var got []trackRequest
		e := s.decodeBatch(data, &got)
		valid := refValid(data)
		if isMalformed(e) == valid {
			t.Fatalf("%q: scanner says %v, want valid=%v", data, e, valid)
		}
		if !valid {
			return
		}
		want, we := refBatch(t, data)
		if !checkError(e, we) {
			t.Fatalf("%q: got error %v, want %v", data, e, we)
		}
		if e != nil {
			return
		}
		if len(got) != len(want) {
			t.Fatalf("%q: got %d items, want %d", data, len(got), len(want))
		}
		for i := range got {
			if !sameRequest(&got[i], &want[i]) {
				t.Fatalf("%q: item %d:\ngot  %s\nwant %s", data, i, describe(&got[i]), describe(&want[i]))
			}
		}
		if mayHoldSurrogate(data) {
			return
		}
		v, err := p.ParseBytes(data)
		if err != nil {
			t.Fatalf("%q: valid JSON rejected by fastjson: %v", data, err)
		}
		arr, _ := v.Array()
		if len(arr) != len(got) {
			t.Fatalf("%q: fastjson sees %d items, scanner %d", data, len(arr), len(got))
		}
		for i, item := range arr {
			var old trackRequest
			if oe := fastjsonDecode(item, &old); oe != nil || describe(&old) != describe(&got[i]) {
				t.Fatalf("%q: item %d: fastjson decoded %v %s, scanner %s", data, i, oe, describe(&old), describe(&got[i]))
			}
		}
	})
}

// benchBatchBody returns a batch of n realistic items.
func benchBatchBody(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if i%4 == 0 {
			fmt.Fprintf(&b, `{"campaign_id":"lt1795658901-%d-0","user_id":"u%d","ad_id":"ad-%d","timestamp":"2026-11-26T10:00:00Z"}`, i%7, 12345+i, i%13)
		} else {
			fmt.Fprintf(&b, `{"campaign_id":"lt1795658901-%d-0","user_id":"u%d","timestamp":"2026-11-26T10:00:00Z"}`, i%7, 12345+i)
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// BenchmarkDecodeBatch compares the scanner with the fastjson parse and
// decode it replaces, on the same 1000-item body.
func BenchmarkDecodeBatch(b *testing.B) {
	const n = 1000
	body := benchBatchBody(n)
	b.Run("scanner", func(b *testing.B) {
		var s scanner
		var items []trackRequest
		s.decodeBatch(body, &items) // warm the buffers
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if e := s.decodeBatch(body, &items); e != nil || len(items) != n {
				b.Fatal(e)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
	})
	b.Run("fastjson", func(b *testing.B) {
		var p fastjson.Parser
		p.ParseBytes(body) // warm the parser
		items := make([]trackRequest, n)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			v, err := p.ParseBytes(body)
			if err != nil {
				b.Fatal(err)
			}
			arr, err := v.Array()
			if err != nil || len(arr) != n {
				b.Fatal(err)
			}
			if cap(items) < len(arr) {
				items = make([]trackRequest, len(arr))
			}
			items = items[:len(arr)]
			for i, item := range arr {
				if e := fastjsonDecode(item, &items[i]); e != nil {
					b.Fatal(e)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
	})
}

// BenchmarkDecodeTrack does the same for one impression.
func BenchmarkDecodeTrack(b *testing.B) {
	body := []byte(`{"campaign_id":"lt1795658901-1-0","user_id":"u12345","ad_id":"ad-7","timestamp":"2026-11-26T10:00:00Z"}`)
	b.Run("scanner", func(b *testing.B) {
		var s scanner
		var r trackRequest
		b.ReportAllocs()
		for b.Loop() {
			if e := s.decodeTrack(body, &r); e != nil {
				b.Fatal(e)
			}
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		var p fastjson.Parser
		var r trackRequest
		b.ReportAllocs()
		for b.Loop() {
			v, err := p.ParseBytes(body)
			if err != nil {
				b.Fatal(err)
			}
			if e := fastjsonDecode(v, &r); e != nil {
				b.Fatal(e)
			}
		}
	})
}
