package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/journal"
	"github.com/interlock/interlock/test/e2e/pgtest"
	"github.com/interlock/interlock/test/e2e/s3test"
	"github.com/interlock/interlock/test/testenv"
)

// The fleet's pieces for the issue-17 tests: one hub (`interlock hub
// serve` on a real PostgreSQL, publishing to a real versitygw bucket with
// object lock) and hosts, each a daemon of its own with its own journal,
// keys, state, control socket, BPF pins and intercepted cgroup, enrolled
// with `interlock hub join`.

// fleetWait is the deadline of the fleet's waits: shipping on a loaded
// 2-core machine backs off and retries, so it is generous.
const fleetWait = 60 * time.Second

// fleetBucket is the bucket the hub publishes fleet checkpoints to.
const fleetBucket = "fleet"

// startFleetS3 starts versitygw without versioning, where object lock
// refuses an overwrite or a delete outright, and makes the bucket with
// object lock. The client has the server's root credentials: whoever
// would take a checkpoint back.
func startFleetS3(t *testing.T) (*s3test.Server, *minio.Client) {
	t.Helper()
	_, err := s3test.Binary()
	testenv.Require(t, "versitygw (an S3 server with object lock)", err)
	s, err := s3test.Start(t.TempDir(), s3test.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("versitygw log:\n%s", s.Log())
		}
		s.Stop()
	})
	c, err := minio.New(s.Addr(), &minio.Options{Creds: credentials.NewStaticV4(s3test.AccessKey, s3test.SecretKey, ""), Region: s3test.Region})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MakeBucket(context.Background(), fleetBucket, minio.MakeBucketOptions{Region: s3test.Region, ObjectLocking: true}); err != nil {
		t.Fatalf("make the bucket with object lock: %v\n%s", err, s.Log())
	}
	return s, c
}

// fleetHub is a running `interlock hub serve`, restartable.
type fleetHub struct {
	t      *testing.T
	pg     *pgtest.Server
	db     string
	dir    string
	cfg    string
	url    string
	addr   string
	cmd    *exec.Cmd
	stderr *testkit.SyncBuffer
	done   chan struct{}
}

func startFleetHub(t *testing.T, pg *pgtest.Server, s3 *s3test.Server) *fleetHub {
	t.Helper()
	return startFleetHubWith(t, pg, s3, "fleethub", "")
}

// startFleetHubWith starts a hub on database db, publishing to s3 unless
// it is nil, with extra lines in its hub section (indented two spaces).
func startFleetHubWith(t *testing.T, pg *pgtest.Server, s3 *s3test.Server, db, extra string) *fleetHub {
	t.Helper()
	h := &fleetHub{t: t, pg: pg, db: db, dir: t.TempDir(), stderr: &testkit.SyncBuffer{}}
	conn, err := pg.CreateDB(h.db)
	if err != nil {
		t.Fatal(err)
	}
	connFile := filepath.Join(h.dir, "db.conn")
	secret := filepath.Join(h.dir, "s3.secret")
	for f, s := range map[string]string{connFile: conn, secret: s3test.SecretKey} {
		if err := os.WriteFile(f, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testkit.FreePort(t, "127.0.0.1")))
	h.url = "https://" + h.addr
	h.cfg = filepath.Join(h.dir, "hub.yaml")
	y := fmt.Sprintf(`hub:
  listen: %s
  database: %s
  state_dir: %s
  tls:
    names: [127.0.0.1]
  fleet_interval: 1s
`, h.addr, connFile, filepath.Join(h.dir, "state"))
	if s3 != nil {
		y += fmt.Sprintf(`  publish:
    endpoint: %s
    bucket: %s
    region: %s
    access_key_id: %s
    secret_key_file: %s
    retention: 1h
    tls: false
`, s3.Addr(), fleetBucket, s3test.Region, s3test.AccessKey, secret)
	}
	y += extra + "log:\n  level: debug\n"
	if err := os.WriteFile(h.cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.kill()
		if t.Failed() {
			t.Logf("hub stderr:\n%s", testkit.Tail(h.stderr.String(), 6000))
		}
	})
	h.start()
	return h
}

