package journal

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"log/syslog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/interlock/interlock/internal/atomicfile"
	"github.com/interlock/interlock/journal/evidence"
)

// SinkSyslog is the journal.checkpoint_sinks entry that sends checkpoints
// to the local syslog daemon.
const SinkSyslog = "syslog"

// sinkTimeout bounds one delivery, so a dead HTTP endpoint cannot hold
// back the next checkpoint (nor Close) for long.
const sinkTimeout = 5 * time.Second

// sink is one place outside the database that receives every new
// checkpoint.
type sink interface {
	name() string
	deliver(ctx context.Context, cp evidence.Checkpoint) error
}

// ParseSink checks one journal.checkpoint_sinks entry: an absolute file
// path, "syslog", or an http:// or https:// URL that receives a POST.
func ParseSink(s string) error {
	_, err := newSink(s)
	return err
}

func newSink(s string) (sink, error) {
	switch {
	case s == SinkSyslog:
		return &syslogSink{}, nil
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%q is not a usable URL", s)
		}
		return &httpSink{url: s, client: &http.Client{Timeout: sinkTimeout}}, nil
	case filepath.IsAbs(s) && !strings.HasSuffix(s, "/"):
		return fileSink(filepath.Clean(s)), nil
	}
	return nil, fmt.Errorf("%q is not a checkpoint sink: write an absolute file path, %q, or an http(s):// URL", s, SinkSyslog)
}

// fileSink replaces a file with the newest checkpoint. Open reads it back
// (like the file beside the database) to refuse a rolled-back journal.
type fileSink string

func (f fileSink) name() string { return string(f) }
func (f fileSink) deliver(_ context.Context, cp evidence.Checkpoint) error {
	return atomicfile.Write(string(f), cp.Note, 0o644)
}

// httpSink POSTs the signed note as text/plain.
type httpSink struct {
	url    string
	client *http.Client
}

func (h *httpSink) name() string { return h.url }
func (h *httpSink) deliver(ctx context.Context, cp evidence.Checkpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(cp.Note))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s", h.url, resp.Status)
	}
	return nil
}

// syslogSink writes one line per checkpoint: syslog mangles multi-line
// messages, so the note travels as a JSON string.
type syslogSink struct{ w *syslog.Writer }

func (s *syslogSink) name() string { return SinkSyslog }
func (s *syslogSink) deliver(_ context.Context, cp evidence.Checkpoint) error {
	if s.w == nil {
		w, err := syslog.New(syslog.LOG_NOTICE|syslog.LOG_AUTH, "interlock-journal")
		if err != nil {
			return err
		}
		s.w = w
	}
	line, err := json.Marshal(struct {
		Origin string `json:"origin"`
		Size   int64  `json:"size"`
		Root   string `json:"root"`
		TimeNS int64  `json:"time_ns"`
		Note   string `json:"note"`
	}{cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root[:]), cp.TimeNS, string(cp.Note)})
	if err != nil {
		return err
	}
	if err := s.w.Notice("checkpoint " + string(line)); err != nil {
		s.w.Close()
		s.w = nil
		return err
	}
	return nil
}

// sinks delivers checkpoints in their own goroutine so that a slow disk or
// endpoint never delays the writer. Only the newest matters: a checkpoint
// still waiting is replaced by a newer one.
type sinks struct {
	log     *slog.Logger
	targets []sink
	mu      sync.Mutex
	pending *evidence.Checkpoint
	wake    chan struct{}
	done    chan struct{}
	// failing remembers which sinks are failing, to log a failure once
	// and its recovery once instead of every second.
	failing map[string]time.Time
}

func startSinks(log *slog.Logger, beside string, extra []string) (*sinks, error) {
	s := &sinks{log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), failing: map[string]time.Time{}}
	s.targets = append(s.targets, fileSink(beside))
	for _, e := range extra {
		t, err := newSink(e)
		if err != nil {
			return nil, fmt.Errorf("journal: checkpoint sink: %w", err)
		}
		s.targets = append(s.targets, t)
	}
	go s.run()
	return s, nil
}

func (s *sinks) publish(cp evidence.Checkpoint) {
	s.mu.Lock()
	s.pending = &cp
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sinks) run() {
	defer close(s.done)
	for range s.wake {
		s.mu.Lock()
		cp := s.pending
		s.pending = nil
		s.mu.Unlock()
		if cp != nil {
			s.deliver(*cp)
		}
	}
}

func (s *sinks) deliver(cp evidence.Checkpoint) {
	for _, t := range s.targets {
		ctx, cancel := context.WithTimeout(context.Background(), sinkTimeout)
		err := t.deliver(ctx, cp)
		cancel()
		since, failed := s.failing[t.name()]
		switch {
		case err != nil && !failed:
			s.failing[t.name()] = time.Now()
			s.log.Warn("journal checkpoint sink failing", "sink", t.name(), "size", cp.Size, "err", err)
		case err != nil && time.Since(since) > time.Minute:
			s.failing[t.name()] = time.Now()
			s.log.Warn("journal checkpoint sink still failing", "sink", t.name(), "size", cp.Size, "err", err)
		case err == nil && failed:
			delete(s.failing, t.name())
			s.log.Info("journal checkpoint sink recovered", "sink", t.name(), "size", cp.Size)
		}
	}
}

// close delivers what is pending and stops.
func (s *sinks) close() {
	close(s.wake)
	<-s.done
	s.mu.Lock()
	cp := s.pending
	s.mu.Unlock()
	if cp != nil {
		s.deliver(*cp)
	}
}

// fileSinks lists the file paths among the configured sinks: Open checks
// them against the database like the file beside it.
func fileSinks(extra []string) []string {
	var out []string
	for _, e := range extra {
		if t, err := newSink(e); err == nil {
			if f, ok := t.(fileSink); ok {
				out = append(out, string(f))
			}
		}
	}
	return out
}
