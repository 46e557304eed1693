package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// podPort is a port of the pod (the fake kubelet forwards to this host's
// loopback): serve handles each connection; accepts counts them.
type podPort struct {
	port    int
	accepts atomic.Int32
}

func newPodPort(t *testing.T, serve func(c net.Conn)) *podPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &podPort{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepts.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				serve(c)
			}()
		}
	}()
	return p
}

// pfRound is what one port-forward request left in the journal: the
// request, its response and its streams (by stream number).
type pfRound struct {
	req     model.K8sRequest
	resp    model.K8sResponse
	streams []model.K8sPortForward
}

// portForwards gathers the journal's port-forward requests in order,
// with what belongs to each (the same session and request seq).
func (k *kubeEnv) portForwards(t *testing.T) []*pfRound {
	t.Helper()
	type key struct {
		session string
		seq     uint64
	}
	var rounds []*pfRound
	by := map[key]*pfRound{}
	for _, en := range k.entries() {
		switch en.Kind {
		case model.KindK8sRequest:
			r := decodeJSON[model.K8sRequest](t, en.Data)
			if r.Verb == "portforward" {
				pr := &pfRound{req: r}
				rounds = append(rounds, pr)
				by[key{en.Session, r.Seq}] = pr
			}
		case model.KindK8sResponse:
			r := decodeJSON[model.K8sResponse](t, en.Data)
			if pr := by[key{en.Session, r.Seq}]; pr != nil {
				pr.resp = r
			}
		case model.KindK8sPortFwd:
			s := decodeJSON[model.K8sPortForward](t, en.Data)
			if pr := by[key{en.Session, s.Seq}]; pr != nil {
				pr.streams = append(pr.streams, s)
			}
		}
	}
	for _, r := range rounds {
		slices.SortFunc(r.streams, func(a, b model.K8sPortForward) int { return int(a.Stream) - int(b.Stream) })
	}
	return rounds
}

// TestKubePortForward (issue 20): kubectl port-forward through interlock,
// over SPDY tunnelled through a websocket (kubectl's default) and over
// SPDY (KUBECTL_PORT_FORWARD_WEBSOCKETS=false): judged once (no fallback
// retry), and each stream journaled when it closes with its port and the
// bytes each way, equal to what the client and the pod's port sent.
func TestKubePortForward(t *testing.T) {
	k := newKubeEnv(t, "")
	// Per connection the pod's port reads what the client sends and
	// answers with a known number of bytes.
	sizes := [][2]int{{70000, 50000}, {1000, 3000}}
	bin := buildKubepf(t)
	for round, ws := range []string{"true", "false"} {
		var conns atomic.Int32
		pod := newPodPort(t, func(c net.Conn) {
			sz := sizes[int(conns.Add(1)-1)%len(sizes)]
			if n, _ := io.Copy(io.Discard, c); n != int64(sz[0]) {
				t.Errorf("websockets=%s: the pod's port read %d bytes, want %d", ws, n, sz[0])
			}
			c.Write(bytes.Repeat([]byte("d"), sz[1]))
		})
		local := testkit.FreePort(t, "127.0.0.1")
		client := func(up int) string {
			return fmt.Sprintf("%s -tcp 127.0.0.1:%d -send %d", bin, local, up)
		}
		// One shell under interlock: the forward in the background, the
		// clients through it one after the other (each half-closes once
		// it has sent all), then the forward stopped.
		logf := filepath.Join(k.dir, "pf-"+ws+".log")
		script := fmt.Sprintf(`KUBECTL_PORT_FORWARD_WEBSOCKETS=%s kubectl --kubeconfig %s port-forward %s %d:%d >%s 2>&1 &
pf=$!
for i in $(seq 100); do grep -q Forwarding %s && break; sleep 0.1; done
%s
%s
kill $pf`, ws, k.kc["alice"], kubetest.PodName, local, pod.port, logf, logf, client(sizes[0][0]), client(sizes[1][0]))
		out, stderr, code := k.runUnder("sh", "-c", script)
		log, _ := os.ReadFile(logf)
		if code != 0 {
			t.Fatalf("websockets=%s: port-forward: exit %d %s %s\n%s", ws, code, out, stderr, log)
		}
		if want := fmt.Sprintf(`{"errors":{},"many_refused":0,"hold_read":0,"tcp_read":%d}
{"errors":{},"many_refused":0,"hold_read":0,"tcp_read":%d}
`, sizes[0][1], sizes[1][1]); out != want {
			t.Errorf("websockets=%s: the clients through the forward got %q, want %q\n%s", ws, out, want, log)
		}
		var rounds []*pfRound
		waitFor(t, func() bool {
			rounds = k.portForwards(t)
			return len(rounds) == round+1 && rounds[round].resp.Code != 0
		})
		// One request: kubectl did not fall back to a second one.
		if len(rounds) != round+1 {
			t.Fatalf("websockets=%s: %d portforward requests journaled, want %d", ws, len(rounds), round+1)
		}
		r := rounds[round]
		if r.req.Name != kubetest.PodName || r.req.User != "alice" || r.req.Decision.Action != model.Allow {
			t.Errorf("websockets=%s: request %+v", ws, r.req)
		}
		if r.resp.Code != 101 || r.resp.Error != "" {
			t.Errorf("websockets=%s: response %+v, want 101 without error", ws, r.resp)
		}
		if len(r.streams) != len(sizes) {
			t.Fatalf("websockets=%s: streams journaled %+v, want %d", ws, r.streams, len(sizes))
		}
		for i, st := range r.streams {
			if st.Stream != uint32(i+1) || st.Port != int32(pod.port) || st.Pod != kubetest.PodName || st.Namespace != "default" ||
				st.BytesUp != int64(sizes[i][0]) || st.BytesDown != int64(sizes[i][1]) || st.Error != "" || st.Refused {
				t.Errorf("websockets=%s: stream %d journaled %+v, want port %d, %d bytes up, %d down", ws, i+1, st, pod.port, sizes[i][0], sizes[i][1])
			}
		}
	}
	// RBAC still judges port-forward, before the client's connection is
	// upgraded: bob may not, and kubectl says so as the API server does.
	pod := newPodPort(t, func(c net.Conn) { c.Write([]byte("hello")) })
	if _, stderr, code := k.kubectl("bob", nil, "port-forward", kubetest.PodName, ":"+strconv.Itoa(pod.port)); code == 0 ||
		!strings.Contains(stderr, "forbidden") {
		t.Errorf("bob's port-forward: exit %d %s", code, stderr)
	}
	if n := pod.accepts.Load(); n != 0 {
		t.Errorf("bob's port-forward reached the pod's port %d times", n)
	}
	for _, r := range k.portForwards(t) {
		if r.req.User == "bob" && (r.resp.Code != 403 || len(r.streams) != 0) {
			t.Errorf("bob's port-forward: response %+v, streams %+v", r.resp, r.streams)
		}
	}
}

