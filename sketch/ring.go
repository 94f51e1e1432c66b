package sketch

import "time"

// noEpoch marks a shard that has not been touched yet. It is far enough
// below any real epoch that the first advance recycles every generation,
// and far enough above math.MinInt64 that the subtraction cannot overflow.
const noEpoch = -1 << 62

// ring tracks which slice the newest of a shard's generations belongs to.
// It is not safe for concurrent use; the shard's mutex guards it.
type ring struct {
	epoch int64 // slice number of gens[head]
	head  int   // index of the newest generation
	n     int   // number of generations, K+1
}

func newRing(n int) ring { return ring{epoch: noEpoch, n: n} }

// advance moves the ring to slice e and returns how many of the oldest
// generations fell out of the window; the caller resets them with next. A
// clock running backwards moves nothing: the pair then lands in a newer
// generation than its arrival, which only lengthens its window within
// bounds.
func (r *ring) advance(e int64) (expired int) {
	if e <= r.epoch {
		return 0
	}
	d := e - r.epoch
	r.epoch = e
	if d > int64(r.n) {
		return r.n
	}
	return int(d)
}

// slot returns the index of the generation of slice e, advancing the ring
// first if e is newer, and false if e has left the window. The caller
// resets the generations that expire, as after advance.
func (r *ring) slot(e int64) (i int, ok bool) {
	age := r.epoch - e
	if age < 0 || age >= int64(r.n) || r.epoch == noEpoch {
		return 0, false
	}
	return (r.head - int(age) + r.n) % r.n, true
}

// next makes the oldest generation the newest and returns its index.
func (r *ring) next() int {
	r.head++
	if r.head == r.n {
		r.head = 0
	}
	return r.head
}

// clock turns arrival times into slice numbers.
type clock struct{ slice int64 }

func (c clock) epoch(now time.Time) int64 {
	ns := now.UnixNano()
	e := ns / c.slice
	if ns < 0 && ns%c.slice != 0 {
		e--
	}
	return e
}
