package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiremote "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	crisrv "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/model"
)

// An exec or attach is terminated on both legs: interlock serves the
// client's stream itself (websocket v5 below; SPDY and websocket v1 to v4
// with the kubelet's own streaming server, cri-streaming) and only once
// the client's upgrade has succeeded opens its own stream to the API
// server (client-go, websocket v5). A client whose upgrade failed never
// caused an execution, so kubectl's fallback from websockets to SPDY
// cannot run a command twice.
const (
	streamIdle     = 4 * time.Hour
	streamCreation = 30 * time.Second
)

var spdyProtocols = []string{
	crisrv.StreamProtocolV4Name, crisrv.StreamProtocolV3Name,
	crisrv.StreamProtocolV2Name, crisrv.StreamProtocolV1Name,
}

// serveStream serves an exec or attach the policy allowed. It returns the
// code and error journaled for the request, and whether the client's
// connection was taken over (an answer written without it is still to be
// sent when serveStream returns).
// notice, if not "", is the approval the client is told of on its stream;
// up is called once the client's stream is up.
// pod is the facts policy judged, checked again before the upstream
// stream is opened.
func (x *session) serveStream(rw http.ResponseWriter, r *http.Request, ri reqInfo, seq uint64, notice string, pod *model.K8sPod, up func()) (code int, msg string, hijacked bool) {
	opts, err := streamOptions(r)
	if err != nil {
		body := statusJSON(http.StatusBadRequest, err.Error())
		rw.Header().Set("Content-Type", "application/json")
		rw.WriteHeader(http.StatusBadRequest)
		io.WriteString(rw, body)
		return http.StatusBadRequest, err.Error(), false
	}
	w := &hijackWatch{ResponseWriter: rw, up: func() {}}
	q := r.URL.Query()
	ex := &streamExec{x: x, ri: ri, seq: seq, ch: x.channels.Add(1), query: r.URL.RawQuery,
		container: q.Get("container"), command: q["command"], stdin: opts.Stdin, protocol: "spdy", up: up, notice: notice,
		who: x.callerOf(r.Context()), pod: pod}
	switch {
	case wsstream.IsWebSocketRequestWithStreamCloseProtocol(r):
		ex.protocol = apiremote.StreamProtocolV5Name + " (websocket)"
		x.serveWebsocket(w, r, opts, ex)
	case ri.verb == "exec":
		if wsstream.IsWebSocketRequest(r) {
			ex.protocol = "websocket"
		}
		crisrv.ServeExec(w, r, ex, ri.name, "", ex.container, ex.command, opts, streamIdle, streamCreation, spdyProtocols)
	default:
		if wsstream.IsWebSocketRequest(r) {
			ex.protocol = "websocket"
		}
		crisrv.ServeAttach(w, r, ex, ri.name, "", ex.container, opts, streamIdle, streamCreation, spdyProtocols)
	}
	if !ex.started {
		return http.StatusBadRequest, "the client's stream could not be set up", w.hijacked
	}
	if ex.err != nil {
		return http.StatusSwitchingProtocols, ex.err.Error(), w.hijacked
	}
	return http.StatusSwitchingProtocols, "", w.hijacked
}

// streamExec runs one exec or attach through to the API server and
// records it. It implements cri-streaming's Executor and Attacher.
type streamExec struct {
	x         *session
	ri        reqInfo
	seq       uint64
	ch        uint32
	query     string
	container string
	command   []string
	stdin     bool
	protocol  string
	up        func()
	notice    string
	pod       *model.K8sPod
	io        ioRec
	// who is the request's caller, whom the upstream stream runs as.
	who identity

	started bool
	err     error
}

func (e *streamExec) ExecInContainer(ctx context.Context, _, _, _ string, _ []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan crisrv.TerminalSize, _ time.Duration) error {
	return e.run(ctx, in, out, errw, tty, resize)
}

