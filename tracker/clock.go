package tracker

import (
	"sync"
	"sync/atomic"
	"time"
)

// coarseClock is a clock read with one atomic load, refreshed by a ticker:
// cheaper than time.Now on every request, and precise enough for minute
// buckets and dedup slices of at least a millisecond. It is safe for
// concurrent use; Stop ends its goroutine.
type coarseClock struct {
	nanos  atomic.Int64
	stopCh chan struct{}
	wg     sync.WaitGroup
}

// clockResolution is how stale a coarseClock reading may be.
const clockResolution = time.Millisecond

func newCoarseClock() *coarseClock {
	c := &coarseClock{stopCh: make(chan struct{})}
	c.nanos.Store(time.Now().UnixNano())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(clockResolution)
		defer t.Stop()
		for {
			select {
			case <-c.stopCh:
				return
			case now := <-t.C:
				c.nanos.Store(now.UnixNano())
			}
		}
	}()
	return c
}

func (c *coarseClock) Now() time.Time { return time.Unix(0, c.nanos.Load()) }

func (c *coarseClock) Stop() {
	close(c.stopCh)
	c.wg.Wait()
}
