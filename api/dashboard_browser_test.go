package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/impressiond/impressiond/tracker"
)

// dashboardProxy stands between the browser and the server. It records
// every request the page makes, to count them, and plays an earlier
// version of the API, without reach in the stats and without /ads, or,
// when later is set, answers them with fixed figures.
type dashboardProxy struct {
	token string
	mu    sync.Mutex
	seen  []string // "GET /path?query", in arrival order
	later atomic.Bool
	// failSeries answers every /series with a 501, as a server keeping no
	// such history would.
	failSeries atomic.Bool
}

// Fixed answers of the later API, for every campaign.
var (
	laterReach = windowJSON{LastHour: 11, LastDay: 222, Total: 3333}
	laterAds   = `{"ads":[{"ad_id":"banner-a","last_hour":5,"last_day":50,"total":1500},` +
		`{"ad_id":"<i>video</i>","last_hour":1,"last_day":2,"total":3}],` +
		`"other":{"last_hour":0,"last_day":4,"total":40},"none":{"last_hour":2,"last_day":3,"total":4}}`
)

func newDashboardProxy(t *testing.T, backend, token string) (*dashboardProxy, string) {
	p := &dashboardProxy{token: token}
	target, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode != 200 || !strings.HasSuffix(resp.Request.URL.Path, "/stats") {
			return nil
		}
		var s map[string]any
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if p.later.Load() {
			s["reach"] = laterReach
		} else {
			delete(s, "reach")
		}
		if b, err = json.Marshal(s); err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.RequestURI())
		p.mu.Unlock()
		if p.failSeries.Load() && strings.HasSuffix(r.URL.Path, "/series") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotImplemented)
			io.WriteString(w, `{"error":"no history here"}`)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/api/v1/campaigns/") && strings.HasSuffix(r.URL.Path, "/ads") {
			if !p.later.Load() {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"error":"not found","code":404}`)
				return
			}
			if r.Header.Get("Authorization") != "Bearer "+p.token {
				http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, laterAds)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return p, srv.URL
}

// requests returns the requests recorded since the last reset, and
// reset forgets them.
func (p *dashboardProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *dashboardProxy) reset() {
	p.mu.Lock()
	p.seen = nil
	p.mu.Unlock()
}

// dashboardState describes, for a failure message, what the page shows.
const dashboardState = `JSON.stringify({
	href: location.href,
	status: document.querySelector('#status').textContent,
	refreshes: document.body.dataset.refreshes,
	chart: Object.assign({}, document.querySelector('#chart').dataset),
	tiles: [...document.querySelectorAll('.tile .v')].map((e) => e.id + '=' + e.dataset.value),
	rows: [...document.querySelectorAll('#campaigns tbody tr')].slice(0, 5).map((tr) => tr.dataset.id),
	rowCount: document.querySelectorAll('#campaigns tbody tr').length,
})`

// waitPage waits, within a generous deadline, until sel matches in tab, and
// fails the test with what the page shows if it never does.
func waitPage(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(tab, 15*time.Second)
	err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(sel)))
	cancel()
	if err == nil {
		return
	}
	state, serr := chromedp.Run(tab, chromedp.Evaluate[string](dashboardState))
	t.Fatalf("waiting for %s: %v\npage: %s %v", sel, err, state, serr)
}

func pageEval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func pageClick(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("clicking %s: %v", sel, err)
	}
}

// waitTiles waits until the tiles show exactly s: the counted impressions
// and the duplicates of each window.
func waitTiles(t *testing.T, tab context.Context, s statsJSON) {
	t.Helper()
	for id, v := range map[string]uint64{
		"tile-last-hour": s.LastHour, "tile-last-day": s.LastDay, "tile-total": s.Total,
		"tile-dup-last-hour": s.Duplicates.LastHour, "tile-dup-last-day": s.Duplicates.LastDay, "tile-dup-total": s.Duplicates.Total,
	} {
		waitPage(t, tab, fmt.Sprintf(`#tiles-box:not([hidden]) #%s[data-value="%d"]`, id, v))
	}
}

// chartSelector matches the chart once it shows campaign id in view, at
// resolution, over points steps summing to total.
func chartSelector(id, view, resolution string, points int, total uint64) string {
	return fmt.Sprintf(`#chart[data-campaign=%q][data-view=%q][data-resolution=%q][data-points="%d"][data-total="%d"]`,
		id, view, resolution, points, total)
}

func saveScreenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// DASHBOARD_SCREENSHOTS names a directory that keeps the screenshots
	// past the test, for a person to look at.
	dir := os.Getenv("DASHBOARD_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, name)
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
}

// TestDashboardBrowser serves the API on a TCP port behind a counting
// proxy, opens the dashboard in headless Chromium and checks that it shows
// what the API says, keeps its state in the URL, costs a handful of
// requests with 10,000 campaigns, and fits a 390-px-wide screen.
func TestDashboardBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	const admin = "dashboard-admin-token"

	srv, addr := serveTCP(t, Options{AdminToken: admin})
	proxy, base := newDashboardProxy(t, addr, admin)
	api := dashboardAPI{t: t, base: "http://" + addr, token: admin}

	// Three campaigns, two sharing a prefix; a name holds markup, which
	// must show as text.
	now := time.Now()
	campaigns := []struct{ id, name string }{
		{"spring-promo", "Spring promo"},
		{"spring-sale", "Spring sale"},
		{"winter-sale", `Winter <b>sale</b> & "friends"`},
	}
	for _, c := range campaigns {
		api.call("POST", "/api/v1/campaigns", map[string]string{
			"id": c.id, "name": c.name, "start_time": now.Add(-72 * time.Hour).UTC().Format(time.RFC3339),
		}, 201, nil)
	}

	// Impressions within the last hour, earlier in the day, and more than a
	// day ago, so that the windows differ; then some of them again, which
	// are duplicates. None lies within minutes of a window's edge (nor
	// between 24 and 25 hours ago), so the counts hold while the test runs.
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
	var res struct{ Counted, Duplicates, Rejected int }
	api.call("POST", "/api/v1/impressions/batch", batch, 200, &res)
	if res.Counted != len(batch) {
		t.Fatalf("batch: %+v, want all %d counted", res, len(batch))
	}
	var again []map[string]string
	for i, imp := range batch {
		if imp["campaign_id"] == "spring-sale" && i%4 == 0 {
			again = append(again, imp)
		}
	}
	api.call("POST", "/api/v1/impressions/batch", again, 200, nil)
	want := map[string]statsJSON{}
	for _, c := range campaigns {
		var s statsJSON
		api.call("GET", "/api/v1/campaigns/"+c.id+"/stats", nil, 200, &s)
		want[c.id] = s
	}
	if s := want["spring-sale"]; s.LastHour == 0 || s.LastHour == s.LastDay || s.LastDay == s.Total || s.Duplicates.Total == 0 {
		t.Fatalf("spring-sale: stats %+v, want three different windows and duplicates", s)
	}

	// Every wait below is bounded by this one deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
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
	// page. A tab of its own has its own session storage.
	t.Run("token form", func(t *testing.T) {
		tab, cancelTab := chromedp.NewContext(browser)
		defer cancelTab()
		problems := consoleProblems(tab, true)
		if err := chromedp.Do(tab,
			chromedp.Navigate(base+"/?campaign=spring-sale"),
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
		); err != nil {
			t.Fatalf("entering the token: %v", err)
		}
		waitTiles(t, tab, want["spring-sale"])
		waitPage(t, tab, `#token-form[hidden]`)
		if p := problems(); len(p) > 0 {
			t.Errorf("console: %q", p)
		}
	})

	// Search, select, the tiles and every history view, the URL keeping
	// them, and a reload restoring them.
	t.Run("search select views reload", func(t *testing.T) {
		tab, cancelTab := chromedp.NewContext(browser)
		defer cancelTab()
		// The probe of /ads meets this server's 404, which Chromium logs.
		problems := consoleProblems(tab, true)
		if err := chromedp.Do(tab, chromedp.Navigate(base+"/#token="+admin)); err != nil {
			t.Fatalf("opening the dashboard: %v", err)
		}
		// With nothing in the URL, the first campaign listed is selected,
		// over the last hour, and the token has left the address bar.
		waitPage(t, tab, `#campaigns tbody tr[data-id="winter-sale"]`)
		waitPage(t, tab, chartSelector("spring-promo", "1h", "1m", 60, 0))
		if href := pageEval[string](t, tab, `location.href`); href != base+"/?campaign=spring-promo" {
			t.Errorf("location is %q, want the selected campaign and no token", href)
		}
		if stored := pageEval[string](t, tab, `sessionStorage.getItem('impressiond.adminToken')`); stored != admin {
			t.Errorf("session storage holds %q, want the token", stored)
		}
		names := pageEval[[]string](t, tab, `[...document.querySelectorAll('#campaigns tbody tr')].map((tr) => tr.cells[1].textContent)`)
		if len(names) != 3 || names[2] != campaigns[2].name {
			t.Errorf("listed names %q, want %q last, as text", names, campaigns[2].name)
		}

		// A prefix search lists the matching ids only.
		if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("search"), "spring-s")); err != nil {
			t.Fatal(err)
		}
		waitPage(t, tab, `#campaigns tbody tr:only-child[data-id="spring-sale"]`)
		pageClick(t, tab, `#campaigns tr[data-id="spring-sale"]`)
		s := want["spring-sale"]
		waitTiles(t, tab, s)
		if title := pageEval[string](t, tab, `document.querySelector('#campaign-title').textContent`); title != "Spring sale" {
			t.Errorf("title %q, want the campaign's name", title)
		}
		if text := pageEval[string](t, tab, `document.querySelector('#tile-total').textContent`); regexp.MustCompile(`\D`).ReplaceAllString(text, "") != fmt.Sprint(s.Total) || s.Total >= 1000 && text == fmt.Sprint(s.Total) {
			t.Errorf("total shown as %q, want %d with thousands separators", text, s.Total)
		}
		// The earlier server has neither reach nor /ads.
		waitPage(t, tab, `#reach-box[hidden]`)
		waitPage(t, tab, `#ads-box[hidden]`)

		// Each view: the chart's points sum to the window's count, the last
		// step is drawn as in progress, and the URL names the view.
		views := []struct {
			button, view, resolution string
			points                   int
			total                    uint64
		}{
			{"#window-1h", "1h", "1m", 60, s.LastHour},
			{"#window-24h", "24h", "1m", 1440, s.LastDay},
			// From the hour holding now-24h to the current one.
			{"#window-24h-hourly", "24h-hourly", "1h", 25, s.LastDay},
			{"#window-7d", "7d", "1h", 168, s.Total},
			{"#window-30d", "30d", "1d", 30, s.Total},
		}
		for _, v := range views {
			pageClick(t, tab, v.button)
			waitPage(t, tab, chartSelector("spring-sale", v.view, v.resolution, v.points, v.total))
			wantHref := base + "/?campaign=spring-sale&q=spring-s"
			if v.view != "1h" {
				wantHref = base + "/?campaign=spring-sale&view=" + url.QueryEscape(v.view) + "&q=spring-s"
			}
			if href := pageEval[string](t, tab, `location.href`); href != wantHref {
				t.Errorf("%s: location %q, want %q", v.view, href, wantHref)
			}
			if n := pageEval[int](t, tab, `document.querySelectorAll('#chart [data-partial]').length`); n != 1 {
				t.Errorf("%s: %d marks of a step in progress, want 1: the last", v.view, n)
			}
			if note := pageEval[string](t, tab, `document.querySelector('#partial-note').textContent`); !strings.Contains(note, "in progress") {
				t.Errorf("%s: note %q, want the last step labelled in progress", v.view, note)
			}
			saveScreenshot(t, tab, "dashboard-"+v.view+".png")
			if v.view == "24h" {
				// Times are labelled UTC; the toggle switches to local
				// time, and the URL keeps it.
				axis := `[...document.querySelectorAll('#chart .axis-title')].map((e) => e.textContent).join('|')`
				if a := pageEval[string](t, tab, axis); !strings.Contains(a, "UTC") {
					t.Errorf("axis titles %q, want the zone UTC", a)
				}
				pageClick(t, tab, "#tz-toggle")
				waitPage(t, tab, `#tz-toggle[data-zone="local"]`)
				if a := pageEval[string](t, tab, axis); !strings.Contains(a, "local") {
					t.Errorf("after the toggle, axis titles %q, want local time", a)
				}
				if href := pageEval[string](t, tab, `location.href`); !strings.HasSuffix(href, "&tz=local") {
					t.Errorf("after the toggle, location %q, want tz=local", href)
				}
				pageClick(t, tab, "#tz-toggle")
				waitPage(t, tab, `#tz-toggle[data-zone="utc"]`)
			}
		}

		// A reload restores the campaign, the view and the search.
		if err := chromedp.Do(tab, chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		waitPage(t, tab, chartSelector("spring-sale", "30d", "1d", 30, s.Total))
		waitPage(t, tab, `#window-30d[aria-pressed="true"]`)
		waitPage(t, tab, `#campaigns tbody tr:only-child[data-id="spring-sale"][aria-current="true"]`)
		waitTiles(t, tab, s)
		if q := pageEval[string](t, tab, `document.querySelector('#search').value`); q != "spring-s" {
			t.Errorf("after the reload the search holds %q, want spring-s", q)
		}
		status := pageEval[string](t, tab, `document.querySelector('#status').textContent`)
		if !regexp.MustCompile(`^updated \d\d:\d\d:\d\d UTC$`).MatchString(status) {
			t.Errorf("status %q, want \"updated HH:MM:SS UTC\"", status)
		}

		// A history the server cannot give leaves the tiles and says why.
		proxy.failSeries.Store(true)
		pageClick(t, tab, "#window-7d")
		waitPage(t, tab, `#chart[data-campaign="spring-sale"][data-view="7d"][data-points="0"]`)
		if text := pageEval[string](t, tab, `document.querySelector('#readout').textContent`); !strings.Contains(text, "HTTP 501: no history here") {
			t.Errorf("readout %q, want the server's reason", text)
		}
		waitTiles(t, tab, s)
		proxy.failSeries.Store(false)
		pageClick(t, tab, "#window-1h")
		waitPage(t, tab, chartSelector("spring-sale", "1h", "1m", 60, s.LastHour))
		if p := problems(); len(p) > 0 {
			t.Errorf("console: %q", p)
		}
	})

	// A later server's reach and per-ad counts show; the page opened with
	// a campaign in its URL that a 390-px screen shows without horizontal
	// scrolling.
	t.Run("reach ads 390px", func(t *testing.T) {
		proxy.later.Store(true)
		defer proxy.later.Store(false)
		tab, cancelTab := chromedp.NewContext(browser)
		defer cancelTab()
		problems := consoleProblems(tab, false)
		if err := chromedp.Do(tab,
			chromedp.EmulateViewport(390, 844),
			chromedp.Navigate(base+"/?campaign=winter-sale&view=24h#token="+admin),
		); err != nil {
			t.Fatalf("opening the dashboard: %v", err)
		}
		waitTiles(t, tab, want["winter-sale"])
		waitPage(t, tab, chartSelector("winter-sale", "24h", "1m", 1440, want["winter-sale"].LastDay))
		for id, v := range map[string]uint64{"last-hour": laterReach.LastHour, "last-day": laterReach.LastDay, "total": laterReach.Total} {
			waitPage(t, tab, fmt.Sprintf(`#reach-box:not([hidden]) #tile-reach-%s[data-value="%d"]`, id, v))
		}
		waitPage(t, tab, `#ads-box:not([hidden]) #ads tbody tr[data-ad="banner-a"] td.total[data-value="1500"]`)
		ads := pageEval[[]string](t, tab, `[...document.querySelectorAll('#ads tbody tr')].map((tr) => [...tr.cells].map((c) => c.dataset.value || c.textContent).join(' '))`)
		wantAds := []string{"banner-a 5 50 1500", "<i>video</i> 1 2 3", "other ads 0 4 40", "no ad id 2 3 4"}
		if fmt.Sprint(ads) != fmt.Sprint(wantAds) {
			t.Errorf("per-ad rows %q, want %q", ads, wantAds)
		}
		if title := pageEval[string](t, tab, `document.querySelector('#campaign-title').textContent`); title != campaigns[2].name {
			t.Errorf("title %q, want %q as text", title, campaigns[2].name)
		}

		if w := pageEval[int](t, tab, `window.innerWidth`); w != 390 {
			t.Fatalf("viewport is %d px wide, want 390", w)
		}
		if sw := pageEval[int](t, tab, `document.documentElement.scrollWidth`); sw > 390 {
			t.Errorf("at 390 px the page is %d px wide: it scrolls sideways", sw)
		}
		wide := pageEval[[]string](t, tab, `[...document.querySelectorAll('body *')]
			.filter((e) => !e.closest('.scroll') && e.getBoundingClientRect().right > 390.5)
			.map((e) => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`)
		if len(wide) > 0 {
			t.Errorf("at 390 px these stick out: %q", wide)
		}
		saveScreenshot(t, tab, "dashboard-390.png")
		if p := problems(); len(p) > 0 {
			t.Errorf("console: %q", p)
		}
	})

	// With 10,000 campaigns the page lists one page of them and asks only
	// for the selected campaign's numbers: a handful of requests on load
	// and on each refresh.
	t.Run("10k campaigns", func(t *testing.T) {
		const n = 10000
		start := []byte(now.Add(-time.Hour).UTC().Format(time.RFC3339))
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					id := fmt.Sprintf("bulk-%05d", i)
					if _, err := srv.Tracker().Create(tracker.CampaignSpec{ID: []byte(id), Name: []byte("Bulk " + id), Start: start}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("creating campaigns: %v", err)
		}

		tab, cancelTab := chromedp.NewContext(browser)
		defer cancelTab()
		problems := consoleProblems(tab, true)
		proxy.reset() // the other tabs are closed
		if err := chromedp.Do(tab, chromedp.Navigate(base+"/?campaign=bulk-05000&view=24h#token="+admin)); err != nil {
			t.Fatalf("opening the dashboard: %v", err)
		}
		waitPage(t, tab, `body[data-refreshes="1"]`)
		waitTiles(t, tab, statsJSON{})
		onLoad := proxy.requests()
		waitPage(t, tab, `body[data-refreshes="2"]`)
		onRefresh := proxy.requests()[len(onLoad):]
		t.Logf("%d requests on load: %q", len(onLoad), onLoad)
		t.Logf("%d requests on a refresh: %q", len(onRefresh), onRefresh)
		if len(onLoad) > 10 {
			t.Errorf("loading the page cost %d requests, want at most 10", len(onLoad))
		}
		if len(onRefresh) > 10 {
			t.Errorf("a refresh cost %d requests, want at most 10", len(onRefresh))
		}
		for _, r := range append(onLoad, onRefresh...) {
			if strings.Contains(r, "/campaigns/") && !strings.Contains(r, "/campaigns/bulk-05000") {
				t.Errorf("request %q is about a campaign not selected", r)
			}
		}
		if title := pageEval[string](t, tab, `document.querySelector('#campaign-title').textContent`); title != "Bulk bulk-05000" {
			t.Errorf("title %q, want the name of the campaign in the URL", title)
		}
		wantRun := "bulk-05000 · from " + now.Add(-time.Hour).UTC().Format("2006-01-02 15:04") + " UTC"
		if run := pageEval[string](t, tab, `document.querySelector('#campaign-id').textContent`); run != wantRun {
			t.Errorf("campaign line %q, want %q", run, wantRun)
		}

		// The list holds a page of 50; Next turns to the following 50.
		if rows := pageEval[int](t, tab, `document.querySelectorAll('#campaigns tbody tr').length`); rows != 50 {
			t.Errorf("the list holds %d rows, want 50", rows)
		}
		waitPage(t, tab, `#next-page:not([disabled])`)
		pageClick(t, tab, "#next-page")
		waitPage(t, tab, `#campaigns tbody tr:first-child[data-id="bulk-00050"]`)
		waitPage(t, tab, `#prev-page:not([disabled])`)
		pageClick(t, tab, "#prev-page")
		waitPage(t, tab, `#campaigns tbody tr:first-child[data-id="bulk-00000"]`)
		// A search finds the campaigns by prefix among the 10,000.
		if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("search"), "bulk-0999")); err != nil {
			t.Fatal(err)
		}
		waitPage(t, tab, `#campaigns tbody tr:first-child[data-id="bulk-09990"]`)
		waitPage(t, tab, `#campaigns tbody tr:nth-child(10)[data-id="bulk-09999"]:last-child`)
		waitPage(t, tab, `#pager[hidden]`)
		if p := problems(); len(p) > 0 {
			t.Errorf("console: %q", p)
		}
	})
}
