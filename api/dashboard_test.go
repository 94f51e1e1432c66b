package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

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
		for _, id := range []string{`id="campaigns"`, `id="chart"`, `id="status"`, `id="window-1h"`, `id="window-24h"`, `id="token-form"`} {
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

type dashboardRow struct {
	ID, Name                            string
	LastHour, LastDay, Total, TotalText string
}

// readRows reads the campaigns table in one go, so the rows come from the
// same refresh.
const readRows = `[...document.querySelectorAll('#campaigns tbody tr')].map((tr) => ({
	ID: tr.dataset.id,
	Name: tr.querySelector('td.name').textContent,
	LastHour: tr.querySelector('td.last-hour').dataset.value,
	LastDay: tr.querySelector('td.last-day').dataset.value,
	Total: tr.querySelector('td.total').dataset.value,
	TotalText: tr.querySelector('td.total').textContent,
}))`

// TestDashboardBrowser serves the API on a TCP port, opens the dashboard in
// headless Chromium and checks that it shows what the API says: the counts
// in the table, and the per-minute chart of each window.
func TestDashboardBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	const admin = "dashboard-admin-token"

	_, addr := serveTCP(t, Options{AdminToken: admin})
	base := "http://" + addr
	api := dashboardAPI{t: t, base: base, token: admin}

	// Two campaigns; the second name holds markup, which must show as text.
	now := time.Now()
	campaigns := []struct{ id, name string }{
		{"spring-sale", "Spring sale"},
		{"winter-sale", `Winter <b>sale</b> & "friends"`},
	}
	for _, c := range campaigns {
		api.call("POST", "/api/v1/campaigns", map[string]string{
			"id": c.id, "name": c.name, "start_time": now.Add(-72 * time.Hour).UTC().Format(time.RFC3339),
		}, 201, nil)
	}

	// Impressions within the last hour, earlier in the day, and more than a
	// day ago, so that the three windows differ. None lies within minutes of
	// a window's edge, so the counts hold while the test runs.
	var batch []map[string]string
	add := func(id string, ago time.Duration, n int) {
		for range n {
			batch = append(batch, map[string]string{
				"campaign_id": id,
				"user_id":     fmt.Sprintf("user-%d", len(batch)),
				"timestamp":   now.Add(-ago).UTC().Format(time.RFC3339),
			})
		}
	}
	for m := 1; m <= 55; m++ {
		add("spring-sale", time.Duration(m)*time.Minute, 3+(m*7)%11)
		if m%3 == 0 {
			add("winter-sale", time.Duration(m)*time.Minute, 1+m%4)
		}
	}
	for m := 70; m <= 22*60; m += 7 {
		add("spring-sale", time.Duration(m)*time.Minute, 1+(m/60)%5)
		add("winter-sale", time.Duration(m)*time.Minute, (m/90)%3)
	}
	add("spring-sale", 30*time.Hour, 250)
	add("winter-sale", 40*time.Hour, 120)
	var res struct{ Counted, Rejected int }
	api.call("POST", "/api/v1/impressions/batch", batch, 200, &res)
	if res.Counted != len(batch) {
		t.Fatalf("batch: %+v, want all %d counted", res, len(batch))
	}
	want := map[string]statsJSON{}
	for _, c := range campaigns {
		var s statsJSON
		api.call("GET", "/api/v1/campaigns/"+c.id+"/stats", nil, 200, &s)
		if s.LastHour == 0 || s.LastHour == s.LastDay || s.LastDay == s.Total {
			t.Fatalf("%s: stats %+v, want three different windows", c.id, s)
		}
		want[c.id] = s
	}

	// Every wait below is bounded by this one deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // root in a container has no usable sandbox
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}

	// Without a token the page asks for one; the token typed in loads the
	// table. A tab of its own has its own session storage.
	t.Run("token form", func(t *testing.T) {
		tab, cancelTab := chromedp.NewContext(browser)
		defer cancelTab()
		problems := consoleProblems(tab, true)
		if err := chromedp.Do(tab,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.ID("token-form")),
		); err != nil {
			t.Fatalf("waiting for the token form: %v", err)
		}
		if status, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("status"))); err != nil || status != "admin token required" {
			t.Errorf("status %q (%v), want \"admin token required\"", status, err)
		}
		if err := chromedp.Do(tab,
			chromedp.SendKeys(chromedp.ID("token-input"), admin),
			// A click, as a person submits; Submit would call form.submit(),
			// which skips the page's submit handler.
			chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
			chromedp.WaitReady(chromedp.CSS(`#campaigns tr[data-id="spring-sale"] td.total[data-value]`)),
			chromedp.WaitNotVisible(chromedp.ID("token-form")),
		); err != nil {
			t.Fatalf("after entering the token: %v", err)
		}
		if p := problems(); len(p) > 0 {
			t.Errorf("console: %q", p)
		}
	})

	tab, cancelTab := chromedp.NewContext(browser)
	defer cancelTab()
	problems := consoleProblems(tab, false)
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/#token="+admin)); err != nil {
		t.Fatalf("opening the dashboard: %v", err)
	}

	// waitChart waits until the chart shows a campaign's window, and
	// returns the sum of the counts drawn.
	// waitChart waits until the chart shows campaign id over points minutes
	// summing to want, and returns the sum it shows: want, or, if it never
	// gets there within 10s, what it shows then. Waiting for the three
	// attributes at once leaves no gap in which a redraw could change one
	// between the wait and the read.
	waitChart := func(id string, points int, want uint64) string {
		t.Helper()
		sel := fmt.Sprintf(`#chart[data-campaign=%q][data-points="%d"][data-total="%d"]`, id, points, want)
		wctx, cancel := context.WithTimeout(tab, 10*time.Second)
		err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return fmt.Sprint(want)
		}
		shown, rerr := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('#chart').dataset.campaign + ' ' + document.querySelector('#chart').dataset.points + ' points, total ' + document.querySelector('#chart').dataset.total`))
		if rerr != nil {
			t.Fatalf("waiting for %s: %v; reading the chart: %v", sel, err, rerr)
		}
		return shown
	}

	// The first campaign is selected by default, over the last hour.
	if got, want := waitChart("spring-sale", 60, want["spring-sale"].LastHour), fmt.Sprint(want["spring-sale"].LastHour); got != want {
		t.Errorf("1h chart of spring-sale sums to %s, want last_hour %s", got, want)
	}
	rows, err := chromedp.Run(tab, chromedp.Evaluate[[]dashboardRow](readRows))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(campaigns) {
		t.Fatalf("table has %d rows, want %d: %+v", len(rows), len(campaigns), rows)
	}
	nonDigits := regexp.MustCompile(`\D`)
	for i, c := range campaigns {
		r, w := rows[i], want[c.id]
		if r.ID != c.id || r.Name != c.name {
			t.Errorf("row %d is %q %q, want %q %q", i, r.ID, r.Name, c.id, c.name)
		}
		got := [3]string{r.LastHour, r.LastDay, r.Total}
		exp := [3]string{fmt.Sprint(w.LastHour), fmt.Sprint(w.LastDay), fmt.Sprint(w.Total)}
		if got != exp {
			t.Errorf("%s shows last hour, last day, total %q, the API says %q", c.id, got, exp)
		}
		// The visible text is the same number with separators.
		if digits := nonDigits.ReplaceAllString(r.TotalText, ""); digits != r.Total || w.Total >= 1000 && r.TotalText == r.Total {
			t.Errorf("%s total shown as %q, want %s with thousands separators", c.id, r.TotalText, r.Total)
		}
	}

	// The token left the address bar for this tab's session storage.
	if href, err := chromedp.Run(tab, chromedp.Evaluate[string](`location.href`)); err != nil || href != base+"/" {
		t.Errorf("location is %q (%v), want %q with no fragment", href, err, base+"/")
	}
	if stored, err := chromedp.Run(tab, chromedp.Evaluate[string](`sessionStorage.getItem('impressiond.adminToken')`)); err != nil || stored != admin {
		t.Errorf("session storage holds %q (%v), want the token", stored, err)
	}
	status, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("status")))
	if err != nil || !regexp.MustCompile(`^updated \d\d:\d\d:\d\d$`).MatchString(status) {
		t.Errorf("status %q (%v), want \"updated HH:MM:SS\"", status, err)
	}

	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.TempDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	// DASHBOARD_SCREENSHOT keeps a copy past the test, for a person to look at.
	if keep := os.Getenv("DASHBOARD_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			t.Errorf("copying the screenshot: %v", err)
		} else {
			t.Logf("screenshot copied to %s", keep)
		}
	}

	// The day window, then the other campaign, then back to the hour.
	steps := []struct {
		click   string
		id      string
		points  int
		wantSum uint64
	}{
		{"#window-24h", "spring-sale", 1440, want["spring-sale"].LastDay},
		{`#campaigns tr[data-id="winter-sale"]`, "winter-sale", 1440, want["winter-sale"].LastDay},
		{"#window-1h", "winter-sale", 60, want["winter-sale"].LastHour},
	}
	for _, s := range steps {
		if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(s.click))); err != nil {
			t.Fatalf("clicking %s: %v", s.click, err)
		}
		if got := waitChart(s.id, s.points, s.wantSum); got != fmt.Sprint(s.wantSum) {
			t.Errorf("after clicking %s, the %d-point chart of %s sums to %s, want %d", s.click, s.points, s.id, got, s.wantSum)
		}
	}

	// With more campaigns than a page holds, the table shows pages of 50,
	// turned with Next and Previous.
	for i := range 60 {
		api.call("POST", "/api/v1/campaigns", map[string]string{"id": fmt.Sprintf("zz-%02d", i), "name": "More"}, 201, nil)
	}
	countRows := func() int {
		t.Helper()
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll('#campaigns tbody tr').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	wait := func(sel string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(sel))); err != nil {
			t.Fatalf("waiting for %s: %v", sel, err)
		}
	}
	wait(`#next-page:not([disabled])`) // the next refresh lists 62 campaigns
	if n := countRows(); n != 50 {
		t.Fatalf("first page has %d rows, want 50", n)
	}
	if err := chromedp.Do(tab, chromedp.Click(chromedp.ID("next-page"))); err != nil {
		t.Fatal(err)
	}
	wait(`#campaigns tr[data-id="zz-59"] td.total[data-value]`)
	wait(`#next-page[disabled]`)
	if n := countRows(); n != 12 {
		t.Fatalf("second page has %d rows, want 12", n)
	}
	if err := chromedp.Do(tab, chromedp.Click(chromedp.ID("prev-page"))); err != nil {
		t.Fatal(err)
	}
	wait(`#campaigns tr[data-id="spring-sale"] td.total[data-value]`)
	wait(`#prev-page[disabled]`)

	if p := problems(); len(p) > 0 {
		t.Errorf("console: %q", p)
	}
}