func (e *streamExec) AttachContainer(ctx context.Context, _, _, _ string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan crisrv.TerminalSize) error {
	return e.run(ctx, in, out, errw, tty, resize)
}

func (e *streamExec) offset() int64 { return time.Since(e.x.opened).Nanoseconds() }

// run opens the upstream stream with the client's streams, recorded.
func (e *streamExec) run(ctx context.Context, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan crisrv.TerminalSize) error {
	e.started = true
	e.io.e = e
	e.up()
	e.tellStream(out, errw, tty)
	x := e.x
	if err := x.recheckPod(ctx, e.ri.namespace, e.ri.name, e.pod); err != nil {
		e.err = err
		return err
	}
	command, redacted := argvredact.Argv(e.command)
	start := model.K8sExec{Channel: e.ch, Seq: e.seq, Type: e.ri.verb, Namespace: e.ri.namespace, Pod: e.ri.name,
		Container: e.container, Command: command, Redacted: redacted, TTY: tty, Stdin: in != nil, Protocol: e.protocol, OffsetNS: e.offset()}
	if _, err := x.h.deps.Journal.Append(ctx, model.Record{Kind: model.KindK8sExec, Session: x.s.ID, Data: start}, model.Committed); err != nil {
		e.err = fmt.Errorf("interlock: the journal cannot record the stream: %w", err)
		return e.err
	}
	u := x.t.upstream
	url := u.base.String() + "/api/v1/namespaces/" + e.ri.namespace + "/pods/" + e.ri.name + "/" + e.ri.verb + "?" + e.query
	exe, err := remotecommand.NewWebSocketExecutor(u.restConfig(e.who), "GET", url)
	if err != nil {
		e.err = fmt.Errorf("interlock: upstream stream: %w", err)
		return e.err
	}
	opts := remotecommand.StreamOptions{Tty: tty}
	if in != nil {
		opts.Stdin = &recReader{e: e, r: in}
	}
	if out != nil {
		opts.Stdout = &recWriter{e: e, w: out, stream: "o"}
	}
	if errw != nil {
		opts.Stderr = &recWriter{e: e, w: errw, stream: "e"}
	}
	if resize != nil {
		opts.TerminalSizeQueue = &sizeQueue{e: e, c: resize}
	}
	err = exe.StreamWithContext(ctx, opts)
	e.io.flush()
	exit := model.SSHExit{Channel: e.ch, OffsetNS: e.offset()}
	var code utilexec.ExitError
	switch {
	case err == nil:
		zero := 0
		exit.ExitStatus = &zero
	case errors.As(err, &code) && code.Exited():
		c := code.ExitStatus()
		exit.ExitStatus = &c
	default:
		exit.ExitSignal = "error: " + err.Error()
		e.err = err
	}
	x.h.deps.Journal.Post(model.Record{Kind: model.KindK8sExit, Session: x.s.ID, Data: exit})
	return err
}

type recReader struct {
	e *streamExec
	r io.Reader
}

func (r *recReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.e.post("i", p[:n])
	}
	return n, err
}

type recWriter struct {
	e      *streamExec
	w      io.Writer
	stream string
}

func (w *recWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.e.post(w.stream, p)
	}
	return w.w.Write(p)
}

func (e *streamExec) post(stream string, p []byte) { e.io.add(stream, p) }

// sizeQueue hands the client's terminal sizes to the upstream stream.
type sizeQueue struct {
	e *streamExec
	c <-chan crisrv.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.c
	if !ok {
		return nil
	}
	q.e.io.flush()
	q.e.x.h.deps.Journal.Post(model.Record{Kind: model.KindK8sResize, Session: q.e.x.s.ID,
		Data: model.SSHResize{Channel: q.e.ch, Cols: uint32(sz.Width), Rows: uint32(sz.Height), OffsetNS: q.e.offset()}})
	return &remotecommand.TerminalSize{Width: sz.Width, Height: sz.Height}
}

