package api

import (
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	const admin, ingest = "admin-s3cret", "ingest-s3cret"
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken, o.IngestToken = admin, ingest })
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	// Set up with the admin token.
	ts.doWith("POST", "/api/v1/campaigns", `{"id":"c1","name":"One"}`, bearer(admin)).want(t, 201)

	for _, tc := range []struct {
		name         string
		method, path string
		body         string
		header       map[string]string
		status       int
	}{
		{"create without token", "POST", "/api/v1/campaigns", `{"id":"c2","name":"x"}`, nil, 401},
		{"create with ingest token", "POST", "/api/v1/campaigns", `{"id":"c2","name":"x"}`, bearer(ingest), 401},
		{"create with wrong token", "POST", "/api/v1/campaigns", `{"id":"c2","name":"x"}`, bearer("nope"), 401},
		{"create with token prefix", "POST", "/api/v1/campaigns", `{"id":"c2","name":"x"}`, bearer(admin[:5]), 401},
		{"create with basic auth", "POST", "/api/v1/campaigns", `{"id":"c2","name":"x"}`, map[string]string{"Authorization": "Basic " + admin}, 401},
		{"list without token", "GET", "/api/v1/campaigns", "", nil, 401},
		{"get with ingest token", "GET", "/api/v1/campaigns/c1", "", bearer(ingest), 401},
		{"stats without token", "GET", "/api/v1/campaigns/c1/stats", "", nil, 401},
		{"stats with ingest token", "GET", "/api/v1/campaigns/c1/stats", "", bearer(ingest), 401},
		{"track without token", "POST", "/api/v1/impressions", track("c1", "u1"), nil, 401},
		{"track with admin token", "POST", "/api/v1/impressions", track("c1", "u1"), bearer(admin), 401},
		{"batch with admin token", "POST", "/api/v1/impressions/batch", "[" + track("c1", "u1") + "]", bearer(admin), 401},
		{"list with admin token", "GET", "/api/v1/campaigns", "", bearer(admin), 200},
		{"scheme is case-insensitive", "GET", "/api/v1/campaigns/c1", "", map[string]string{"Authorization": "bearer " + admin}, 200},
		{"stats with admin token", "GET", "/api/v1/campaigns/c1/stats", "", bearer(admin), 200},
		{"track with ingest token", "POST", "/api/v1/impressions", track("c1", "u1"), bearer(ingest), 200},
		{"batch with ingest token", "POST", "/api/v1/impressions/batch", "[" + track("c1", "u2") + "]", bearer(ingest), 200},
		{"series without token", "GET", "/api/v1/campaigns/c1/series", "", nil, 401},
		{"series with ingest token", "GET", "/api/v1/campaigns/c1/series", "", bearer(ingest), 401},
		{"series with admin token", "GET", "/api/v1/campaigns/c1/series", "", bearer(admin), 200},
		{"healthz is open", "GET", "/healthz", "", nil, 200},
		{"readyz is open", "GET", "/readyz", "", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ts.doWith(tc.method, tc.path, tc.body, tc.header).want(t, tc.status)
			if tc.status == 401 && r.header["Www-Authenticate"] == "" && r.header["WWW-Authenticate"] == "" {
				t.Fatalf("401 without WWW-Authenticate: %v", r.header)
			}
		})
	}
	// Refused requests changed nothing.
	var s statsJSON
	ts.doWith("GET", "/api/v1/campaigns/c1/stats", "", bearer(admin)).want(t, 200).decode(t, &s)
	if s.Total != 2 {
		t.Fatalf("total: got %d, want 2 (only the two authorised impressions)", s.Total)
	}
	ts.doWith("GET", "/api/v1/campaigns/c2", "", bearer(admin)).want(t, 404)
}

// TestAnonymousRoutes: with both tokens set, a client without a token
// reaches exactly the routes docs/SECURITY.md lists as open; every other
// route the router serves answers 401. A new route fails here until it is
// put in one list or the other.
func TestAnonymousRoutes(t *testing.T) {
	open := map[string]int{ // as in docs/SECURITY.md
		"GET /healthz":  200, // liveness probes carry no token
		"HEAD /healthz": 200,
		"GET /readyz":   200, // readiness probes carry no token
		"HEAD /readyz":  200,
		"GET /metrics":  200, // Prometheus scrapers usually carry none
		"HEAD /metrics": 200,
		"GET /":         200, // the dashboard page; its data calls need the admin token
		"HEAD /":        200,
		// CORS preflights: browsers never send credentials with them.
		"OPTIONS /api/v1/impressions":       204,
		"OPTIONS /api/v1/impressions/batch": 204,
		"OPTIONS /api/v1/pixel.gif":         204,
	}
	ts := newTestServer(t, "exact", func(o *testOptions) { o.AdminToken, o.IngestToken = "admin-s3cret", "ingest-s3cret" })
	served := map[string]bool{}
	for method, paths := range ts.srv.routes {
		for _, p := range paths {
			route := method + " " + p
			served[route] = true
			r := ts.do(method, strings.ReplaceAll(p, "{id}", "c1"), "")
			want := 401
			if code, ok := open[route]; ok {
				want = code
			}
			switch {
			case method == "HEAD" || p == pixelPath || want == 204:
				// No JSON body to check (doWith checked the rest).
				if r.status != want {
					t.Errorf("%s without a token: status %d, want %d", route, r.status, want)
				}
			default:
				if err := r.check(want); err != nil {
					t.Errorf("%s without a token: %v", route, err)
				}
			}
		}
	}
	for route := range open {
		if !served[route] {
			t.Errorf("%s is listed as open, but the router does not serve it", route)
		}
	}
	if len(served) <= len(open) {
		t.Fatalf("the router serves %d routes: %v", len(served), served)
	}
}