// start starts the hub and waits until it listens.
func (h *fleetHub) start() {
	h.t.Helper()
	h.cmd = exec.Command(interlockBin, "hub", "serve", "-c", h.cfg)
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	h.done = done
	go func(c *exec.Cmd) { c.Wait(); close(done) }(h.cmd)
	testkit.WaitFor(h.t, fleetWait, 50*time.Millisecond, func() bool {
		select {
		case <-done:
			h.t.Fatalf("hub serve exited: %s", testkit.Tail(h.stderr.String(), 4000))
		default:
		}
		c, err := net.DialTimeout("tcp", h.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill ends the hub with SIGKILL: no shutdown of its own.
func (h *fleetHub) kill() {
	if h.cmd == nil || h.cmd.Process == nil {
		return
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// pause stops the hub (SIGSTOP): it keeps its connections and answers
// nothing until resume.
func (h *fleetHub) pause() {
	h.t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		h.t.Fatalf("stop the hub: %v", err)
	}
}

// resume continues a paused hub (SIGCONT). A second call does nothing,
// and a hub killed meanwhile is not an error: callers defer it so that a
// failed step does not leave the hub stopped under the hosts' shutdown.
func (h *fleetHub) resume() {
	h.t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		h.t.Errorf("continue the hub: %v", err)
	}
}

// sql runs statements on the hub's database as the superuser and returns
// psql's unaligned, tuples-only output.
func (h *fleetHub) sql(stmts ...string) string {
	h.t.Helper()
	out, err := h.pg.PSQL(h.db, stmts...)
	if err != nil {
		h.t.Fatalf("hub database: %v: %s", err, out)
	}
	return out
}

func (h *fleetHub) int(query string) int64 {
	h.t.Helper()
	out := h.sql(query)
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		h.t.Fatalf("%s: %q", query, out)
	}
	return n
}

// interlock runs `interlock hub ARGS` with the hub's config.
func (h *fleetHub) interlock(args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	return runCmd(h.t, exec.Command(interlockBin, append(append([]string{"hub"}, args...), "-c", h.cfg)...))
}

// fleetHost is one host of the fleet: a daemon intercepting a cgroup of
// its own and shipping its journal to the hub.
type fleetHost struct {
	*env
	name    string
	cgDir   string
	shipDir string
	hostID  string
	d       *daemon
}

// newFleetHost writes the host's config (the targets, extra YAML, the
// ship section), starts its daemon once so that its journal and key
// exist, enrols it with `interlock hub join` pinned to the CA fingerprint
// `hub token create` printed, and starts it again to ship.
func newFleetHost(t *testing.T, h *fleetHub, name string, targets []target, extra string) *fleetHost {
	t.Helper()
	cgPath, cgDir := makeCgroup(t, "fleet-"+name)
	shipDir := filepath.Join(t.TempDir(), "ship")
	e := newEnv(t, targets, fmt.Sprintf(`intercept:
  cgroups: [%s]
ship:
  hub_url: %s
  state_dir: %s
  batch_entries: 16
  interval: 100ms
  retry_min: 50ms
  retry_max: 500ms
%s`, cgPath, h.url, shipDir, extra))
	fh := &fleetHost{env: e, name: name, cgDir: cgDir, shipDir: shipDir}
	d := e.startDaemon()
	d.stop(t, syscall.SIGTERM)

	out, stderr, code := h.interlock("token", "create", "--json")
	if code != 0 {
		t.Fatalf("hub token create: exit %d: %s", code, stderr)
	}
	var tok struct {
		Token    string `json:"token"`
		CASHA256 string `json:"ca_sha256"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatalf("token create printed %q: %v", out, err)
	}
	out, stderr, code = e.interlock("hub", "join", h.url, "--token", tok.Token, "--ca-sha256", tok.CASHA256, "--name", name, "-c", e.cfgPath)
	if code != 0 {
		t.Fatalf("hub join %s: exit %d: %s", name, code, stderr)
	}
	fh.hostID = strings.TrimSpace(out)
	fh.d = e.startDaemon()
	return fh
}

// restart starts the host's daemon again after it was stopped or killed.
func (fh *fleetHost) restart() { fh.d = fh.startDaemon() }

// head is the seq of the last entry of the host's journal.
func (fh *fleetHost) head() int64 {
	fh.t.Helper()
	s, err := journal.OpenSnapshot(context.Background(), fh.journal)
	if err != nil {
		fh.t.Fatalf("%s: journal: %v", fh.name, err)
	}
	defer s.Close()
	return s.Head
}

// hubSize is how many of the host's entries the hub holds.
func (fh *fleetHost) hubSize(h *fleetHub) int64 {
	fh.t.Helper()
	return h.int("SELECT size FROM hosts WHERE id = '" + fh.hostID + "'")
}

// psql runs a script with psql inside the host's intercepted cgroup: the
// daemon's proxy logs in to the target with the target's credentials.
func (fh *fleetHost) psql(pg *pgtest.Server, script string) (stdout, stderr string, code int) {
	fh.t.Helper()
	cmd := inCgroup(fh.t, fh.cgDir, filepath.Join(pg.BinDir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=0",
		conninfo(pg, "sslmode=disable connect_timeout=10"))
	cmd.Stdin = strings.NewReader(script)
	return runCmd(fh.t, cmd)
}

// load runs psql sessions in the host's cgroup over and over until stop
// is called, which waits for the last one. A session may fail (the
// daemon killed under it, the cgroup failing closed): the load goes on.
func (fh *fleetHost) load(pg *pgtest.Server, script string) (stop func() (ok, failed int)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cmd := inCgroupNoT(fh.cgDir, filepath.Join(pg.BinDir, "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
				conninfo(pg, "sslmode=disable connect_timeout=10"))
			if cmd == nil {
				failed++
				time.Sleep(50 * time.Millisecond)
				continue
			}
			cmd.Stdin = strings.NewReader(script)
			if err := cmd.Run(); err != nil {
				failed++
				// Fail-closed connects are refused at once: do not spin.
				time.Sleep(50 * time.Millisecond)
				continue
			}
			ok++
		}
	}()
	return func() (int, int) {
		cancel()
		wg.Wait()
		return ok, failed
	}
}

// inCgroupNoT is inCgroup for a goroutine that must not call t.Fatal: it
// returns nil when the cgroup cannot be opened. The descriptor is closed
// when the command has started (the kernel has placed it by then).
func inCgroupNoT(dir string, argv ...string) *cgroupCmd {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	return &cgroupCmd{Cmd: cmd, f: f}
}

type cgroupCmd struct {
	*exec.Cmd
	f *os.File
}

func (c *cgroupCmd) Run() error {
	defer c.f.Close()
	return c.Cmd.Run()
}

// hubEntries reads the bodies and payloads the hub holds of a host, by
// seq.
func (h *fleetHub) hubEntries(hostID string) map[int64][2][]byte {
	h.t.Helper()
	// The separator is no space: psql's output comes trimmed, and a last
	// entry without a payload would lose its field.
	out := h.sql("SELECT seq || '|' || encode(body, 'hex') || '|' || coalesce(encode(payload, 'hex'), '') FROM entries WHERE host_id = '" +
		hostID + "' ORDER BY seq")
	m := map[int64][2][]byte{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			h.t.Fatalf("hub entry line %q", testkit.Tail(line, 200))
		}
		seq, err := strconv.ParseInt(f[0], 10, 64)
		body, err2 := hex.DecodeString(f[1])
		payload, err3 := hex.DecodeString(f[2])
		if err != nil || err2 != nil || err3 != nil {
			h.t.Fatalf("hub entry line %q", testkit.Tail(line, 200))
		}
		m[seq] = [2][]byte{body, payload}
	}
	return m
}
