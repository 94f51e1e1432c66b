package tracker

// ErrAdsUnsupported answers a read of per-ad counts from a shared Redis,
// which does not keep them yet.
var ErrAdsUnsupported = newError(Unsupported, "per-ad counts are not kept with a shared Redis store yet")

// ads is not kept in the shared state yet: refused rather than answered
// with figures that would look like zeros.
func (s *shared) ads(*Campaign, int64) (AdStats, error) {
	return AdStats{}, ErrAdsUnsupported
}
