package kubernetes

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/tlsca"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/internal/testkit/kubetest"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/test/testenv"
)

// served is a kubernetes handler in front of a real API server, and a
// client config for user through it.
type served struct {
	c       *kubetest.Cluster
	journal *testkit.Journal
	client  *kubernetes.Clientset
	cfg     *rest.Config
}

func serve(t *testing.T) *served { t.Helper(); return serveWith(t, nil) }

// serveWith is serve with the target's kubernetes section changed by set.
func serveWith(t *testing.T, set func(*config.KubernetesConfig)) *served {
	t.Helper()
	return serveThrough(t, set, nil)
}

// serveThrough is serveWith with the handler's journal wrapped by wrap
// (when not nil); served.journal is what it wraps.
func serveThrough(t *testing.T, set func(*config.KubernetesConfig), wrap func(model.Recorder) model.Recorder) *served {
	t.Helper()
	testenv.Require(t, "kubernetes test cluster", kubetest.Prerequisites())
	ctx := context.Background()
	dir := t.TempDir()
	c, err := kubetest.Start(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.Grant(ctx, "interlock"); err != nil {
		t.Fatal(err)
	}
	self, err := c.CA.Issue("interlock", nil)
	if err != nil {
		t.Fatal(err)
	}
	user, err := c.CA.Issue("alice", []string{kubetest.DevGroup})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	state := filepath.Join(dir, "state")
	tc := config.TargetConfig{Name: "k8s", Protocol: model.ProtoKubernetes, Address: c.Host,
		Kubernetes: &config.KubernetesConfig{CAFile: c.CA.CertFile, ClientCAFile: c.CA.CertFile,
			ClientCertificateFile: self.CertFile, ClientKeyFile: self.KeyFile,
			// The client reaches the handler at the listener's address.
			ServerNames: []string{"127.0.0.1"}}}
	if set != nil {
		set(tc.Kubernetes)
	}
	j := &testkit.Journal{}
	var rec model.Recorder = j
	if wrap != nil {
		rec = wrap(j)
	}
	h, err := New(Options{Deps: inspect.Deps{Config: &config.Config{StateDir: state, Targets: []config.TargetConfig{tc}}, Journal: rec}})
	if err != nil {
		t.Fatal(err)
	}
	life := &inspect.Lifecycle{Journal: rec}
	go func() {
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s := &inspect.Session{ID: "s" + string(rune('a'+i%26)), Origin: model.Origin{Target: model.Target{Name: "k8s", Protocol: model.ProtoKubernetes}}}
			go life.Serve(ctx, h, conn, s)
		}
	}()
	ca, err := os.ReadFile(tlsca.CAPath(state))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: "https://" + ln.Addr().String(), Timeout: 20 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca, CertData: user.CertPEM, KeyData: user.KeyPEM}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &served{c: c, journal: j, client: cs, cfg: cfg}
}

// TestJournalFailureRefuses: a request the journal cannot record never
// reaches the API server; the client is refused with 503.
func TestJournalFailureRefuses(t *testing.T) {
	s := serve(t)
	ctx := context.Background()
	if _, err := s.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list through the handler: %v", err)
	}
	reqs := testkit.Data[model.K8sRequest](s.journal, model.KindK8sRequest)
	if len(reqs) == 0 || reqs[len(reqs)-1].User != "alice" || reqs[len(reqs)-1].Verb != "list" {
		t.Fatalf("journaled %+v", reqs)
	}
	s.journal.Fail(errors.New("disk gone"))
	_, err := s.client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unrecorded"}}, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "journal cannot record") {
		t.Errorf("create with a failing journal: %v", err)
	}
	if _, err := s.c.Client.CoreV1().ConfigMaps("default").Get(ctx, "unrecorded", metav1.GetOptions{}); err == nil {
		t.Errorf("the unrecorded create reached the API server")
	}
}

// TestExecBothLegs runs an exec through the handler over websocket v5 and
// SPDY (under -race in make test): output, exit code and the records.
func TestExecBothLegs(t *testing.T) {
	s := serve(t)
	for _, proto := range []string{"websocket", "spdy"} {
		marker := "leg-" + proto
		u := s.cfg.Host + "/api/v1/namespaces/default/pods/" + kubetest.PodName + "/exec?container=" + kubetest.Container +
			"&stdout=true&stderr=true&command=sh&command=-c&command=" + url.QueryEscape("echo "+marker+"; exit 2")
		var exe remotecommand.Executor
		var err error
		if proto == "websocket" {
			exe, err = remotecommand.NewWebSocketExecutor(s.cfg, "GET", u)
		} else {
			pu, _ := url.Parse(u)
			exe, err = remotecommand.NewSPDYExecutor(s.cfg, "POST", pu)
		}
		if err != nil {
			t.Fatal(err)
		}
		var out, errb strings.Builder
		err = exe.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
		var code utilexec.ExitError
		if !errors.As(err, &code) || code.ExitStatus() != 2 || out.String() != marker+"\n" {
			t.Errorf("%s: err %v, stdout %q, stderr %q", proto, err, out.String(), errb.String())
		}
		if n := s.c.Kubelet.ExecCount(marker); n != 1 {
			t.Errorf("%s: ran %d times", proto, n)
		}
	}
	if n := len(testkit.Data[model.K8sExec](s.journal, model.KindK8sExec)); n != 2 {
		t.Errorf("%d k8s.exec records, want 2", n)
	}
	exits := testkit.Data[model.SSHExit](s.journal, model.KindK8sExit)
	if len(exits) != 2 || exits[0].ExitStatus == nil || *exits[0].ExitStatus != 2 {
		t.Errorf("exit records %+v", exits)
	}
}
