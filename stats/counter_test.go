package stats

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var base = Minute(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))

func TestMinute(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(59, 999999999), 0},
		{time.Unix(60, 0), 1},
		{time.Unix(-1, 0), -1}, // floor, not truncation toward zero
		{time.Unix(-60, 0), -1},
		{time.Unix(-61, 0), -2},
	} {
		if got := Minute(tc.t); got != tc.want {
			t.Errorf("Minute(%v): got %d, want %d", tc.t.UTC(), got, tc.want)
		}
	}
}

func TestWindows(t *testing.T) {
	var c Counter
	now := base
	c.Add(now, now)        // this minute
	c.Add(now-59, now)     // oldest minute of the hour
	c.Add(now-60, now)     // first minute outside the hour
	c.Add(now-1439, now)   // oldest minute of the day
	c.Add(now-1440, now)   // outside the day: total only
	c.Add(now-100000, now) // far past: total only
	c.Add(now+5, now)      // future minute: counted at now
	got := c.Read(now)
	want := Window{LastHour: 3, LastDay: 5, Total: 7}
	if got != want {
		t.Fatalf("Read: got %+v, want %+v", got, want)
	}
}

// TestRollOver moves a fake clock minute by minute: counts leave the hour
// after 60 minutes and the day after 1440, and a reused bucket starts from
// zero for its new minute.
func TestRollOver(t *testing.T) {
	var c Counter
	for i := 0; i < 10; i++ {
		c.Add(base, base)
	}
	for _, tc := range []struct {
		later int64
		want  Window
	}{
		{0, Window{10, 10, 10}},
		{59, Window{10, 10, 10}},
		{60, Window{0, 10, 10}},
		{1439, Window{0, 10, 10}},
		{1440, Window{0, 0, 10}},
	} {
		if got := c.Read(base + tc.later); got != tc.want {
			t.Errorf("%d minutes later: got %+v, want %+v", tc.later, got, tc.want)
		}
	}
	// One day later the same bucket serves a new minute.
	now := base + Minutes
	c.Add(now, now)
	if got, want := c.Read(now), (Window{1, 1, 11}); got != want {
		t.Fatalf("after reuse: got %+v, want %+v", got, want)
	}
	// A late impression for the old minute must not count into the new one.
	c.Add(base, now)
	if got := c.At(now); got != 1 {
		t.Fatalf("bucket of the new minute: got %d, want 1", got)
	}
	if got := c.Total(); got != 12 {
		t.Fatalf("Total: got %d, want 12", got)
	}
}

func TestConcurrentAddsLoseNothing(t *testing.T) {
	const goroutines, perG = 32, 2000
	var c Counter
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readerErr error
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() { // a reader racing the writers must always see ordered windows
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			w := c.Read(base + 1)
			if w.LastHour > w.LastDay || w.LastDay > w.Total {
				readerErr = fmt.Errorf("unordered reading %+v", w)
				return
			}
		}
	}()
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < perG; i++ {
				// Spread over two minutes of the hour and one of the day.
				c.Add(base-int64(i%3)*100+int64(i%2), base+1)
			}
		}(g)
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	if readerErr != nil {
		t.Fatal(readerErr)
	}
	got := c.Read(base + 1)
	if got.Total != goroutines*perG || got.LastDay != goroutines*perG {
		t.Fatalf("got %+v, want total and last_day %d", got, goroutines*perG)
	}
	// i%3==0 lands in the hour: ceil(2000/3) per goroutine.
	if want := uint64(goroutines * 667); got.LastHour != want {
		t.Fatalf("LastHour: got %d, want %d", got.LastHour, want)
	}
}
