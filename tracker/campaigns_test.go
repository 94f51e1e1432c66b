package tracker

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/impressiond/impressiond/stats"
)

// Unit tests of campaign creation, lookup, listing and the stats reads.

// same compares the exported fields: what a caller sees of a campaign.
func same(a, b Campaign) bool { return a.ID == b.ID && a.Name == b.Name && a.Start.Equal(b.Start) }

func spec(id, name, start string) CampaignSpec {
	s := CampaignSpec{Name: []byte(name)}
	if id != "" {
		s.ID = []byte(id)
	}
	if start != "" {
		s.Start = []byte(start)
	}
	return s
}

// TestCreateRules: each creation rule refuses with its sentinel, in the
// order name, id, start time, and nothing is registered.
func TestCreateRules(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	cases := []struct {
		name string
		spec CampaignSpec
		want error
	}{
		{"no name", CampaignSpec{ID: []byte("x")}, ErrNameRequired},
		{"no name before bad id", CampaignSpec{ID: []byte("..")}, ErrNameRequired},
		{"empty name", CampaignSpec{Name: []byte{}}, ErrNameLength},
		{"name too long", spec("", strings.Repeat("é", MaxNameRunes+1), ""), ErrNameLength},
		{"name not UTF-8", spec("", "a\xff", ""), ErrNameUTF8},
		{"name UTF-8 before its length", spec("", strings.Repeat("a", MaxNameRunes+1)+"\xff", ""), ErrNameUTF8},
		{"name before id", spec("a b", "\xff", ""), ErrNameUTF8},
		{"empty id", CampaignSpec{ID: []byte{}, Name: []byte("n")}, ErrIDInvalid},
		{"dot", spec(".", "n", ""), ErrIDInvalid},
		{"dot dot", spec("..", "n", ""), ErrIDInvalid},
		{"id too long", spec(strings.Repeat("a", 65), "n", ""), ErrIDInvalid},
		{"id before start", spec("a/b", "n", "x"), ErrIDInvalid},
		{"start format", spec("s", "n", "2026-01-01"), ErrStartTimeFormat},
		{"start before minStart", spec("s", "n", "1677-12-31T23:59:59.999999999Z"), ErrStartTimeRange},
		{"start at maxStart", spec("s", "n", "2262-01-01T00:00:00Z"), ErrStartTimeRange},
		{"start offset beyond maxStart", spec("s", "n", "2261-12-31T23:30:00-01:00"), ErrStartTimeRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := tr.Create(tc.spec); err != tc.want || !reflect.DeepEqual(c, Campaign{}) {
				t.Fatalf("Create = %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
	if cs, more, err := tr.Campaigns("", 100); err != nil || len(cs) != 0 || more {
		t.Fatalf("refused creations registered %v (%v, %v)", cs, more, err)
	}
}

// TestCreateAccepts: the bounds themselves pass: names of 1 and
// MaxNameRunes runes (counted in runes, not bytes), ids of 1 and 64 bytes
// of every allowed class, dots inside ids, starts at minStart and the last
// nanosecond before maxStart, kept exactly and in UTC.
func TestCreateAccepts(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	for _, tc := range []struct {
		spec  CampaignSpec
		start string // RFC 3339 in UTC, empty for the default
	}{
		{spec("a", "x", ""), ""},
		{spec(strings.Repeat("Z", 64), strings.Repeat("é", MaxNameRunes), ""), ""},
		{spec("azAZ09._-", "日本", ""), ""},
		{spec("...", "n", ""), ""},
		{spec(".a", "n", ""), ""},
		{spec("a..", "n", ""), ""},
		{spec("min", "n", "1678-01-01T00:00:00Z"), "1678-01-01T00:00:00Z"},
		{spec("max", "n", "2261-12-31T23:59:59.999999999Z"), "2261-12-31T23:59:59.999999999Z"},
		{spec("offset", "n", "2026-06-01T14:30:00.5+02:00"), "2026-06-01T12:30:00.5Z"},
		{spec("min-offset", "n", "1678-01-01T01:00:00+01:00"), "1678-01-01T00:00:00Z"},
	} {
		c, err := tr.Create(tc.spec)
		if err != nil {
			t.Errorf("Create(%q, %q, %q): %v", tc.spec.ID, tc.spec.Name, tc.spec.Start, err)
			continue
		}
		if c.ID != string(tc.spec.ID) || c.Name != string(tc.spec.Name) {
			t.Errorf("created %q %q, want %q %q", c.ID, c.Name, tc.spec.ID, tc.spec.Name)
		}
		if tc.start != "" && (c.Start.Location() != time.UTC || c.Start.Format(time.RFC3339Nano) != tc.start) {
			t.Errorf("%s starts %v, want %s in UTC", c.ID, c.Start, tc.start)
		}
		got, err := tr.Campaign(c.ID)
		if err != nil || !same(got, c) {
			t.Errorf("Campaign(%s) = %+v, %v; want %+v", c.ID, got, err, c)
		}
	}
}

// TestValidID: ValidID is the id rule of Create, byte by byte at the
// edges of every class.
func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "z", "A", "Z", "0", "9", "_", "-", "...", "a.b", strings.Repeat("9", 64)} {
		if !ValidID([]byte(id)) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range []string{"", ".", "..", strings.Repeat("a", 65), "@", "[", "`", "{", "/", ":", " ", "a b", "é", "a\x00", "^", "~", "+", ","} {
		if ValidID([]byte(id)) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

// TestCreateDefaults: without an id one is drawn, "cmp_" and 20 hex
// digits, new each time; without a start the campaign starts at the
// current second of the tracker's clock, in UTC.
func TestCreateDefaults(t *testing.T) {
	loc := time.FixedZone("east", 5*3600)
	clock := &fakeClock{t: suiteNow(t).Add(700 * time.Millisecond).In(loc)}
	tr := openTracker(t, clock, nil)
	a, err := tr.Create(CampaignSpec{Name: []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.Create(CampaignSpec{Name: []byte("b")})
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^cmp_[0-9a-f]{20}$`)
	if !re.MatchString(a.ID) || !re.MatchString(b.ID) || a.ID == b.ID {
		t.Fatalf("drawn ids %q, %q", a.ID, b.ID)
	}
	want := clock.Now().UTC().Truncate(time.Second)
	if !a.Start.Equal(want) || a.Start.Location() != time.UTC || a.Start.Nanosecond() != 0 {
		t.Fatalf("default start %v, want %v", a.Start, want)
	}
	// An impression stamped with that second is not before the start.
	if _, err := tr.Track(stamped(a.ID, "u", want)); err != nil {
		t.Fatal(err)
	}
}

// TestCreateConflicts: a taken id and the campaign limit are Conflict
// errors naming the id and the limit; the first campaign is unchanged.
func TestCreateConflicts(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "durable"}[durable], func(t *testing.T) {
			clock := &fakeClock{t: suiteNow(t)}
			dir := ""
			if durable {
				dir = t.TempDir()
			}
			tr := openTracker(t, clock, func(o *Options) { o.MaxCampaigns, o.DataDir = 2, dir })
			first := create(t, tr, "a", clock.Now().Add(-time.Hour))
			_, err := tr.Create(spec("a", "other", ""))
			if e, ok := err.(*Error); !ok || e.Kind != Conflict || e.Msg != `campaign "a" already exists` {
				t.Fatalf("taken id: %#v", err)
			}
			if c, _ := tr.Campaign("a"); !same(c, first) {
				t.Fatalf("campaign a became %+v", c)
			}
			if n := metric(t, tr, "impressiond_campaigns"); n != "1" {
				t.Fatalf("campaigns gauge %s after a refused duplicate, want 1", n)
			}
			create(t, tr, "b", clock.Now())
			for range 2 {
				_, err = tr.Create(spec("c", "n", ""))
				if e, ok := err.(*Error); !ok || e.Kind != Conflict || e.Msg != "campaign limit reached: this server holds at most 2 campaigns" {
					t.Fatalf("at the limit: %#v", err)
				}
			}
			if _, err := tr.Campaign("c"); err != ErrCampaignNotFound {
				t.Fatalf("a refused campaign exists: %v", err)
			}
			if n := metric(t, tr, "impressiond_campaigns"); n != "2" {
				t.Fatalf("campaigns gauge %s at the limit, want 2", n)
			}
			if durable {
				if err := tr.Close(); err != nil {
					t.Fatal(err)
				}
				again := openTracker(t, clock, func(o *Options) { o.MaxCampaigns, o.DataDir = 2, dir })
				if st := again.Restored(); st.Campaigns != 2 {
					t.Fatalf("restored %+v, want the 2 campaigns created", st)
				}
				if c, _ := again.Campaign("a"); !same(c, first) {
					t.Fatalf("campaign a restored as %+v", c)
				}
			}
		})
	}
	// MaxCampaigns zero is the default, not zero campaigns.
	clock := &fakeClock{t: suiteNow(t)}
	def := openTracker(t, clock, func(o *Options) { o.MaxCampaigns = 0 })
	create(t, def, "a", clock.Now())
}

// metric reads one gauge or counter of WriteMetrics.
func metric(t *testing.T, tr *Tracker, name string) string {
	t.Helper()
	var b strings.Builder
	tr.WriteMetrics(&b, func(name, typ, text string) {})
	for _, line := range strings.Split(b.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

// TestCampaignsPages: pages in id order, strictly after the cursor,
// limited, with whether more follow; a limit below 1 is an error.
func TestCampaignsPages(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, nil)
	for _, id := range []string{"d", "b", "a", "c", "e"} {
		create(t, tr, id, clock.Now())
	}
	ids := func(cs []Campaign) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		after string
		limit int
		want  string
		more  bool
	}{
		{"", 2, "a,b", true},
		{"b", 2, "c,d", true},
		{"d", 2, "e", false},
		{"bb", 2, "c,d", true},
		{"", 5, "a,b,c,d,e", false},
		{"", 1, "a", true},
		{"e", 3, "", false},
	} {
		cs, more, err := tr.Campaigns(tc.after, tc.limit)
		if err != nil || ids(cs) != tc.want || more != tc.more {
			t.Errorf("Campaigns(%q, %d) = %s, %v, %v; want %s, %v", tc.after, tc.limit, ids(cs), more, err, tc.want, tc.more)
		}
	}
	if cs, _, _ := tr.Campaigns("", 1); cs[0].Name != "Campaign a" {
		t.Errorf("page holds %+v", cs[0])
	}
	// A campaign created after a listing is in the next one.
	create(t, tr, "f", clock.Now())
	create(t, tr, "0", clock.Now())
	if cs, more, err := tr.Campaigns("d", 5); err != nil || ids(cs) != "e,f" || more {
		t.Errorf("after creating f: %s, %v, %v", ids(cs), more, err)
	}
	if cs, _, _ := tr.Campaigns("", 1); ids(cs) != "0" {
		t.Errorf("after creating 0: first page %s", ids(cs))
	}
	if _, _, err := tr.Campaigns("", 0); err == nil {
		t.Error("Campaigns with limit 0 succeeded")
	}
}

// TestStatsWindows: Stats counts the last hour (this minute and the 59
// before), the last day and every impression; Series gives per-minute
// counts ending with the current minute; an unknown id is
// ErrCampaignNotFound for both.
func TestStatsWindows(t *testing.T) {
	clock := &fakeClock{t: suiteNow(t)}
	tr := openTracker(t, clock, func(o *Options) { o.MaxSkew = time.Minute })
	now := clock.Now()
	create(t, tr, "c", now.Add(-72*time.Hour))
	minute := func(back int) time.Time { return now.Add(-time.Duration(back) * time.Minute) }
	for i, back := range []int{0, 0, 1, 59, 60, 61, 1439, 1440, 3000} {
		if _, err := tr.Track(stamped("c", string(rune('a'+i)), minute(back))); err != nil {
			t.Fatal(err)
		}
	}
	c, w, err := tr.Stats("c")
	if err != nil || c.ID != "c" {
		t.Fatal(c, err)
	}
	if w.Window != (stats.Window{LastHour: 4, LastDay: 7, Total: 9}) || w.Duplicates != (stats.Window{}) {
		t.Fatalf("windows %+v, want 4 in the hour, 7 in the day, 9 in all", w)
	}
	c, first, counts, err := tr.Series("c", 3)
	if err != nil || c.ID != "c" || first != stats.Minute(now)-2 || len(counts) != 3 || counts[0] != 0 || counts[1] != 1 || counts[2] != 2 {
		t.Fatalf("Series(c, 3) = %s, %d, %v, %v; want from %d: 0 1 2", c.ID, first, counts, err, stats.Minute(now)-2)
	}
	_, first, counts, _ = tr.Series("c", 61)
	if first != stats.Minute(now)-60 || counts[0] != 1 || counts[1] != 1 || counts[59] != 1 || counts[60] != 2 {
		t.Fatalf("Series(c, 61) from %d: %v", first, counts)
	}
	// The windows end with the current minute: an hour on, the hour is empty.
	clock.Add(time.Hour)
	if _, w, _ := tr.Stats("c"); w.LastHour != 0 || w.Total != 9 {
		t.Fatalf("an hour later: %+v", w)
	}
	if _, _, err := tr.Stats("nope"); err != ErrCampaignNotFound {
		t.Fatalf("Stats of an unknown campaign: %v", err)
	}
	if _, _, _, err := tr.Series("nope", 3); err != ErrCampaignNotFound {
		t.Fatalf("Series of an unknown campaign: %v", err)
	}
	if _, err := tr.Campaign("nope"); err != ErrCampaignNotFound {
		t.Fatalf("Campaign of an unknown campaign: %v", err)
	}
}