// TestKubePortForwardDenied: a deny rule on portforward refuses the
// request before anything is relayed, over both of kubectl's forms:
// kubectl prints the rule, the pod's port sees no connection, and no
// stream is journaled.
func TestKubePortForwardDenied(t *testing.T) {
	k := newKubeEnv(t, `policy:
  rules:
    - name: no-port-forward
      match: {protocols: [kubernetes], operation: {kinds: [portforward]}}
      action: deny
`)
	pod := newPodPort(t, func(c net.Conn) { c.Write([]byte("hello")) })
	for _, ws := range []string{"true", "false"} {
		_, stderr, code := k.kubectl("alice", []string{"KUBECTL_PORT_FORWARD_WEBSOCKETS=" + ws},
			"port-forward", kubetest.PodName, ":"+strconv.Itoa(pod.port))
		if code == 0 || !strings.Contains(stderr, `no-port-forward`) {
			t.Errorf("websockets=%s: denied port-forward: exit %d %s", ws, code, stderr)
		}
	}
	if n := pod.accepts.Load(); n != 0 {
		t.Errorf("the pod's port saw %d connections", n)
	}
	rounds := k.portForwards(t)
	if len(rounds) == 0 {
		t.Fatal("no portforward request journaled")
	}
	for _, r := range rounds {
		if r.req.Decision.Action != model.Deny || r.req.Decision.Rule != "no-port-forward" || len(r.streams) != 0 || r.resp.Code != 403 {
			t.Errorf("request %+v response %+v streams %+v", r.req, r.resp, r.streams)
		}
	}
}

// buildKubepf builds test/e2e/kubepf where a run may execute it.
func buildKubepf(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "kubepf")
	if out, err := exec.Command("go", "build", "-o", bin, "./kubepf").CombinedOutput(); err != nil {
		t.Fatalf("build kubepf: %v\n%s", err, out)
	}
	return bin
}

// kubepfResult is what test/e2e/kubepf prints.
type kubepfResult struct {
	Errors      map[string]string `json:"errors"`
	ManyRefused int               `json:"many_refused"`
	ManyError   string            `json:"many_error"`
	HoldRead    int               `json:"hold_read"`
	Error       string            `json:"error"`
}

