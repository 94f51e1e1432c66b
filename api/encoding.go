package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fasthttp"
)

// Compressed track requests (Content-Encoding on POST /api/v1/impressions
// and /api/v1/impressions/batch). The body is decoded before the handler
// runs, into a buffer reserved from the same budget as plain bodies
// (Options.MaxBodyMemory) and bounded by Options.MaxBodySize while it is
// decoded: decoding stops at MaxBodySize + 1 bytes, so a zip bomb costs at
// most that much memory and the CPU to inflate it, then a 413. The
// compressed bytes count against both bounds as well, since they are a
// plain body until decoded.
//
// Accepted: gzip (and its alias x-gzip), deflate (zlib-wrapped, as RFC
// 9110 §8.4.1.2 says; a raw deflate stream, which some clients send, is
// told apart by its first two bytes and accepted too), zstd, and identity.
// Codings apply in the order listed, so they are undone from the last.
// Anything else is a 415 with Accept-Encoding listing these.
//
// Beyond the budget, a decoder in use holds its own state: about 40 KiB for
// gzip and deflate, and for zstd up to the frame's window, which is
// refused above zstdMaxWindow; decoders are pooled, one per request being
// decoded.

// acceptEncoding is the Accept-Encoding of a 415: the codings accepted.
const acceptEncoding = "gzip, deflate, zstd"

// maxCodings bounds the codings of one request, identity aside.
const maxCodings = 4

// zstdMaxWindow is the largest zstd window accepted: 8 MiB, the most the
// zstd format (RFC 8878 §3.1.1.1.2) asks decoders to support.
const zstdMaxWindow = 8 << 20

type coding uint8

const (
	codingGzip coding = iota + 1
	codingDeflate
	codingZstd
)

func (c coding) String() string {
	switch c {
	case codingGzip:
		return "gzip"
	case codingDeflate:
		return "deflate"
	}
	return "zstd"
}

var errEncodingBody = newError(fasthttp.StatusUnsupportedMediaType,
	"Content-Encoding must be a list of gzip, deflate, zstd or identity")

// parseCodings parses a Content-Encoding value into the codings it lists,
// identity and empty elements left out. ok is false for a coding not
// accepted, a malformed list, or more than maxCodings codings.
func parseCodings(v []byte, dst *[maxCodings]coding) (n int, ok bool) {
	for elem := range bytes.SplitSeq(v, []byte(",")) {
		elem = bytes.Trim(elem, " \t")
		var c coding
		switch {
		case len(elem) == 0 || bytes.EqualFold(elem, []byte("identity")):
			continue
		case bytes.EqualFold(elem, []byte("gzip")) || bytes.EqualFold(elem, []byte("x-gzip")):
			c = codingGzip
		case bytes.EqualFold(elem, []byte("deflate")):
			c = codingDeflate
		case bytes.EqualFold(elem, []byte("zstd")):
			c = codingZstd
		default:
			return 0, false
		}
		if n == maxCodings {
			return 0, false
		}
		dst[n] = c
		n++
	}
	return n, true
}

// decodeBody serves a request whose body has a Content-Encoding: it
// decodes the body, then runs h on the decoded body, with the header
// removed. A refusal is written and reported to refused, with h not run:
// 415 for codings not accepted, 400 for data that does not decode, 413
// for a decoded body over Options.MaxBodySize, 503 when the budget cannot
// hold it.
func (s *Server) decodeBody(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler, refused func(*apiError)) {
	var codings [maxCodings]coding
	n, ok := parseCodings(ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding), &codings)
	if !ok {
		ctx.Response.Header.Set(fasthttp.HeaderAcceptEncoding, acceptEncoding)
		refused(errEncodingBody)
		return
	}
	ctx.Request.Header.Del(fasthttp.HeaderContentEncoding)
	if n == 0 { // identity only
		h(ctx)
		return
	}
	var bd body
	if e := s.decode(ctx.PostBody(), codings[:n], &bd); e != nil {
		refused(e)
		return
	}
	ctx.Request.SetBodyRaw(bd.b) // the raw body is not read again
	h(ctx)
	ctx.Request.SetBodyRaw(nil) // handlers keep no part of it
	s.bodyDone(&bd)
}

// decode undoes codings on raw into bd, which on error holds nothing.
func (s *Server) decode(raw []byte, codings []coding, bd *body) *apiError {
	var r io.Reader = bytes.NewReader(raw)
	var ds [maxCodings]decoder
	defer func() {
		for i := range ds {
			ds[i].release()
		}
	}()
	for i := len(codings) - 1; i >= 0; i-- {
		var err error
		if r, err = ds[i].open(codings[i], r); err != nil {
			return errorf(fasthttp.StatusBadRequest, "cannot decode the %s request body: %v", codings[i], err)
		}
	}
	err := s.readAll(r, bd, decodedGuess*len(raw))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errBodyOverLimit):
		return errorf(fasthttp.StatusRequestEntityTooLarge, "request body is larger than %d bytes once decoded", s.maxBody)
	case errors.Is(err, errBodyOverBudget):
		s.bodyMem.refused.Add(1)
		return errBodyBudget
	}
	return errorf(fasthttp.StatusBadRequest, "cannot decode the %s request body: %v", codings[0], err)
}

