package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// runPin runs one of the attacks of docs/SECURITY.md ("Memory a client can
// pin") against a running impressiond on this machine, and reports the
// server's RSS (from /proc/<pid>/status) and /healthz latency during it.
func runPin(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pin", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: loadtest pin [flags]

Attacks a running impressiond the way a client pins its memory, then times
200 /healthz requests on new connections and reads the server's RSS:
  body    -conns connections each claim a -claim byte body, send -send bytes of it and stall
  list    -conns concurrent GET -path
  idle    10 source IPs (127.0.0.2-11) open -conns idle keep-alive connections each,
          then 100 health checks come from 127.0.0.12, each on a new connection
  create  create -conns campaigns (campaign-000000, ...), to list them

Flags:
`)
		fs.PrintDefaults()
	}
	attack := fs.String("attack", "body", "the attack: body, list, idle or create")
	addr := fs.String("addr", "127.0.0.1:8080", "the server's address")
	pid := fs.Int("pid", 0, "the server's process id, to read its RSS")
	conns := fs.Int("conns", 1000, "connections (body, idle: per source IP), concurrent lists, or campaigns to create")
	claim := fs.Int("claim", 4<<20, "body: the Content-Length each connection claims")
	send := fs.Int("send", 100, "body: the bytes of the body each connection sends")
	path := fs.String("path", "/api/v1/campaigns", "list: the path listed")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	base := "http://" + *addr
	if *attack == "create" {
		return createManyCampaigns(base, *conns)
	}
	fmt.Fprintf(stdout, "RSS before: %s\n", rss(*pid))
	var done func() string // ends the attack, returns its outcome
	switch *attack {
	case "body":
		done = pinBodies(*addr, *conns, *claim, *send)
	case "list":
		done = pinLists(base+*path, *conns)
	case "idle":
		done = pinIdle(*addr, *conns)
		fmt.Fprintln(stdout, done())
		fmt.Fprintf(stdout, "RSS: %s\n", rss(*pid))
		return nil
	default:
		fmt.Fprintf(fs.Output(), "loadtest pin: unknown attack %q\n", *attack)
		return errUsage
	}
	lat := timeHealthz(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, base, 200)
	fmt.Fprintf(stdout, "during: RSS %s; /healthz %s\n", rss(*pid), lat)
	fmt.Fprintln(stdout, done())
	fmt.Fprintf(stdout, "after: RSS %s\n", rss(*pid))
	return nil
}

// rss returns the process's VmRSS and VmHWM.
func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	var cur, peak string
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			cur = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			peak = strings.TrimSpace(v)
		}
	}
	return cur + " (peak " + peak + ")"
}

func pinBodies(addr string, conns, claim, send int) func() string {
	var held []net.Conn
	var errs int
	head := fmt.Sprintf("POST /api/v1/impressions/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", claim)
	body := strings.Repeat(" ", send)
	for range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			errs++
			continue
		}
		if _, err := io.WriteString(c, head+body); err != nil {
			errs++
		}
		held = append(held, c)
	}
	return func() string {
		for _, c := range held {
			c.Close()
		}
		return fmt.Sprintf("%d connections held, %d failed to connect or send", len(held), errs)
	}
}

func pinLists(url string, n int) func() string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	status := map[string]int{}
	for range n {
		wg.Go(func() {
			k := "error"
			if resp, err := http.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				k = resp.Status
			}
			mu.Lock()
			status[k]++
			mu.Unlock()
		})
	}
	return func() string {
		wg.Wait()
		return fmt.Sprintf("lists answered: %v", status)
	}
}

func pinIdle(addr string, perIP int) func() string {
	var idle []net.Conn
	for ip := byte(2); ip <= 11; ip++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, ip)}}
		for range perIP {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				break
			}
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			var buf [512]byte
			c.Read(buf[:]) // the answer; the connection then waits, idle
			idle = append(idle, c)
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 12)}}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
	status := map[string]int{}
	for range 100 {
		k := "error"
		if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			k = resp.Status
		}
		status[k]++
	}
	return func() string {
		for _, c := range idle {
			c.Close()
		}
		return fmt.Sprintf("%d idle keep-alive connections; 100 health checks from another IP: %v", len(idle), status)
	}
}

func timeHealthz(client *http.Client, base string, n int) string {
	var lat []time.Duration
	errs := 0
	for range n {
		start := time.Now()
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			errs++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	if len(lat) == 0 {
		return fmt.Sprintf("%d of %d failed", errs, n)
	}
	slices.Sort(lat)
	return fmt.Sprintf("p50 %v, p99 %v, max %v, %d of %d failed", lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], errs, n)
}

func createManyCampaigns(base string, n int) error {
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				resp, err := http.Post(base+"/api/v1/campaigns", "application/json",
					strings.NewReader(fmt.Sprintf(`{"id":"campaign-%06d","name":"Campaign %d"}`, i, i)))
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					errs <- fmt.Errorf("creating campaign %d: %s", i, resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
