package api

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// limitListener caps connections overall and per client IP, and refuses
// the excess with a JSON error instead of the plain text fasthttp's own
// limits write. At the overall cap it first closes the longest-idle
// keep-alive connection (one that was answered and waits for its next
// request) to admit the new one, so that idle clients cannot crowd out
// active ones; only when none is idle is the new connection refused. Its
// connections keep CloseWrite, which the 413 path needs to half-close
// before draining. It is safe for concurrent use.
type limitListener struct {
	net.Listener
	max, perIP int

	// idleSeq orders connections by when they went idle: each takes the
	// next value as it does (connState), so the smallest is the longest
	// idle. One atomic add per request, and no lock on the request path.
	idleSeq atomic.Uint64
	evicted atomic.Uint64 // idle connections closed to admit new ones
	// Connections refused: at perIP (429) and at max with none idle (503).
	refusedPerIP, refusedMax atomic.Uint64

	mu      sync.Mutex // guards open, byIP and conns
	open    int
	byIP    map[string]int
	conns   map[*limitedConn]struct{} // the open connections, for eviction
	tooMany []byte                    // rendered refusals
	busy    []byte
}

func newLimitListener(ln net.Listener, max, perIP int) *limitListener {
	return &limitListener{
		Listener: ln, max: max, perIP: perIP, byIP: make(map[string]int), conns: make(map[*limitedConn]struct{}),
		tooMany: rawResponse(newError(fasthttp.StatusTooManyRequests, "too many connections from your address")),
		busy:    rawResponse(newError(fasthttp.StatusServiceUnavailable, "server is at its connection limit")),
	}
}

func rawResponse(e *apiError) []byte {
	b := []byte("HTTP/1.1 " + strconv.Itoa(e.code) + " " + fasthttp.StatusMessage(e.code) + "\r\n" +
		"Server: " + serverName + "\r\nContent-Type: " + contentTypeJSON + "\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(e.body)) + "\r\n\r\n")
	return append(b, e.body...)
}

// Accept returns the next connection within the limits; connections over
// them are answered and closed here, never handed to the server.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		lc := &limitedConn{Conn: c, l: l, ip: ip}
		var refuse []byte
		var victim *limitedConn
		l.mu.Lock()
		if l.open >= l.max && l.byIP[ip] < l.perIP {
			victim = l.evictLocked()
		}
		switch {
		case l.open >= l.max:
			refuse = l.busy
			l.refusedMax.Add(1)
		case l.byIP[ip] >= l.perIP:
			refuse = l.tooMany
			l.refusedPerIP.Add(1)
		default:
			l.open++
			l.byIP[ip]++
			l.conns[lc] = struct{}{}
		}
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close() // its server goroutine, waiting for a request, ends
		}
		if refuse != nil {
			go reject(c, refuse) // never let a refused client slow the accept loop
			continue
		}
		return lc, nil
	}
}

// evictLocked picks the longest-idle keep-alive connection, releases its
// slot and returns it for the caller to close, or returns nil if no
// connection is idle. A connection whose next request arrives at this very
// moment may still be picked; its client sees the connection closed, as at
// an idle timeout, which HTTP clients retry on another. The scan is linear
// in the open connections, and runs only at the cap.
func (l *limitListener) evictLocked() *limitedConn {
	for {
		var victim *limitedConn
		var oldest uint64
		for c := range l.conns {
			if seq := c.idleSince.Load(); seq != 0 && (victim == nil || seq < oldest) {
				victim, oldest = c, seq
			}
		}
		if victim == nil {
			return nil
		}
		// Unless it went active meanwhile: then look again.
		if victim.idleSince.CompareAndSwap(oldest, 0) {
			l.releaseLocked(victim)
			l.evicted.Add(1)
			return victim
		}
	}
}

// connState is fasthttp.Server.ConnState: it marks a connection idle when
// it has been answered and waits for its next request, and active again
// when that request's first byte arrives.
func connState(c net.Conn, state fasthttp.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	if state == fasthttp.StateIdle {
		lc.idleSince.Store(lc.l.idleSeq.Add(1))
	} else {
		lc.idleSince.Store(0)
	}
}

// reject answers a refused connection and closes it gently: the request
// the client may be sending is read and dropped first, and the write side
// is closed before the read side, because closing a socket with unread
// data makes the kernel reset it and the client may lose the answer. The
// whole exchange is bounded to a second.
func reject(c net.Conn, resp []byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	var buf [4096]byte
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	c.Read(buf[:]) // the request line and headers, if they came
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write(resp); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

func (l *limitListener) release(c *limitedConn) {
	l.mu.Lock()
	l.releaseLocked(c)
	l.mu.Unlock()
}

// releaseLocked frees c's slot, once however often it is called.
func (l *limitListener) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	delete(l.conns, c)
	l.open--
	if l.byIP[c.ip]--; l.byIP[c.ip] <= 0 {
		delete(l.byIP, c.ip)
	}
}

// stats returns the open connections and those closed to admit new ones.
func (l *limitListener) stats() (open int, evicted uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.evicted.Load()
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return string(a.IP.To16())
	}
	return ""
}

// limitedConn releases its slot once, on the first Close or when it is
// evicted.
type limitedConn struct {
	net.Conn
	l         *limitListener
	ip        string
	idleSince atomic.Uint64 // its idleSeq since it went idle; 0 while not idle
	released  bool          // guarded by l.mu
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
	return err
}

// CloseWrite half-closes the connection when the transport can.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