// decodedGuess is the ratio of decoded to compressed size the first buffer
// is sized for: JSON batches compress 20 to 35 times. A good guess saves
// the copies of growing the buffer; a bad one costs budget for the time of
// the request, never more than MaxBodySize + 1 bytes.
const decodedGuess = 32

// readAll reads r to its end into bd, starting with a buffer of about
// hint bytes and growing it by doubling, each buffer reserved from the
// budget first, and stops with errBodyOverLimit at Options.MaxBodySize + 1
// bytes. On error bd holds nothing.
func (s *Server) readAll(r io.Reader, bd *body, hint int) error {
	limit := s.maxBody
	if hint = min(hint, limit+1); hint > readAhead {
		if !s.bodyMem.reserve(int64(hint)) {
			return errBodyOverBudget
		}
		bd.b, bd.held = make([]byte, 0, hint), int64(hint)
	} else {
		if !s.bodyMem.reserve(readAhead) {
			return errBodyOverBudget
		}
		bd.pooled = bodyBufs.Get().(*[]byte)
		bd.b, bd.held = (*bd.pooled)[:0], readAhead
	}
	for {
		if len(bd.b) == cap(bd.b) {
			if len(bd.b) > limit {
				s.bodyDone(bd)
				return errBodyOverLimit
			}
			if err := s.growBody(bd, min(2*cap(bd.b), limit+1)); err != nil {
				s.bodyDone(bd)
				return err
			}
		}
		m, err := r.Read(bd.b[len(bd.b):cap(bd.b)])
		bd.b = bd.b[:len(bd.b)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			s.bodyDone(bd)
			return err
		}
	}
	if len(bd.b) > limit {
		s.bodyDone(bd)
		return errBodyOverLimit
	}
	return nil
}

var (
	gzipReaders  sync.Pool // *gzip.Reader
	zlibReaders  sync.Pool // io.ReadCloser that is a zlib.Resetter
	flateReaders sync.Pool // io.ReadCloser that is a flate.Resetter
	zstdReaders  = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			panic(fmt.Sprintf("BUG: zstd.NewReader: %v", err))
		}
		return d
	}}
)

// decoder is one pooled decoder of a request's coding.
type decoder struct {
	pool *sync.Pool
	r    any
}

// open returns a reader of r decoded as c.
func (d *decoder) open(c coding, r io.Reader) (io.Reader, error) {
	switch c {
	case codingGzip:
		d.pool = &gzipReaders
		if z, ok := gzipReaders.Get().(*gzip.Reader); ok {
			d.r = z
			return z, z.Reset(r)
		}
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		d.r = z
		return z, nil
	case codingDeflate:
		return d.openDeflate(r)
	}
	z := zstdReaders.Get().(*zstd.Decoder)
	d.pool, d.r = &zstdReaders, z
	return z, z.Reset(r)
}

// openDeflate reads a zlib stream, or a raw deflate stream when the first
// two bytes are not a zlib header (RFC 1950 §2.2: method 8, and the pair
// a multiple of 31).
func (d *decoder) openDeflate(r io.Reader) (io.Reader, error) {
	var hdr [2]byte
	n, err := io.ReadFull(r, hdr[:])
	if err != nil {
		return nil, fmt.Errorf("deflate: %w", io.ErrUnexpectedEOF)
	}
	r = io.MultiReader(bytes.NewReader(hdr[:n]), r)
	if hdr[0]&0x0f == 8 && (uint16(hdr[0])<<8|uint16(hdr[1]))%31 == 0 {
		d.pool = &zlibReaders
		if z, ok := zlibReaders.Get().(io.ReadCloser); ok {
			d.r = z
			return z, z.(zlib.Resetter).Reset(r, nil)
		}
		z, err := zlib.NewReader(r)
		if err != nil {
			return nil, err
		}
		d.r = z
		return z, nil
	}
	d.pool = &flateReaders
	if z, ok := flateReaders.Get().(io.ReadCloser); ok {
		d.r = z
		return z, z.(flate.Resetter).Reset(r, nil)
	}
	z := flate.NewReader(r)
	d.r = z
	return z, nil
}

// release returns the decoder to its pool, detached from the request's
// bytes.
func (d *decoder) release() {
	if d.r == nil {
		return
	}
	if z, ok := d.r.(*zstd.Decoder); ok {
		z.Reset(nil)
	}
	d.pool.Put(d.r)
	*d = decoder{}
}
