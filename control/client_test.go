package control

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/control/controlapi"
)

// serve answers on a unix socket with h, as a daemon would.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// TestStartRunSpeaksTheWire: the request body carries the wire's keys and
// the answer decodes into the wire's RunInfo.
func TestStartRunSpeaksTheWire(t *testing.T) {
	var body map[string]any
	path := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/runs" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"r1","cgroup":"/ci","owner_pid":7,"started":"2024-01-02T03:04:05Z","journal":"/j"}`)
	})
	c := newClient(path)
	ri, err := c.StartRun(context.Background(), "/ci", []string{"make"})
	if err != nil {
		t.Fatal(err)
	}
	want := controlapi.RunInfo{ID: "r1", Cgroup: "/ci", OwnerPID: 7, Started: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Journal: "/j"}
	if ri != want {
		t.Errorf("run info %+v, want %+v", ri, want)
	}
	if body["cgroup"] != "/ci" || len(body) != 2 {
		t.Errorf("request body %v, want cgroup and argv", body)
	}
}

// TestStartRunRedactsArgv: a secret on the command line does not leave the
// client; the daemon is told how many values were replaced.
func TestStartRunRedactsArgv(t *testing.T) {
	var body controlapi.RunRequest
	path := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), "s3cret") {
			t.Errorf("the secret was sent: %s", b)
		}
		_ = json.Unmarshal(b, &body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"r1"}`)
	})
	argv := []string{"kubectl", "--token=s3cret", "get", "pods"}
	if _, err := newClient(path).StartRun(context.Background(), "/ci", argv); err != nil {
		t.Fatal(err)
	}
	if strings.Join(body.Argv, " ") != "kubectl --token=[redacted] get pods" || body.ArgvRedacted != 1 {
		t.Errorf("request %+v", body)
	}
	if argv[1] != "--token=s3cret" {
		t.Errorf("the caller's argv was changed: %q", argv)
	}
}

// TestRefusalIsAStatusError: a non-2xx answer is a StatusError with the
// daemon's message, which HasStatus recognises.
func TestRefusalIsAStatusError(t *testing.T) {
	path := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the held text differs", http.StatusConflict)
	})
	_, err := DialApprovals(path).DecideExpect(context.Background(), "r1", true, "ok", "abc")
	if !HasStatus(err, http.StatusConflict) {
		t.Fatalf("err = %v, want a 409 StatusError", err)
	}
	if se := err.(*StatusError); se.Message != "the held text differs" {
		t.Errorf("message %q", se.Message)
	}
}
