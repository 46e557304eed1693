package approvals

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

func TestWebhookSignsAndRetries(t *testing.T) {
	var calls atomic.Int32
	got := make(chan Event, 1)
	secret := []byte("s3cret")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		if r.Header.Get("X-Interlock-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("bad signature %q", r.Header.Get("X-Interlock-Signature"))
		}
		var e Event
		json.Unmarshal(body, &e)
		got <- e
	}))
	defer srv.Close()
	f := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(f, append(secret, '\n'), 0o600)
	w, err := NewWebhook(srv.URL, 2*time.Second, f, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	w.Notify(model.ApprovalRequest{ID: "r1", Rule: "hold", Target: "db"})
	select {
	case e := <-got:
		if e.Request.ID != "r1" || e.Event != "approval.request" || e.Approve == "" {
			t.Errorf("event %+v", e)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("webhook never delivered after a failure")
	}
	if calls.Load() != 2 {
		t.Errorf("%d calls, want 2 (one failure, one retry)", calls.Load())
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("https://user:pw@hooks.example/x?token=abc"); got != "https://…@hooks.example/x" {
		t.Errorf("redact: %q", got)
	}
}

// The webhook body shows a bridge every line of the text, escaped, and an
// approve command bound to the text's hash.
func TestWebhookShowsEscapedLinesAndHash(t *testing.T) {
	got := make(chan Event, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		json.NewDecoder(r.Body).Decode(&e)
		got <- e
	}))
	defer srv.Close()
	w, err := NewWebhook(srv.URL, 2*time.Second, "", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	text := "sudo -n true\n\x1b[8mrm -rf /srv\u202e"
	w.Notify(model.ApprovalRequest{ID: "r1", TextSHA256: textview.Hash(text), Operation: model.Operation{Text: text}})
	e := <-got
	want := []string{"1| sudo -n true", `2| \x1b[8mrm -rf /srv\u202e`}
	if len(e.TextLines) != 2 || e.TextLines[0] != want[0] || e.TextLines[1] != want[1] {
		t.Errorf("text_lines %q, want %q", e.TextLines, want)
	}
	if !strings.Contains(e.Approve, "--expect "+textview.Hash(text)) {
		t.Errorf("approve command %q does not name the text's hash", e.Approve)
	}
	if e.Link != "" {
		t.Errorf("a link %q without a console", e.Link)
	}
	// With the hub's console, the event links to the request there.
	w.ConsoleURL = "https://hub.example.com:8443/console/"
	w.Notify(model.ApprovalRequest{ID: "0190-a/b", Operation: model.Operation{Text: "x"}})
	if e := <-got; e.Link != "https://hub.example.com:8443/console/approvals/0190-a%2Fb" {
		t.Errorf("link %q", e.Link)
	}
}
