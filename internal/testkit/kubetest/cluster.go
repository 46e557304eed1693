// Package kubetest runs a real Kubernetes control plane for tests: Debian's
// etcd, a kube-apiserver built from the k8s.io/kubernetes module (make deps
// caches it; INTERLOCK_KUBE_APISERVER names the binary), certificates the
// test makes, and a fake kubelet that serves exec, attach and
// port-forward for a Node on 127.0.0.1 by running commands on this host.
package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/interlock/interlock/internal/testkit"
)

// APIServerEnv names the kube-apiserver binary the Makefile builds.
const APIServerEnv = "INTERLOCK_KUBE_APISERVER"

// Prerequisites returns why the cluster cannot start here (nil: it can):
// the kube-apiserver binary, etcd, and kubectl.
func Prerequisites() error {
	bin := os.Getenv(APIServerEnv)
	if bin == "" {
		return fmt.Errorf("%s is not set (make deps builds kube-apiserver and the Makefile exports it)", APIServerEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("kube-apiserver: %w (make deps builds it)", err)
	}
	for _, p := range []string{"etcd", "kubectl"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// Cluster is a running API server with its etcd and kubelet.
type Cluster struct {
	Dir string
	// Host is the API server's address, host:port on 127.0.0.1.
	Host string
	// CA signs the API server's and kubelet's serving certificates and
	// every client certificate; Admin is in system:masters.
	CA      *CA
	Admin   Pair
	Kubelet *Kubelet
	// Client is the admin's clientset.
	Client *kubernetes.Clientset

	procs []*proc
}

// proc is a control-plane process; done closes when it exits.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *testkit.SyncBuffer
	done chan struct{}
}

// Node and the pods every cluster starts with: Pod "shell" in namespaces
// default and prod (the one in prod privileged), container "main".
const (
	NodeName  = "node1"
	PodName   = "shell"
	Container = "main"
)

// Start starts etcd, the API server and the kubelet in dir and makes the
// node and pods. Stop ends them.
func Start(ctx context.Context, dir string) (c *Cluster, err error) {
	if err := Prerequisites(); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir}
	// The error returns set c to nil: keep the cluster for its logs.
	started := c
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, started.Logs())
			started.Stop()
		}
	}()
	if c.CA, err = NewCA(dir, "cluster"); err != nil {
		return nil, err
	}
	serving, err := c.CA.Issue("apiserver", nil, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc")
	if err != nil {
		return nil, err
	}
	kubeletServing, err := c.CA.Issue("kubelet", nil, "127.0.0.1")
	if err != nil {
		return nil, err
	}
	kubeletClient, err := c.CA.Issue("apiserver-kubelet-client", []string{"system:masters"})
	if err != nil {
		return nil, err
	}
	if c.Admin, err = c.CA.Issue("admin", []string{"system:masters"}); err != nil {
		return nil, err
	}
	saPub, saKey, err := serviceAccountKeys(dir)
	if err != nil {
		return nil, err
	}
	etcdURL, err := c.startEtcd()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.Host = "127.0.0.1:" + strconv.Itoa(port)
	c.start("kube-apiserver", os.Getenv(APIServerEnv),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--tls-cert-file="+serving.CertFile, "--tls-private-key-file="+serving.KeyFile,
		"--client-ca-file="+c.CA.CertFile,
		"--authorization-mode=RBAC", "--allow-privileged=true",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		"--kubelet-client-certificate="+kubeletClient.CertFile, "--kubelet-client-key="+kubeletClient.KeyFile,
		"--kubelet-preferred-address-types=InternalIP",
		// No controller manager runs: pods are made without the default
		// service account's token.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
	)
	cfg := c.RESTConfig(c.Admin)
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	if c.Kubelet, err = StartKubelet(kubeletServing); err != nil {
		return nil, err
	}
	return c, c.makeObjects(ctx)
}

// RESTConfig is a client configuration that logs in with pair.
func (c *Cluster) RESTConfig(pair Pair) *rest.Config {
	caPEM, _ := os.ReadFile(c.CA.CertFile)
	return &rest.Config{Host: "https://" + c.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: caPEM, CertData: pair.CertPEM, KeyData: pair.KeyPEM,
	}}
}

func (c *Cluster) startEtcd() (string, error) {
	client, err := freePort()
	if err != nil {
		return "", err
	}
	peer, err := freePort()
	if err != nil {
		return "", err
	}
	cu := "http://127.0.0.1:" + strconv.Itoa(client)
	pu := "http://127.0.0.1:" + strconv.Itoa(peer)
	c.start("etcd", "etcd", "--data-dir="+filepath.Join(c.Dir, "etcd"), "--name=kubetest",
		"--listen-client-urls="+cu, "--advertise-client-urls="+cu,
		"--listen-peer-urls="+pu, "--initial-advertise-peer-urls="+pu,
		"--initial-cluster=kubetest="+pu, "--unsafe-no-fsync")
	return cu, nil
}

func (c *Cluster) start(name, bin string, args ...string) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), log: &testkit.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// The control plane dies with the test binary, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.procs = append(c.procs, p)
	if err := p.cmd.Start(); err != nil {
		fmt.Fprintf(p.log, "start %s: %v\n", name, err)
		close(p.done)
		return
	}
	go func() { p.cmd.Wait(); close(p.done) }()
}

func (c *Cluster) waitReady(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil {
			return nil
		}
		last = fmt.Errorf("%w: %s", err, body)
		for _, p := range c.procs {
			select {
			case <-p.done:
				return fmt.Errorf("kubetest: %s exited", p.name)
			default:
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: API server not ready in %s: %v", within, last)
}

// makeObjects makes the node, namespace prod and the pods.
func (c *Cluster) makeObjects(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(c.Kubelet.Addr)
	p, _ := strconv.Atoi(port)
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kubetest: create node: %w", err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(p)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
	}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubetest: node status: %w", err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubetest: create namespace: %w", err)
	}
	for _, ns := range []string{"default", "prod"} {
		if err := c.MakePod(ctx, ns, PodName, ns == "prod"); err != nil {
			return err
		}
	}
	return nil
}

// MakePod makes a running pod bound to the node.
func (c *Cluster) MakePod(ctx context.Context, ns, name string, privileged bool) error {
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:                     NodeName,
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: Container, Image: "busybox",
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged}}},
		},
	}
	pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kubetest: create pod %s/%s: %w", ns, name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: Container, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("kubetest: pod status %s/%s: %w", ns, name, err)
	}
	return nil
}

// Logs are the control plane's output so far, for a failing test.
func (c *Cluster) Logs() string {
	var b bytes.Buffer
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, testkit.Tail(p.log.String(), 4000))
	}
	return b.String()
}

// Stop kills what Start started.
func (c *Cluster) Stop() {
	if c.Kubelet != nil {
		c.Kubelet.Close()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.cmd.Process != nil {
			p.cmd.Process.Kill()
		}
		<-p.done
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
