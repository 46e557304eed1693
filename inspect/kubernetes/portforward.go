package kubernetes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	pfsrv "k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream/wsstream"

	"github.com/interlock/interlock/model"
)

// A port-forward is terminated on both legs, as an exec is: interlock
// serves the client's streams itself with the kubelet's own streaming
// server (cri-streaming: SPDY, websocket v4) and opens each as a stream
// pair of its own SPDY connection to the API server, so it can count each
// stream's bytes. kubectl 1.31+ first asks for SPDY tunnelled through a
// websocket; that is served too, as the API server serves it, so kubectl
// never falls back and the request is judged once.
const (
	// maxOpenStreams caps a port-forward's streams open at once: each
	// holds an upstream stream pair, and the client opens them at will.
	maxOpenStreams = 128
	// maxRefusalRecords caps the refused streams journaled one by one;
	// past it they are only counted, in the request's k8s.response.
	maxRefusalRecords = 16
	// A stream's other direction is waited for this long once one has
	// ended, and the API server's error stream this long after that.
	halfCloseWait  = 2 * time.Second
	errStreamWait  = 5 * time.Second
	tunnelProtocol = pfconst.WebsocketsSPDYTunnelingPortForwardV1
)

// judgedPorts is the ports a port-forward request names in its query
// (the kubelet's websocket form must; kubectl's SPDY and tunnelled forms
// do not): nil when it names none. Policy judged the request with them,
// so a stream for another port is refused.
func judgedPorts(q url.Values) (map[int32]bool, error) {
	var ports map[int32]bool
	for _, v := range q["ports"] {
		for _, s := range strings.Split(v, ",") {
			p, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
			if err != nil || p == 0 {
				return nil, fmt.Errorf("invalid port %q in the ports query", s)
			}
			if ports == nil {
				ports = map[int32]bool{}
			}
			ports[int32(p)] = true
		}
	}
	return ports, nil
}

// portsText is what policy and approvers are shown of the ports: those
// the query names, or that any port may be forwarded to.
func portsText(q url.Values) string {
	ports, err := judgedPorts(q)
	if err != nil {
		return "ports: invalid"
	}
	if ports == nil {
		return "ports: any"
	}
	var ps []int
	for p := range ports {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	return "ports: " + strings.Join(s, ",")
}

// servePortForward serves a port-forward the policy allowed. It returns
// the code and error journaled for the request, once every stream has
// been journaled; up is called once the client's connection is upgraded.
// pod is the facts policy judged: the pod is read again before and after
// the upstream connection is opened, which the API server and the
// kubelet resolve the pod's name for; the same pod (its UID) on both
// sides of it is the pod they resolved.
func (x *session) servePortForward(w http.ResponseWriter, r *http.Request, ri reqInfo, seq uint64, pod *model.K8sPod, up func()) (int, string) {
	bad := func(msg string) (int, string) {
		body := statusJSON(http.StatusBadRequest, msg)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, body)
		return http.StatusBadRequest, msg
	}
	ports, err := judgedPorts(r.URL.Query())
	if err != nil {
		return bad(err.Error())
	}
	pf := &portForward{x: x, ri: ri, seq: seq, ports: ports, who: x.callerOf(r.Context())}
	// The API server is asked first: a refusal of its own (RBAC, no such
	// pod) reaches the client as the answer to its request, as it would
	// without interlock, and no client stream is opened for nothing.
	fail := func(code int, err error) (int, string) {
		body := statusJSON(code, err.Error())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
		return code, err.Error()
	}
	if err := x.recheckPod(r.Context(), ri.namespace, ri.name, pod); err != nil {
		return fail(http.StatusConflict, err)
	}
	if _, err := pf.upstream(); err != nil {
		code := pf.dialCode
		if code < 400 {
			code = http.StatusBadGateway
		}
		return fail(code, err)
	}
	if err := x.recheckPod(r.Context(), ri.namespace, ri.name, pod); err != nil {
		pf.end()
		return fail(http.StatusConflict, err)
	}
	hw := &hijackWatch{ResponseWriter: w, up: up}
	switch {
	case wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		if !slices.Contains(gwebsocket.Subprotocols(r), tunnelProtocol) {
			return bad("interlock: no tunnelled port-forward protocol this server speaks (" + tunnelProtocol + ")")
		}
		x.serveTunnel(hw, r, pf)
	default:
		opts, err := pfsrv.NewV4Options(r)
		if err != nil {
			return bad(err.Error())
		}
		pfsrv.ServePortForward(hw, r, pf, ri.name, "", opts, streamIdle, streamCreation, []string{portforward.PortForwardProtocolV1Name})
	}
	pf.end()
	if !hw.hijacked {
		return http.StatusBadRequest, "the client's stream could not be set up"
	}
	return http.StatusSwitchingProtocols, pf.failed()
}

