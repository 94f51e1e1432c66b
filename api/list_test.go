package api

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestListCampaignsPaging pages through campaigns created in random order,
// in both stores: ids strictly after ?after=, in id order, ?limit= of them
// (100 by default), "next" only when more follow; limits outside 1..1000
// get 422.
func TestListCampaignsPaging(t *testing.T) {
	ts := newTestServer(t, "exact")
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("c%02d", i))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, i := range rng.Perm(len(ids)) {
		ts.createCampaign(ids[i])
	}
	for _, tc := range []struct {
		query string
		want  []string // ids of the page
		next  string
	}{
		{"", ids, ""}, // the default limit, 100, holds them all
		{"?limit=10", ids[:10], "c09"},
		{"?limit=10&after=c09", ids[10:20], "c19"},
		{"?limit=10&after=c19", ids[20:], ""},
		{"?limit=5&after=c19", ids[20:], ""}, // exactly the rest: nothing follows
		{"?limit=1", ids[:1], "c00"},
		{"?limit=1000&after=c05x", ids[6:], ""}, // after need not be an id
		{"?after=", ids, ""},
		{"?after=zzz", nil, ""},
		{"?after=c24", nil, ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := ts.do("GET", "/api/v1/campaigns"+tc.query, "").want(t, 200)
			var page campaignListJSON
			r.decode(t, &page)
			var got []string
			for _, c := range page.Campaigns {
				got = append(got, c.ID)
			}
			if !slices.Equal(got, tc.want) || page.Next != tc.next {
				t.Fatalf("got %v next %q, want %v next %q", got, page.Next, tc.want, tc.next)
			}
			if tc.next == "" && strings.Contains(string(r.body), `"next"`) {
				t.Fatalf("next present on the last page: %s", r.body)
			}
		})
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=ten", "limit=", "limit=1.5", "limit=99999999999999999999"} {
		r := ts.do("GET", "/api/v1/campaigns?"+q, "").want(t, 422)
		if !strings.Contains(string(r.body), "limit") {
			t.Fatalf("?%s: the error must name limit: %s", q, r.body)
		}
	}
	// Following next from the first page visits every campaign once.
	var seen []string
	for after, pages := "", 0; ; pages++ {
		var page campaignListJSON
		ts.do("GET", "/api/v1/campaigns?limit=7&after="+after, "").want(t, 200).decode(t, &page)
		for _, c := range page.Campaigns {
			seen = append(seen, c.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if !slices.Equal(seen, ids) {
		t.Fatalf("paging with next: got %v, want %v", seen, ids)
	}
}

// TestListSeesNewCampaigns checks that the ordered index the in-process
// store pages from is never stale: a campaign created is on the next page
// listed.
func TestListSeesNewCampaigns(t *testing.T) {
	ts := newTestServer(t, "exact")
	for i := range 5 {
		id := fmt.Sprintf("n%d", 4-i) // each sorts first
		ts.createCampaign(id)
		var page campaignListJSON
		ts.do("GET", "/api/v1/campaigns?limit=1", "").want(t, 200).decode(t, &page)
		if len(page.Campaigns) != 1 || page.Campaigns[0].ID != id {
			t.Fatalf("after creating %s: first page %+v", id, page.Campaigns)
		}
	}
}

// TestListPrefix: ?prefix= lists the campaigns whose ids start with it,
// paged with next like the whole list; a prefix over 64 bytes gets 422.
func TestListPrefix(t *testing.T) {
	ts := newTestServer(t, "exact")
	for _, id := range []string{"spring-1", "spring-2", "spring-3", "sprint", "summer", "autumn"} {
		ts.createCampaign(id)
	}
	var page campaignListJSON
	ts.do("GET", "/api/v1/campaigns?prefix=spring-&limit=2", "").want(t, 200).decode(t, &page)
	if len(page.Campaigns) != 2 || page.Campaigns[0].ID != "spring-1" || page.Campaigns[1].ID != "spring-2" || page.Next != "spring-2" {
		t.Fatalf("first page: %+v", page)
	}
	page = campaignListJSON{}
	ts.do("GET", "/api/v1/campaigns?prefix=spring-&limit=2&after=spring-2", "").want(t, 200).decode(t, &page)
	if len(page.Campaigns) != 1 || page.Campaigns[0].ID != "spring-3" || page.Next != "" {
		t.Fatalf("second page: %+v", page)
	}
	page = campaignListJSON{}
	ts.do("GET", "/api/v1/campaigns?prefix=zzz", "").want(t, 200).decode(t, &page)
	if len(page.Campaigns) != 0 || page.Next != "" {
		t.Fatalf("no match: %+v", page)
	}
	wantError(t, ts.do("GET", "/api/v1/campaigns?prefix="+strings.Repeat("a", 65), "").want(t, 422), 422, "prefix must be at most 64 bytes")
}
