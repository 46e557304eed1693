package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
)

// TestKubeExec (issue 20): kubectl exec through interlock, over websocket
// v5 and with SPDY forced: the output and the exit code reach kubectl,
// the command runs exactly once (kubectl's fallback from websockets to
// SPDY would run it twice if the client leg did not speak v5), and the
// stream is recorded: the command, stdout, stderr, the exit code.
func TestKubeExec(t *testing.T) {
	k := newKubeEnv(t, "")
	for _, ws := range []string{"true", "false"} {
		marker := "marker-ws-" + ws
		out, stderr, code := k.kubectl("alice", []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=" + ws},
			"exec", kubetest.PodName, "--", "sh", "-c", "echo out "+marker+"; echo err >&2; exit 3")
		if code != 3 || out != "out "+marker+"\n" || !strings.Contains(stderr, "err\n") {
			t.Errorf("websockets=%s: exit %d, stdout %q, stderr %q", ws, code, out, stderr)
		}
		if n := k.c.Kubelet.ExecCount(marker); n != 1 {
			t.Errorf("websockets=%s: the command ran %d times, want 1", ws, n)
		}
		var execs []model.K8sExec
		for _, x := range entriesOf[model.K8sExec](k.env, model.KindK8sExec) {
			if strings.Contains(strings.Join(x.Command, " "), marker) {
				execs = append(execs, x)
			}
		}
		if len(execs) != 1 || execs[0].Namespace != "default" || execs[0].Pod != kubetest.PodName {
			t.Fatalf("websockets=%s: exec records %+v, want one", ws, execs)
		}
		wantProto := "v5.channel.k8s.io (websocket)"
		if ws == "false" {
			wantProto = "spdy"
		}
		if execs[0].Protocol != wantProto {
			t.Errorf("websockets=%s: client leg %q, want %q", ws, execs[0].Protocol, wantProto)
		}
		// The session that ran it: its output and exit are recorded.
		var session string
		for _, en := range k.entries() {
			if en.Kind == model.KindK8sExec && strings.Contains(string(en.Data), marker) {
				session = en.Session
			}
		}
		streams := map[string]string{}
		exit := -1
		for _, en := range k.entries() {
			if en.Session != session {
				continue
			}
			switch en.Kind {
			case model.KindK8sIO:
				io := decodeJSON[model.SSHIO](t, en.Data)
				streams[io.Stream] += string(payload(k.env, en.Seq))
			case model.KindK8sExit:
				if x := decodeJSON[model.SSHExit](t, en.Data); x.ExitStatus != nil {
					exit = *x.ExitStatus
				}
			}
		}
		if streams["o"] != "out "+marker+"\n" || streams["e"] != "err\n" || exit != 3 {
			t.Errorf("websockets=%s: recorded stdout %q stderr %q exit %d", ws, streams["o"], streams["e"], exit)
		}
		// It replays.
		if out, stderr, code := k.interlock("sessions", "export", "-c", k.cfgPath, session); code != 0 || !strings.Contains(out, "out "+marker) {
			t.Errorf("websockets=%s: replay: exit %d\n%s\n%s", ws, code, out, stderr)
		}
		// The request has a line of its own, and its response (journaled
		// as the stream ends, which kubectl need not wait for).
		deadline := time.Now().Add(10 * time.Second)
		for !hasEntry(k, session, model.KindK8sResponse) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		request := `exec pods/exec in "default" name "` + kubetest.PodName + `", group core/v1, as `
		if out, stderr, code := k.interlock("sessions", "show", "-c", k.cfgPath, session); code != 0 || !strings.Contains(out, "out "+marker+`\n`) ||
			!strings.Contains(out, "exit status 3") || !strings.Contains(out, "k8s request ") || !strings.Contains(out, request) ||
			!strings.Contains(out, "k8s response ") {
			t.Errorf("websockets=%s: sessions show: exit %d\n%s\n%s", ws, code, out, stderr)
		}
		if ws == "true" {
			kubeExportViews(t, k, session, request)
		}
	}
	// RBAC still judges exec: bob may not.
	if _, stderr, code := k.kubectl("bob", nil, "exec", kubetest.PodName, "--", "echo", "bob-was-here"); code == 0 || k.c.Kubelet.ExecCount("bob-was-here") != 0 {
		t.Errorf("bob's exec: exit %d, ran %d times: %s", code, k.c.Kubelet.ExecCount("bob-was-here"), stderr)
	}
}