// serveTunnel serves SPDY tunnelled through a websocket (client-go's
// tunneling dialer) as the API server's TunnelingHandler does: the
// websocket is upgraded with the tunnelled subprotocol, client-go's
// TunnelingConnection carries the SPDY bytes in its messages, and the
// kubelet's SPDY server takes that connection over through tunnelWriter.
func (x *session) serveTunnel(w http.ResponseWriter, r *http.Request, pf *portForward) {
	upgrader := gwebsocket.Upgrader{Subprotocols: []string{tunnelProtocol}}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered the client.
		x.log.Info("port-forward: websocket upgrade", "err", err)
		return
	}
	conn := portforward.NewTunnelingConnection("interlock", ws)
	defer conn.Close()
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		req.Header.Del(h)
	}
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, "SPDY/3.1")
	req.Header.Set(httpstream.HeaderProtocolVersion, portforward.PortForwardProtocolV1Name)
	pfsrv.ServePortForward(&tunnelWriter{conn: conn, h: http.Header{}}, req, pf, pf.ri.name, "", &pfsrv.V4Options{},
		streamIdle, streamCreation, []string{portforward.PortForwardProtocolV1Name})
}

// tunnelWriter hands the SPDY server the tunnelled connection. The
// websocket handshake has already answered the client: the SPDY
// upgrade's own 101 has no place in the tunnel and is dropped.
type tunnelWriter struct {
	conn net.Conn
	h    http.Header
}

func (t *tunnelWriter) Header() http.Header { return t.h }
func (t *tunnelWriter) WriteHeader(int)     {}
func (t *tunnelWriter) Write([]byte) (int, error) {
	return 0, errors.New("interlock: the tunnelled connection has no response body")
}

func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}

// hijackWatch notes that the client's connection was taken over, which
// the SPDY and websocket upgrades do once they succeed.
type hijackWatch struct {
	http.ResponseWriter
	up       func()
	hijacked bool
}

func (h *hijackWatch) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("interlock: the connection cannot be taken over")
	}
	c, rw, err := hj.Hijack()
	if err == nil && !h.hijacked {
		h.hijacked = true
		h.up()
	}
	return c, rw, err
}

// portForward forwards one port-forward request's streams upstream and
// journals each. It implements cri-streaming's PortForwarder.
type portForward struct {
	x   *session
	ri  reqInfo
	seq uint64
	// ports are the ports policy judged; nil: any.
	ports map[int32]bool

	streams atomic.Uint32
	mu      sync.Mutex
	open    int
	ended   bool
	running sync.WaitGroup
	// who is whom the upstream connection calls as.
	who      identity
	conn     httpstream.Connection
	dialErr  error
	dialCode int
	// errs are the first maxRefusalRecords streams that failed or were
	// refused, for the response; failures and refusals count them all.
	errs     []string
	failures int
	refused  int
}

// upstream is the SPDY connection to the API server's portforward, made
// as the request's caller (interlock impersonating the session's identity,
// or the client's own bearer token), dialed once.
func (p *portForward) upstream() (httpstream.Connection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil || p.dialErr != nil {
		return p.conn, p.dialErr
	}
	if p.ended {
		return nil, errors.New("interlock: the port-forward has ended")
	}
	u := p.x.t.upstream
	tr, upgrader, err := spdy.RoundTripperFor(u.restConfig(p.who))
	if err != nil {
		p.dialErr = fmt.Errorf("interlock: upstream port-forward: %w", err)
		return nil, p.dialErr
	}
	target := &url.URL{Scheme: u.base.Scheme, Host: u.base.Host,
		Path: "/api/v1/namespaces/" + p.ri.namespace + "/pods/" + p.ri.name + "/portforward"}
	// The status is kept: client-go's error carries only the message.
	client := &http.Client{Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
		res, err := tr.RoundTrip(req)
		if res != nil {
			p.dialCode = res.StatusCode
		}
		return res, err
	})}
	conn, _, err := spdy.NewDialer(upgrader, client, http.MethodPost, target).Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		p.dialErr = fmt.Errorf("interlock: upstream port-forward: %w", err)
		return nil, p.dialErr
	}
	p.conn = conn
	return conn, nil
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// end is called once the client's connection is gone: streams it never
// closed are cut with the upstream connection, and every stream is
// journaled before end returns.
func (p *portForward) end() {
	p.mu.Lock()
	p.ended = true
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
	p.running.Wait()
}

// failed is the error journaled with the request's response: the
// streams that failed or were refused.
func (p *portForward) failed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := p.errs
	if p.refused > maxRefusalRecords {
		errs = append(slices.Clip(errs), fmt.Sprintf("%d streams refused in all, %d of them journaled", p.refused, maxRefusalRecords))
	}
	if n := p.failures + min(p.refused, maxRefusalRecords) - len(p.errs); n > 0 {
		errs = append(slices.Clip(errs), fmt.Sprintf("%d more streams failed (see their entries)", n))
	}
	return strings.Join(errs, "; ")
}