// TestKubePortForwardAdversarial: a port-forward client that is not
// kubectl (client-go's dialers, SPDY and tunnelled) asks for some ports
// and opens streams to another (refused, the pod's port sees nothing), to
// a port nothing listens on (the error is journaled with the stream),
// more streams than may be open at once (the excess refused), and exits
// with streams still open (their counts journaled when the connection
// ends).
func TestKubePortForwardAdversarial(t *testing.T) {
	k := newKubeEnv(t, "")
	bin := buildKubepf(t)
	for _, f := range []string{"alice.crt", "alice.key"} {
		b, err := os.ReadFile(filepath.Join(k.c.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(k.dir, f), b, 0o600)
	}
	const greeting, holdBytes, many, maxOpen = 1234, 5000, 136, 128
	// many: each stream is greeted and then held open by the pod.
	manyPort := newPodPort(t, func(c net.Conn) {
		c.Write(make([]byte, greeting))
		io.Copy(io.Discard, c)
	})
	// hold: the greeting once holdBytes arrived, so that the client
	// reading it proves interlock relayed them.
	holdPort := newPodPort(t, func(c net.Conn) {
		io.CopyN(io.Discard, c, holdBytes)
		c.Write(make([]byte, greeting))
		io.Copy(io.Discard, c)
	})
	other := newPodPort(t, func(c net.Conn) { c.Write([]byte("unjudged")) })
	closed := testkit.FreePort(t, "127.0.0.1")
	for round, tunnel := range []bool{false, true} {
		out, stderr, code := k.runUnder(bin, "-server", "https://"+k.c.Host, "-ca", k.trust,
			"-cert", filepath.Join(k.dir, "alice.crt"), "-key", filepath.Join(k.dir, "alice.key"), "-pod", kubetest.PodName,
			"-query", fmt.Sprintf("ports=%d,%d&ports=%d", manyPort.port, holdPort.port, closed), "-tunnel="+strconv.FormatBool(tunnel),
			"-other", strconv.Itoa(other.port), "-closed", strconv.Itoa(closed),
			"-hold", strconv.Itoa(holdPort.port), "-hold-bytes", strconv.Itoa(holdBytes), "-hold-read", strconv.Itoa(greeting),
			"-many", strconv.Itoa(many), "-many-port", strconv.Itoa(manyPort.port))
		var res kubepfResult
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Error != "" {
			t.Fatalf("tunnel=%v: kubepf: exit %d %s %s", tunnel, code, out, stderr)
		}
		if !strings.Contains(res.Errors["other"], "was not in the port-forward request") {
			t.Errorf("tunnel=%v: a stream to a port not asked for: %q", tunnel, res.Errors["other"])
		}
		if !strings.Contains(res.Errors["closed"], "connection refused") {
			t.Errorf("tunnel=%v: a stream to a closed port: %q", tunnel, res.Errors["closed"])
		}
		if res.HoldRead != greeting {
			t.Errorf("tunnel=%v: the held stream read %d bytes, want %d", tunnel, res.HoldRead, greeting)
		}
		// The held stream is open: one fewer of the many fits.
		if want := many - (maxOpen - 1); res.ManyRefused != want || !strings.Contains(res.ManyError, fmt.Sprintf("more than %d streams", maxOpen)) {
			t.Errorf("tunnel=%v: %d of %d streams refused (%q), want %d", tunnel, res.ManyRefused, many, res.ManyError, want)
		}
		var r *pfRound
		waitFor(t, func() bool {
			rounds := k.portForwards(t)
			if len(rounds) != round+1 {
				return false
			}
			r = rounds[round]
			return r.resp.Code != 0
		})
		if r.req.Decision.Action != model.Allow || r.resp.Code != 101 {
			t.Fatalf("tunnel=%v: request %+v response %+v", tunnel, r.req, r.resp)
		}
		byPort := map[int]int{}
		refusedMany := 0
		for _, st := range r.streams {
			byPort[int(st.Port)]++
			switch {
			case st.Port == int32(other.port):
				if !st.Refused || st.BytesUp != 0 || !strings.Contains(st.Error, "was not in the port-forward request") {
					t.Errorf("tunnel=%v: the unjudged port's stream journaled %+v", tunnel, st)
				}
			case st.Port == int32(closed):
				if st.Refused || !strings.Contains(st.Error, "connection refused") {
					t.Errorf("tunnel=%v: the closed port's stream journaled %+v", tunnel, st)
				}
			case st.Port == int32(holdPort.port):
				if st.Refused || st.BytesUp != holdBytes || st.BytesDown != greeting {
					t.Errorf("tunnel=%v: the held stream journaled %+v, want %d up, %d down", tunnel, st, holdBytes, greeting)
				}
			case st.Port == int32(manyPort.port):
				if st.Refused {
					refusedMany++
					if !strings.Contains(st.Error, "more than") {
						t.Errorf("tunnel=%v: a refused stream journaled %+v", tunnel, st)
					}
				} else if st.BytesUp != 0 {
					t.Errorf("tunnel=%v: a stream journaled %+v, want nothing up", tunnel, st)
				}
			}
		}
		want := map[int]int{other.port: 1, closed: 1, holdPort.port: 1, manyPort.port: many}
		if fmt.Sprint(byPort) != fmt.Sprint(want) || refusedMany != many-(maxOpen-1) {
			t.Errorf("tunnel=%v: streams journaled by port %v (%d refused of the many), want %v", tunnel, byPort, refusedMany, want)
		}
		if !strings.Contains(r.resp.Error, "refused") {
			t.Errorf("tunnel=%v: the response's error %q does not say streams were refused", tunnel, r.resp.Error)
		}
	}
	if n := other.accepts.Load(); n != 0 {
		t.Errorf("the port no request named saw %d connections", n)
	}
}

// TestKubePortForwardReview: a review rule holds kubectl port-forward
// before its connection is upgraded (kubectl has not listened yet, so
// nothing reaches the pod); approved, the forward carries a connection;
// denied, kubectl prints the rule, and its SPDY retry takes the denial
// without a second request for the approvers.
func TestKubePortForwardReview(t *testing.T) {
	k := newKubeEnv(t, `policy:
  rules:
    - name: hold-port-forward
      match: {protocols: [kubernetes], operation: {kinds: [portforward]}}
      action: review
      review:
        approvers: [daemon]
        timeout: 60s
`)
	bin := buildKubepf(t)
	pod := newPodPort(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write([]byte("through"))
	})
	start := func(local int) (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(interlockBin, "run", "-c", k.cfgPath, "--", "kubectl", "--kubeconfig", k.kc["alice"],
			"port-forward", kubetest.PodName, fmt.Sprintf("%d:%d", local, pod.port))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 10 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, &out
	}
	decide := func(verdict string) model.ApprovalRequest {
		t.Helper()
		req := k.heldOne(t)
		if req.Rule != "hold-port-forward" || req.Operation.Kind != "portforward" || req.Operation.Name != kubetest.PodName ||
			req.Operation.Detail != "ports: any" {
			t.Errorf("held request %+v", req.Operation)
		}
		before := pod.accepts.Load()
		time.Sleep(300 * time.Millisecond)
		if n := pod.accepts.Load() - before; n != 0 {
			t.Errorf("the pod's port saw %d connections while the forward was held", n)
		}
		k.decide(t, req.ID, verdict, "test")
		return req
	}

	local := testkit.FreePort(t, "127.0.0.1")
	cmd, out := start(local)
	decide("approve")
	waitFor(t, func() bool { return strings.Contains(out.String(), "Forwarding from") })
	res, stderr, code := k.runUnder(bin, "-tcp", fmt.Sprintf("127.0.0.1:%d", local), "-send", "100")
	if code != 0 || !strings.Contains(res, `"tcp_read":7`) {
		t.Errorf("through the approved forward: exit %d %s %s\n%s", code, res, stderr, out.String())
	}
	// Stopped so that the run removes its approvals socket (a killed
	// run's stale socket fails the next decision).
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	cmd, out = start(testkit.FreePort(t, "127.0.0.1"))
	req := decide("deny")
	if err := cmd.Wait(); err == nil || !strings.Contains(out.String(), `policy rule "hold-port-forward"`) || !strings.Contains(out.String(), req.ID) {
		t.Errorf("denied port-forward: %v: kubectl does not name the rule and request %s: %s", err, req.ID, out.String())
	}
	if list := k.pending(t); len(list) != 0 {
		t.Errorf("requests pending after the denial: %+v", list)
	}
	var approved, denied int
	var streams []model.K8sPortForward
	waitFor(t, func() bool {
		approved, denied, streams = 0, 0, nil
		for _, r := range k.portForwards(t) {
			switch r.req.Decision.Action {
			case model.Allow:
				approved++
			case model.Deny:
				denied++
			}
			streams = append(streams, r.streams...)
		}
		return len(streams) == 1
	})
	// The denial's second attempt is kubectl's SPDY retry.
	if approved != 1 || denied != 2 || len(streams) != 1 || streams[0].BytesUp != 100 || streams[0].BytesDown != 7 {
		t.Errorf("journaled: %d approved, %d denied requests, streams %+v", approved, denied, streams)
	}
	if n := pod.accepts.Load(); n != 1 {
		t.Errorf("the pod's port saw %d connections, want 1", n)
	}
}