// Websocket channel numbers of the remote command protocol.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// serveWebsocket is the client leg of a websocket v5 stream, as the API
// server serves it (its stream translator), built on wsstream.
func (x *session) serveWebsocket(w http.ResponseWriter, r *http.Request, opts *crisrv.Options, ex *streamExec) {
	channels := make([]wsstream.ChannelType, 5)
	channels[chStdin] = pick(opts.Stdin, wsstream.ReadChannel)
	channels[chStdout] = pick(opts.Stdout, wsstream.WriteChannel)
	channels[chStderr] = pick(opts.Stderr, wsstream.WriteChannel)
	channels[chError] = wsstream.WriteChannel
	channels[chResize] = wsstream.ReadChannel
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		apiremote.StreamProtocolV5Name: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(streamIdle)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		return
	}
	defer conn.Close()
	// An empty message on the lowest writable channel tells the client
	// the stream is up.
	switch {
	case opts.Stdout:
		streams[chStdout].Write(nil)
	case opts.Stderr:
		streams[chStderr].Write(nil)
	default:
		streams[chError].Write(nil)
	}
	var in io.Reader
	var out, errw io.WriteCloser
	if opts.Stdin {
		in = streams[chStdin]
	}
	if opts.Stdout {
		out = streams[chStdout]
	}
	if opts.Stderr {
		errw = streams[chStderr]
	}
	var resize chan crisrv.TerminalSize
	if opts.TTY {
		resize = make(chan crisrv.TerminalSize)
		go func() {
			defer close(resize)
			dec := json.NewDecoder(streams[chResize])
			for {
				var sz crisrv.TerminalSize
				if dec.Decode(&sz) != nil {
					return
				}
				select {
				case resize <- sz:
				case <-r.Context().Done():
					return
				}
			}
		}()
	}
	err = ex.run(r.Context(), in, out, errw, opts.TTY, resize)
	status := metav1.Status{Status: metav1.StatusSuccess}
	var code utilexec.ExitError
	var se *apierrors.StatusError
	switch {
	case err == nil:
	case errors.As(err, &code) && code.Exited():
		status = metav1.Status{Status: metav1.StatusFailure, Reason: apiremote.NonZeroExitCodeReason,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: apiremote.ExitCodeCauseType, Message: strconv.Itoa(code.ExitStatus())}}},
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err)}
	case errors.As(err, &se):
		status = se.Status()
	default:
		status = apierrors.NewInternalError(err).Status()
	}
	b, _ := json.Marshal(status)
	conn.SetWriteDeadline(10 * time.Second)
	streams[chError].Write(b)
}

func pick(on bool, t wsstream.ChannelType) wsstream.ChannelType {
	if on {
		return t
	}
	return wsstream.IgnoreChannel
}

// streamOptions reads the streams a client asks for from the API's query
// (stdin, stdout, stderr, tty: the kubelet's own names differ).
func streamOptions(r *http.Request) (*crisrv.Options, error) {
	q := r.URL.Query()
	o := &crisrv.Options{Stdin: queryBool(q, "stdin"), Stdout: queryBool(q, "stdout"),
		Stderr: queryBool(q, "stderr"), TTY: queryBool(q, "tty")}
	if o.TTY {
		// A terminal merges stderr into stdout, as the API server does.
		o.Stderr = false
	}
	if !o.Stdin && !o.Stdout && !o.Stderr {
		return nil, errors.New("you must specify at least 1 of stdin, stdout, stderr")
	}
	return o, nil
}

// tellStream tells the client of an approval on its stream, before the
// command's output and outside its record: kubectl does not read the
// upgrade response's Warning header. A terminal gets it on stdout (its
// stderr is merged), else stderr; a client that asked for neither is not
// told.
func (e *streamExec) tellStream(out, errw io.Writer, tty bool) {
	if e.notice == "" {
		return
	}
	switch {
	case tty && out != nil:
		out.Write([]byte(e.notice + "\r\n"))
	case !tty && errw != nil:
		errw.Write([]byte(e.notice + "\n"))
	}
}