// kubeExportViews: the session's exec is a row of the bundle's summary
// with its command's exit, and an API Activity event of its OCSF export.
func kubeExportViews(t *testing.T, k *kubeEnv, session, request string) {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if _, stderr, code := k.interlock("journal", "export", "-q", "-c", k.cfgPath, "--session", session, "--out", bundle); code != 0 {
		t.Fatalf("journal export: exit %d %s", code, stderr)
	}
	var summary string
	for name, body := range testkit.ReadTarGz(t, bundle) {
		if strings.HasSuffix(name, "summary.html") {
			summary = string(body)
		}
	}
	for _, w := range []string{`data-kind="k8s exec" data-outcome="allow"`, strings.ReplaceAll(strings.TrimSuffix(request, ", as "), `"`, "&#34;"), "exit status 3"} {
		if !strings.Contains(summary, w) {
			t.Errorf("summary.html lacks %q", w)
		}
	}
	ocsf := filepath.Join(t.TempDir(), "events.jsonl")
	if _, stderr, code := k.interlock("journal", "export", "-q", "-c", k.cfgPath, "--session", session, "--format", "ocsf", "--out", ocsf); code != 0 {
		t.Fatalf("journal export --format ocsf: exit %d %s", code, stderr)
	}
	b, err := os.ReadFile(ocsf)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var ev struct {
			ClassUID int `json:"class_uid"`
			API      struct {
				Operation string `json:"operation"`
				Response  *struct {
					Code int `json:"code"`
				} `json:"response"`
			} `json:"api"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("OCSF line %q: %v", line, err)
		}
		if ev.ClassUID == 6003 && ev.API.Operation == "exec" {
			codes[fmt.Sprint(ev.API.Response != nil)] = true
		}
	}
	if !codes["false"] || !codes["true"] {
		t.Errorf("OCSF: the exec's request and response are not both API Activity:\n%s", b)
	}
}

func hasEntry(k *kubeEnv, session, kind string) bool {
	for _, en := range k.entries() {
		if en.Session == session && en.Kind == kind {
			return true
		}
	}
	return false
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// TestKubeCopy: kubectl cp both ways through interlock (tar over exec,
// stdin and stdout), 10 MiB each, with equal checksums; the bytes of
// both directions are recorded.
func TestKubeCopy(t *testing.T) {
	requireTools(t, "tar")
	k := newKubeEnv(t, "")
	data := make([]byte, 10<<20)
	rand.Read(data)
	src := filepath.Join(k.dir, "up.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The "pod" is this host: the copy lands in a directory of the test.
	podDir := t.TempDir()
	if out, stderr, code := k.kubectl("alice", nil, "cp", src, kubetest.PodName+":"+podDir+"/in.bin"); code != 0 {
		t.Fatalf("cp up: exit %d %s %s", code, out, stderr)
	}
	got, err := os.ReadFile(filepath.Join(podDir, "in.bin"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("cp up: the copy differs (%d bytes, %v)", len(got), err)
	}
	back := filepath.Join(k.dir, "down.bin")
	if out, stderr, code := k.kubectl("alice", nil, "cp", kubetest.PodName+":"+podDir+"/in.bin", back); code != 0 {
		t.Fatalf("cp down: exit %d %s %s", code, out, stderr)
	}
	got, err = os.ReadFile(back)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("cp down: the copy differs (%d bytes, %v)", len(got), err)
	}
	var in, out int
	for _, io := range entriesOf[model.SSHIO](k.env, model.KindK8sIO) {
		switch io.Stream {
		case "i":
			in += io.Bytes
		case "o":
			out += io.Bytes
		}
	}
	if in < len(data) || out < len(data) {
		t.Errorf("recorded %d bytes in, %d out; want at least %d each", in, out, len(data))
	}
}

// TestKubeExecTTY: kubectl exec -it in a terminal (tmux): what the person
// typed and saw is recorded, with the terminal's size, and replays.
func TestKubeExecTTY(t *testing.T) {
	k := newKubeEnv(t, "")
	tm := newTmux(t, k.dir)
	done := filepath.Join(k.dir, "tty-done")
	tm.open("kube", interlockBin+" run -c "+k.cfgPath+" -- kubectl --kubeconfig "+k.kc["alice"]+" exec -it "+kubetest.PodName+" -- env PS1=ktty: sh", done)
	tm.waitFor("kube", "ktty:")
	tm.keys("kube", "-l", "echo typed-$((6*7))")
	tm.keys("kube", "Enter")
	tm.waitFor("kube", "typed-42")
	tm.keys("kube", "-l", "exit 5")
	tm.keys("kube", "Enter")
	waitFor(t, func() bool { _, err := os.Stat(done); return err == nil })
	var session string
	var ex model.K8sExec
	for _, en := range k.entries() {
		if en.Kind == model.KindK8sExec {
			session, ex = en.Session, decodeJSON[model.K8sExec](t, en.Data)
		}
	}
	if !ex.TTY || !ex.Stdin {
		t.Fatalf("exec record %+v, want a tty with stdin", ex)
	}
	exits := entriesOf[model.SSHExit](k.env, model.KindK8sExit)
	if len(exits) != 1 || exits[0].ExitStatus == nil || *exits[0].ExitStatus != 5 {
		t.Errorf("exit records %+v, want 5", exits)
	}
	if len(entriesOf[model.SSHResize](k.env, model.KindK8sResize)) == 0 {
		t.Errorf("no terminal size recorded")
	}
	cast, stderr, code := k.interlock("sessions", "export", "-c", k.cfgPath, session)
	if code != 0 {
		t.Fatalf("export: exit %d %s", code, stderr)
	}
	for _, want := range []string{`"i", `, `typed-$((6*7))`, `typed-42`, `"r", "100x30"`} {
		if !strings.Contains(cast, want) {
			t.Errorf("the cast lacks %s:\n%s", want, cast)
		}
	}
}
