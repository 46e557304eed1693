package kubetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// Kubelet is a fake kubelet: it serves what the API server forwards to a
// node for exec, attach and port-forward, with the real streaming server
// code the kubelet uses, and runs each exec's command on this host. Its
// Node is 127.0.0.1; every pod "runs" here.
type Kubelet struct {
	// Addr is host:port of its HTTPS server.
	Addr string

	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	execs [][]string
}

// StartKubelet serves on a free port of 127.0.0.1 with the serving pair.
func StartKubelet(serving Pair) (*Kubelet, error) {
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("kubetest: kubelet certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kubetest: kubelet listen: %w", err)
	}
	k := &Kubelet{Addr: ln.Addr().String(), ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.exec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", k.attach)
	mux.HandleFunc("/portForward/{ns}/{pod}", k.portForward)
	k.srv = &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, ReadHeaderTimeout: 10 * time.Second}
	go k.srv.ServeTLS(ln, "", "")
	return k, nil
}

// Close stops the server.
func (k *Kubelet) Close() error { return k.srv.Close() }

// Execs are the commands run so far, in order.
func (k *Kubelet) Execs() [][]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]string(nil), k.execs...)
}

// ExecCount counts the executions of the commands whose joined words
// contain marker.
func (k *Kubelet) ExecCount(marker string) int {
	n := 0
	for _, c := range k.Execs() {
		if strings.Contains(strings.Join(c, " "), marker) {
			n++
		}
	}
	return n
}

var streamProtocols = []string{
	remotecommand.StreamProtocolV4Name, remotecommand.StreamProtocolV3Name,
	remotecommand.StreamProtocolV2Name, remotecommand.StreamProtocolV1Name,
}

func (k *Kubelet) exec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, hostExecutor{k}, r.PathValue("pod"), "", r.PathValue("container"),
		r.URL.Query()["command"], opts, time.Hour, 30*time.Second, streamProtocols)
}

// attach attaches to the pod's "main process": a cat, so what the client
// types comes back on stdout.
func (k *Kubelet) attach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, hostAttacher{k}, r.PathValue("pod"), "", r.PathValue("container"),
		opts, time.Hour, 30*time.Second, streamProtocols)
}

func (k *Kubelet) portForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, loopbackForwarder{}, r.PathValue("pod"), "", opts, time.Hour, 30*time.Second,
		[]string{portforward.ProtocolV1Name})
}

type hostExecutor struct{ k *Kubelet }

// ExecInContainer runs cmd on the host; a non-zero exit is returned as
// the ExitError the streaming server turns into the exit-code Status.
func (h hostExecutor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	h.k.mu.Lock()
	h.k.execs = append(h.k.execs, cmd)
	h.k.mu.Unlock()
	if len(cmd) == 0 {
		return errors.New("kubetest: empty command")
	}
	return run(ctx, exec.CommandContext(ctx, cmd[0], cmd[1:]...), in, out, errw, tty, resize)
}

type hostAttacher struct{ k *Kubelet }

func (h hostAttacher) AttachContainer(ctx context.Context, _, _, _ string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return run(ctx, exec.CommandContext(ctx, "cat"), in, out, errw, tty, resize)
}

func run(ctx context.Context, c *exec.Cmd, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if tty {
		return runTTY(ctx, c, in, out, resize)
	}
	if in != nil {
		c.Stdin = in
	}
	if out != nil {
		c.Stdout = out
	}
	if errw != nil {
		c.Stderr = errw
	}
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

type loopbackForwarder struct{}

// PortForward connects the stream to port on this host's loopback.
func (loopbackForwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(c, stream); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(stream, c); done <- struct{}{} }()
	<-done
	<-done
	return nil
}
