package api

// Response bodies of the read and admin endpoints, rendered with
// encoding/json. The track endpoints build theirs by hand (see track.go).

type campaignJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	StartTime string `json:"start_time"`
	// EndTime is omitted when the campaign has no end.
	EndTime string `json:"end_time,omitempty"`
	// FrequencyCaps is always present: [] for none.
	FrequencyCaps []capJSON `json:"frequency_caps"`
}

type capJSON struct {
	Max    uint64 `json:"max"`
	Window string `json:"window"`
}

type campaignCreatedJSON struct {
	campaignJSON
	Message string `json:"message"`
}

// campaignListJSON is one page of campaigns. Next, the id of the page's
// last campaign, is set only when more campaigns follow it.
type campaignListJSON struct {
	Campaigns []campaignJSON `json:"campaigns"`
	Next      string         `json:"next,omitempty"`
}

type statsJSON struct {
	CampaignID string `json:"campaign_id"`
	LastHour   uint64 `json:"last_hour"`
	LastDay    uint64 `json:"last_day"`
	Total      uint64 `json:"total"`
	// Duplicates are the impressions dedup did not count.
	Duplicates windowJSON `json:"duplicates"`
	// Reach is the distinct users with at least one impression; absent
	// where the state does not keep it (a shared Redis, for now).
	Reach *windowJSON `json:"reach,omitempty"`
}

// adsJSON is GET /api/v1/campaigns/{id}/ads: the counted impressions by
// ad id, most first; other and none complete the campaign's stats.
type adsJSON struct {
	CampaignID string     `json:"campaign_id"`
	Ads        []adJSON   `json:"ads"`
	Other      windowJSON `json:"other"`
	None       windowJSON `json:"none"`
}

type adJSON struct {
	AdID string `json:"ad_id"`
	windowJSON
}

type windowJSON struct {
	LastHour uint64 `json:"last_hour"`
	LastDay  uint64 `json:"last_day"`
	Total    uint64 `json:"total"`
}
