package api

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// limitListener caps connections overall and per client IP, and refuses
// the excess with a JSON error instead of the plain text fasthttp's own
// limits write. Its connections keep CloseWrite, which the 413 path needs
// to half-close before draining. It is safe for concurrent use.
type limitListener struct {
	net.Listener
	max, perIP int

	mu      sync.Mutex // guards open and byIP
	open    int
	byIP    map[string]int
	tooMany []byte // rendered refusals
	busy    []byte
}

func newLimitListener(ln net.Listener, max, perIP int) *limitListener {
	return &limitListener{
		Listener: ln, max: max, perIP: perIP, byIP: make(map[string]int),
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
		l.mu.Lock()
		var refuse []byte
		switch {
		case l.open >= l.max:
			refuse = l.busy
		case l.byIP[ip] >= l.perIP:
			refuse = l.tooMany
		default:
			l.open++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if refuse != nil {
			go reject(c, refuse) // never let a refused client slow the accept loop
			continue
		}
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
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

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
	l.mu.Unlock()
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return string(a.IP.To16())
	}
	return ""
}

// limitedConn releases its slot once, on the first Close.
type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// CloseWrite half-closes the connection when the transport can.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
