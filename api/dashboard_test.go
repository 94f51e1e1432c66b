package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/valyala/fasthttp"
)

var nonceAttr = regexp.MustCompile(`<(script|style) nonce="([^"]+)">`)

// TestDashboardPage checks what the server sends for GET /, with no
// browser: the headers, a fresh nonce on every response that matches the
// CSP, and no reference to anything outside the server.
func TestDashboardPage(t *testing.T) {
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken = "secret" })
	get := func() (*fasthttp.ResponseHeader, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://impressiond/")
		if err := ts.client.Do(req, resp); err != nil {
			t.Fatalf("GET /: %v", err)
		}
		// The page is public even with an admin token: it asks for the
		// token itself.
		if resp.StatusCode() != 200 {
			t.Fatalf("GET /: status %d, want 200", resp.StatusCode())
		}
		h := &fasthttp.ResponseHeader{}
		resp.Header.CopyTo(h)
		return h, string(resp.Body())
	}

	nonces := map[string]bool{}
	for range 2 {
		h, body := get()
		if ct := string(h.ContentType()); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
		if cc := string(h.Peek("Cache-Control")); cc != "no-cache" {
			t.Errorf("Cache-Control %q, want no-cache", cc)
		}
		if v := string(h.Peek("X-Content-Type-Options")); v != "nosniff" {
			t.Errorf("X-Content-Type-Options %q, want nosniff", v)
		}

		tags := nonceAttr.FindAllStringSubmatch(body, -1)
		if len(tags) != 2 || tags[0][1] == tags[1][1] {
			t.Fatalf("want one <style nonce> and one <script nonce>, got %q", tags)
		}
		nonce := tags[0][2]
		if tags[1][2] != nonce {
			t.Fatalf("style and script carry different nonces: %q", tags)
		}
		if len(nonce) < 22 { // 128 bits in base64
			t.Errorf("nonce %q is too short", nonce)
		}
		if strings.Contains(body, noncePlaceholder) {
			t.Errorf("the page still holds a nonce placeholder")
		}
		wantCSP := "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
			"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
		if csp := string(h.Peek("Content-Security-Policy")); csp != wantCSP {
			t.Errorf("Content-Security-Policy\n got %s\nwant %s", csp, wantCSP)
		}
		nonces[nonce] = true

		// Everything is inline: no URL of another site, and no element
		// loading anything but the empty data: icon.
		for _, bad := range []string{"http://", "https://", `src="`, `href="//`} {
			if strings.Contains(body, bad) {
				t.Errorf("the page contains %q", bad)
			}
		}
		for _, id := range []string{
			`id="campaigns"`, `id="search"`, `id="prev-page"`, `id="next-page"`, `id="chart"`, `id="status"`, `id="token-form"`,
			`id="tile-last-hour"`, `id="tile-last-day"`, `id="tile-total"`, `id="tile-dup-total"`, `id="reach-box"`, `id="ads-box"`,
			`id="window-1h"`, `id="window-24h"`, `id="window-24h-hourly"`, `id="window-7d"`, `id="window-30d"`, `id="tz-toggle"`,
		} {
			if !strings.Contains(body, id) {
				t.Errorf("the page lacks %s", id)
			}
		}
	}
	if len(nonces) != 2 {
		t.Errorf("two responses share a nonce")
	}
}

// dashboardAPI is a plain HTTP client of a server on a TCP port.
type dashboardAPI struct {
	t     *testing.T
	base  string
	token string
}

func (c dashboardAPI) call(method, path string, body any, wantStatus int, out any) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d (%s)", method, path, resp.StatusCode, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// chromiumPath finds the browser, or skips the test, except in CI, where a
// missing browser must not pass unnoticed.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI must run the dashboard browser test")
	}
	t.Skip("chromium is not installed; skipping the dashboard browser test")
	return ""
}

// consoleProblems collects, in the background, the exceptions and the
// errors and warnings a tab logs: a CSP violation, for one, shows up only
// there. Failed requests are left out when allowHTTPErrors, for a tab that
// is expected to meet 401s.
func consoleProblems(ctx context.Context, allowHTTPErrors bool) func() []string {
	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch {
			case m.IsException():
			case m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleWarning:
				continue
			case allowHTTPErrors && m.Source == "network":
				continue
			}
			mu.Lock()
			problems = append(problems, m.String())
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), problems...)
	}
}
