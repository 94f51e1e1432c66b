package api

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"

	"github.com/valyala/fasthttp"
)

// The dashboard is a single HTML file with its stylesheet and script inline,
// so that it needs no route besides "/" and no build step, and the binary
// carries it.
//
//go:embed dashboard/*
var dashboardFiles embed.FS

// noncePlaceholder marks, in index.html, where each response's CSP nonce
// goes.
const noncePlaceholder = "{{nonce}}"

// dashboardParts is index.html cut at every nonce placeholder, once, so
// that a response only joins the parts around its own nonce.
var dashboardParts = mustSplitDashboard()

func mustSplitDashboard() [][]byte {
	page, err := dashboardFiles.ReadFile("dashboard/index.html")
	if err != nil {
		panic("api: dashboard/index.html is not embedded: " + err.Error())
	}
	parts := bytes.Split(page, []byte(noncePlaceholder))
	if len(parts) < 3 {
		// Without a nonce on both the <style> and the <script>, the CSP
		// below would block them and the page would be blank.
		panic("api: dashboard/index.html lacks its nonce placeholders")
	}
	return parts
}

// dashboardCSP is the page's Content-Security-Policy around its nonce. Only
// the inline <style> and <script> carrying this response's nonce may run,
// so markup that reached the page some other way (a campaign name, say)
// could not run script; fetches go to this server only, and the page cannot
// be framed or submit forms anywhere.
const (
	dashboardCSPHead = "default-src 'none'; script-src 'nonce-"
	dashboardCSPMid  = "'; style-src 'nonce-"
	dashboardCSPTail = "'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// dashboard serves GET /: the single-page dashboard embedded in the binary.
// The page itself is public; the API calls it makes need the admin token
// when one is set, and the page asks for it.
func (s *Server) dashboard(ctx *fasthttp.RequestCtx) {
	nonce := newNonce()
	h := &ctx.Response.Header
	h.SetContentType("text/html; charset=utf-8")
	// Each response has its own nonce: a cached copy would be served with
	// a stale one, so the browser must revalidate every time.
	h.Set(fasthttp.HeaderCacheControl, "no-cache")
	h.Set(fasthttp.HeaderContentSecurityPolicy, dashboardCSPHead+nonce+dashboardCSPMid+nonce+dashboardCSPTail)
	h.Set(fasthttp.HeaderXContentTypeOptions, "nosniff")
	// The page may hold a token in its fragment for a moment; fragments are
	// never sent as referrers, but nothing else needs to leak either.
	h.Set(fasthttp.HeaderReferrerPolicy, "no-referrer")

	for i, part := range dashboardParts {
		if i > 0 {
			ctx.WriteString(nonce)
		}
		ctx.Write(part)
	}
}

// newNonce returns 128 random bits in base64, a fresh CSP nonce.
func newNonce() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return base64.StdEncoding.EncodeToString(b[:])
}