// admit counts a new stream in, or says why it is refused.
func (p *portForward) admit(port int32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.ended:
		return errors.New("interlock: the port-forward has ended")
	case p.ports != nil && !p.ports[port]:
		return fmt.Errorf("interlock: port %d was not in the port-forward request policy judged", port)
	case p.open >= maxOpenStreams:
		return fmt.Errorf("interlock: more than %d streams of one port-forward open at once", maxOpenStreams)
	}
	p.open++
	p.running.Add(1)
	return nil
}

func (p *portForward) done() {
	p.mu.Lock()
	p.open--
	p.mu.Unlock()
	p.running.Done()
}

// PortForward relays one client stream to port and journals its bytes
// each way when it closes. The error returned is written on the client's
// error stream by the streaming server.
func (p *portForward) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	n := p.streams.Add(1)
	rec := model.K8sPortForward{Seq: p.seq, Stream: n, Namespace: p.ri.namespace, Pod: p.ri.name, Port: port,
		OffsetNS: time.Since(p.x.opened).Nanoseconds()}
	if err := p.admit(port); err != nil {
		p.mu.Lock()
		p.refused++
		journal := p.refused <= maxRefusalRecords
		if journal && len(p.errs) < maxRefusalRecords {
			p.errs = append(p.errs, fmt.Sprintf("stream %d (port %d) refused: %v", n, port, err))
		}
		p.mu.Unlock()
		if journal {
			rec.Refused, rec.Error = true, err.Error()
			p.x.h.deps.Journal.Post(model.Record{Kind: model.KindK8sPortFwd, Session: p.x.s.ID, Data: rec})
		}
		return err
	}
	defer p.done()
	start := time.Now()
	err := p.relay(port, n, stream, &rec)
	if err != nil {
		rec.Error = err.Error()
		p.mu.Lock()
		p.failures++
		if len(p.errs) < maxRefusalRecords {
			p.errs = append(p.errs, fmt.Sprintf("stream %d (port %d): %v", n, port, err))
		}
		p.mu.Unlock()
	}
	rec.DurationNS = time.Since(start).Nanoseconds()
	p.x.h.deps.Journal.Post(model.Record{Kind: model.KindK8sPortFwd, Session: p.x.s.ID, Data: rec})
	return err
}

// relay is client-go's port-forward connection handling, with the
// client's stream in place of a local connection: an error stream and a
// data stream upstream, the data copied both ways and counted.
func (p *portForward) relay(port int32, n uint32, stream io.ReadWriteCloser, rec *model.K8sPortForward) error {
	conn, err := p.upstream()
	if err != nil {
		return err
	}
	headers := http.Header{}
	headers.Set(v1.StreamType, v1.StreamTypeError)
	headers.Set(v1.PortHeader, strconv.Itoa(int(port)))
	headers.Set(v1.PortForwardRequestIDHeader, strconv.FormatUint(uint64(n), 10))
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("interlock: upstream error stream: %w", err)
	}
	// Nothing is sent on it: the API server writes the error, if any.
	errStream.Close()
	defer conn.RemoveStreams(errStream)
	errMsg := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(errStream)
		if err != nil && len(b) == 0 {
			errMsg <- "reading the error stream: " + err.Error()
			return
		}
		errMsg <- string(b)
	}()
	headers.Set(v1.StreamType, v1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		return fmt.Errorf("interlock: upstream data stream: %w", err)
	}
	defer conn.RemoveStreams(data)

	up := &countReader{r: stream}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		io.Copy(data, up)
		// The pod's side learns the client sent all it will.
		data.Close()
	}()
	down, _ := io.Copy(stream, data)
	// What the pod's side has not taken yet is dropped, so its error
	// stream is not held behind it.
	data.Reset()
	stream.Close()
	// A client that still holds its side open is not waited for: its
	// stream is reset, and what it sent so far is what is counted.
	select {
	case <-upDone:
	case <-time.After(halfCloseWait):
		if rs, ok := stream.(interface{ Reset() error }); ok {
			rs.Reset()
		}
		select {
		case <-upDone:
		case <-time.After(halfCloseWait):
		}
	}
	rec.BytesUp, rec.BytesDown = up.n.Load(), down
	select {
	case m := <-errMsg:
		if m != "" {
			return errors.New(m)
		}
	case <-time.After(errStreamWait):
		return errors.New("interlock: the API server did not close the port-forward's error stream")
	}
	return nil
}

// countReader counts what is read through it, as it is read.
type countReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
