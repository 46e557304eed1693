package approvals

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// Webhook posts each approval request as JSON to a URL, so approvers hear
// of it where they are (a chat bridge, a ticket system).
type Webhook struct {
	URL     string
	Timeout time.Duration
	// Secret, when set, signs each body: X-Interlock-Signature carries
	// sha256=HMAC-SHA256(secret, body) in hex.
	Secret []byte
	Client *http.Client
	Logger *slog.Logger
	// ConsoleURL, when set, is the hub console's base URL: each event
	// links to the request there, where an approver signed in through
	// the company's identity provider decides it (chat carries the link,
	// never the decision).
	ConsoleURL string
}

// NewWebhook reads the secret file, if any.
func NewWebhook(url string, timeout time.Duration, secretFile string, log *slog.Logger) (*Webhook, error) {
	w := &Webhook{URL: url, Timeout: timeout, Logger: log, Client: &http.Client{}}
	if w.Timeout == 0 {
		w.Timeout = 5 * time.Second
	}
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return nil, fmt.Errorf("webhook secret: %w", err)
		}
		w.Secret = bytes.TrimSpace(b)
		if len(w.Secret) == 0 {
			return nil, fmt.Errorf("webhook secret %s is empty", secretFile)
		}
	}
	return w, nil
}

// Event is the webhook's JSON body.
type Event struct {
	Event   string                `json:"event"`
	Request model.ApprovalRequest `json:"request"`
	// TextLines is the operation text for a person to read: every line,
	// numbered, with control bytes, invalid UTF-8 and bidi/zero-width
	// characters escaped (Request.Operation.Text is the raw text, which
	// a chat bridge would render as the client wrote it). A bridge shows
	// these, never the raw text.
	TextLines []string `json:"text_lines,omitempty"`
	// Approve and Deny are the commands an approver runs. Approve names
	// the text's SHA-256, so it approves only the text shown here.
	Approve string `json:"approve"`
	Deny    string `json:"deny"`
	// Link is the request on the hub console (ship.console_url).
	Link string `json:"link,omitempty"`
}

// Notify sends one request, retrying twice on failure within the timeout.
// A failure is logged: the request stays pending and listed on the
// approvals socket either way.
func (w *Webhook) Notify(req model.ApprovalRequest) {
	var lines []string
	if req.Operation.Text != "" {
		lines = textview.Lines(req.Operation.Text)
	}
	body, err := json.Marshal(Event{
		Event: "approval.request", Request: req, TextLines: lines,
		Approve: "interlock approvals approve " + req.ID + " --expect " + req.TextSHA256 + " --reason '...'",
		Deny:    "interlock approvals deny " + req.ID + " --reason '...'",
		Link:    w.link(req.ID),
	})
	if err != nil {
		w.Logger.Error("webhook: encode", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.Timeout)
	defer cancel()
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				attempt = 3
				continue
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		if last = w.post(ctx, body); last == nil {
			return
		}
	}
	w.Logger.Warn("webhook: approval request not delivered", "request", req.ID, "url", w.URL, "err", last)
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("User-Agent", "interlock")
	if len(w.Secret) > 0 {
		mac := hmac.New(sha256.New, w.Secret)
		mac.Write(body)
		r.Header.Set("X-Interlock-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := w.Client.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", redactURL(w.URL), resp.Status)
	}
	return nil
}

// link is the console page of request id, "" without a console.
func (w *Webhook) link(id string) string {
	if w.ConsoleURL == "" {
		return ""
	}
	return strings.TrimSuffix(w.ConsoleURL, "/") + "/approvals/" + url.PathEscape(id)
}

// redactURL drops credentials and query (tokens) from a URL for logs.
func redactURL(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	if at := strings.LastIndexByte(u, '@'); at >= 0 {
		if s := strings.Index(u, "://"); s >= 0 && s < at {
			u = u[:s+3] + "…" + u[at:]
		}
	}
	return u
}
