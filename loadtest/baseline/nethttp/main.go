// Command nethttp is "the typical take-home design": a baseline that exists
// only to be measured against. It is deliberately the common, naive way to
// write this service, and it shares no code with impressiond.
//
// It serves a subset of impressiond's API with net/http and encoding/json.
// All state sits behind one sync.Mutex: the campaigns, a total counter per
// campaign, and a map from each (campaign, user) pair to the time its dedup
// window expires. A sweeper goroutine removes expired pairs every ten
// seconds, so memory grows with the number of distinct pairs seen within the
// TTL. Every request, whatever its campaign, contends for the same lock.
//
// Routes:
//
//	POST /api/v1/campaigns             {"id","name","start_time"?} -> 201
//	POST /api/v1/impressions           {"campaign_id","user_id","timestamp"?} -> 200
//	GET  /api/v1/campaigns/{id}/stats  -> {"campaign_id","last_hour","last_day","total"}
//	GET  /healthz                      -> {"status":"ok"}
//
// Errors are answered as {"error","code"}.
//
// Usage:
//
//	nethttp [-addr 127.0.0.1:8082] [-ttl 1h]
//
// It stops on SIGINT or SIGTERM after in-flight requests finish.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const (
	maxBodyBytes  = 4 << 20
	sweepInterval = 10 * time.Second
)

type campaign struct {
	ID        string
	Name      string
	StartTime time.Time
	Total     int64
}

// store holds every piece of state under a single mutex.
type store struct {
	ttl time.Duration

	mu        sync.Mutex
	campaigns map[string]*campaign
	seen      map[string]time.Time // campaign_id + "\x00" + user_id -> expiry

	stop chan struct{}
	wg   sync.WaitGroup
}

func newStore(ttl time.Duration) *store {
	s := &store{
		ttl:       ttl,
		campaigns: make(map[string]*campaign),
		seen:      make(map[string]time.Time),
		stop:      make(chan struct{}),
	}
	s.wg.Add(1)
	go s.sweep()
	return s
}

// sweep removes expired pairs every sweepInterval until close is called.
func (s *store) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.mu.Lock()
			for k, exp := range s.seen {
				if !now.Before(exp) {
					delete(s.seen, k)
				}
			}
			s.mu.Unlock()
		}
	}
}

// close stops the sweeper and waits for it to return.
func (s *store) close() {
	close(s.stop)
	s.wg.Wait()
}

type apiError struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("write response: %v", err)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg, Code: code})
}

// decode reads the body into v; false means an error was already written.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body is too large")
		} else {
			writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		}
		return false
	}
	return true
}

type createCampaignRequest struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	StartTime string `json:"start_time"`
}

type createCampaignResponse struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	StartTime string `json:"start_time"`
	Message   string `json:"message"`
}

func (s *store) createCampaign(w http.ResponseWriter, r *http.Request) {
	var req createCampaignRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Name == "" {
		writeError(w, http.StatusUnprocessableEntity, "name is required")
		return
	}
	start := time.Now().UTC().Truncate(time.Second)
	if req.StartTime != "" {
		t, err := time.Parse(time.RFC3339, req.StartTime)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "start_time must be an RFC 3339 date-time")
			return
		}
		start = t.UTC()
	}
	if req.ID == "" {
		var b [10]byte
		_, _ = rand.Read(b[:])
		req.ID = "cmp_" + hex.EncodeToString(b[:])
	}

	s.mu.Lock()
	if _, ok := s.campaigns[req.ID]; ok {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "campaign already exists")
		return
	}
	s.campaigns[req.ID] = &campaign{ID: req.ID, Name: req.Name, StartTime: start}
	s.mu.Unlock()

	w.Header().Set("Location", "/api/v1/campaigns/"+req.ID)
	writeJSON(w, http.StatusCreated, createCampaignResponse{
		ID:        req.ID,
		Name:      req.Name,
		StartTime: start.Format(time.RFC3339),
		Message:   "campaign created",
	})
}

type trackRequest struct {
	CampaignID string `json:"campaign_id"`
	UserID     string `json:"user_id"`
	Timestamp  string `json:"timestamp"`
}

type trackResponse struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func (s *store) trackImpression(w http.ResponseWriter, r *http.Request) {
	var req trackRequest
	if !decode(w, r, &req) {
		return
	}
	switch {
	case req.CampaignID == "":
		writeError(w, http.StatusUnprocessableEntity, "campaign_id is required")
		return
	case req.UserID == "":
		writeError(w, http.StatusUnprocessableEntity, "user_id is required")
		return
	}
	// The timestamp is validated but, as in most simple designs, the
	// impression is counted at the time of receipt.
	if req.Timestamp != "" {
		if _, err := time.Parse(time.RFC3339, req.Timestamp); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "timestamp must be an RFC 3339 date-time")
			return
		}
	}

	now := time.Now()
	key := req.CampaignID + "\x00" + req.UserID
	s.mu.Lock()
	c, ok := s.campaigns[req.CampaignID]
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "campaign not found")
		return
	}
	if exp, ok := s.seen[key]; ok && now.Before(exp) {
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, trackResponse{
			Status:  "duplicate",
			Message: "impression not counted: this user was already counted for this campaign within the dedup window",
		})
		return
	}
	s.seen[key] = now.Add(s.ttl)
	c.Total++
	s.mu.Unlock()

	writeJSON(w, http.StatusOK, trackResponse{Status: "counted", Message: "impression counted"})
}

type statsResponse struct {
	CampaignID string `json:"campaign_id"`
	LastHour   int64  `json:"last_hour"`
	LastDay    int64  `json:"last_day"`
	Total      int64  `json:"total"`
}

func (s *store) stats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	c, ok := s.campaigns[id]
	var total int64
	if ok {
		total = c.Total
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "campaign not found")
		return
	}
	// This baseline keeps only a running total, so it reports the total for
	// all three windows. Time-windowed counts would add per-campaign buckets,
	// which only makes it slower; the comparison is about the hot path.
	writeJSON(w, http.StatusOK, statsResponse{CampaignID: id, LastHour: total, LastDay: total, Total: total})
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *store) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/campaigns", s.createCampaign)
	mux.HandleFunc("POST /api/v1/impressions", s.trackImpression)
	mux.HandleFunc("GET /api/v1/campaigns/{id}/stats", s.stats)
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "route not found")
	})
	return mux
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	ttl := flag.Duration("ttl", time.Hour, "how long a counted (campaign, user) pair blocks repeats")
	flag.Parse()
	if *ttl <= 0 {
		fmt.Fprintln(os.Stderr, "nethttp: -ttl must be positive")
		os.Exit(2)
	}
	if err := run(*addr, *ttl); err != nil {
		fmt.Fprintf(os.Stderr, "nethttp: %v\n", err)
		os.Exit(1)
	}
}

func run(addr string, ttl time.Duration) error {
	s := newStore(ttl)
	defer s.close()

	srv := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on -addr %s: %w", addr, err)
	}
	log.Printf("nethttp baseline listening on %s (ttl %s)", ln.Addr(), ttl)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	log.Print("nethttp baseline stopped")
	return nil
}
