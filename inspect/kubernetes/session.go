package kubernetes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// session is one client connection's state. Requests of an HTTP/2
// connection run concurrently: what they share is atomic or under mu.
type session struct {
	h      *Handler
	t      *target
	s      *inspect.Session
	who    identity
	log    *slog.Logger
	ctx    context.Context
	opened time.Time
	// hijacked, on an HTTP/1.1 connection, ends the session once a
	// handler that took the connection over (a stream) returns.
	hijacked func()

	seq      atomic.Uint64
	channels atomic.Uint32

	deciderOnce sync.Once
	decider     model.Decider

	// bearers are the token ids whose k8s.identity this session has
	// journaled (pass_bearer).
	bearersMu sync.Mutex
	bearers   map[string]bool
}

func (x *session) decide(ctx context.Context, op model.Operation) model.Decision {
	if x.h.deps.Policy == nil {
		return model.Decision{Action: model.Allow, Reason: "default"}
	}
	x.deciderOnce.Do(func() { x.decider = inspect.SessionDecider(x.h.deps.Policy, x.s.Origin) })
	return x.decider.Decide(ctx, op)
}

// refusedHeader names what a client may not send: interlock calls the
// API server as the identity it established (impersonation is
// interlock's to set), and with its own credential unless the target
// passes the client's bearer token (passBearer), which then comes in the
// Authorization header only.
func refusedHeader(h http.Header, passBearer bool) string {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), "Impersonate-") {
			return k
		}
	}
	if wsToken(h) {
		return "a bearer token in Sec-WebSocket-Protocol"
	}
	if !passBearer && len(h.Values("Authorization")) > 0 {
		return "Authorization"
	}
	return ""
}

// serveHTTP judges, journals and forwards one API request.
func (x *session) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	seq := x.seq.Add(1)
	ri := parseRequest(r)
	rec := model.K8sRequest{Seq: seq, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Verb: ri.verb, APIGroup: ri.apiGroup, APIVersion: ri.apiVersion, Resource: ri.resource,
		Subresource: ri.subresource, Namespace: ri.namespace, Name: ri.name,
		User: x.who.user, Groups: x.who.groups}
	if x.t.cfg.Kubernetes.PassBearer {
		rec.Source = x.who.source
	}
	if ri.verb == "exec" {
		rec.Command = r.URL.Query()["command"]
	}
	resp := model.K8sResponse{Seq: seq}
	// body is the answer's recorded body (record_responses).
	var body []byte
	defer func() {
		resp.DurationNS = time.Since(start).Nanoseconds()
		rec := model.Record{Kind: model.KindK8sResponse, Session: x.s.ID, Data: resp}
		if resp.BodyRecorded {
			rec.Payload = body
		}
		x.h.deps.Journal.Post(rec)
	}()
	refuse := func(code int, msg string) {
		resp.Code, resp.Error = code, msg
		body := statusJSON(code, msg)
		resp.Bytes = int64(len(body))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
	// A path the API server would read otherwise than interlock (dot
	// segments, doubled or escaped slashes) is refused: policy must judge
	// what the server will do.
	if r.URL.RawPath != "" || path.Clean(r.URL.Path) != r.URL.Path || !strings.HasPrefix(r.URL.Path, "/") {
		rec.Decision = model.Decision{Action: model.Deny, Reason: "path is not in canonical form"}
		if x.journal(r.Context(), rec, nil, model.Synced) != nil {
			refuse(http.StatusServiceUnavailable, "interlock: the journal cannot record the request")
			return
		}
		refuse(http.StatusBadRequest, "interlock: the request path is not in canonical form")
		return
	}
	if h := refusedHeader(r.Header, x.t.cfg.Kubernetes.PassBearer); h != "" {
		rec.Decision = model.Decision{Action: model.Deny, Reason: "client sent " + h}
		if x.journal(r.Context(), rec, nil, model.Synced) != nil {
			refuse(http.StatusServiceUnavailable, "interlock: the journal cannot record the request")
			return
		}
		refuse(http.StatusForbidden, fmt.Sprintf("interlock: the client may not send %s: interlock calls the API server as the identity it established (%s)", h, x.who.user))
		return
	}
	if x.t.cfg.Kubernetes.PassBearer {
		// Who the request is made as is known before it is judged.
		who, code, err := x.caller(r)
		if err != nil {
			rec.Source = SourceBearer
			rec.Decision = model.Decision{Action: model.Deny, Reason: "bearer token refused: " + err.Error()}
			if x.journal(r.Context(), rec, nil, model.Synced) != nil {
				refuse(http.StatusServiceUnavailable, "interlock: the journal cannot record the request")
				return
			}
			refuse(code, "interlock: "+err.Error())
			return
		}
		rec.User, rec.Groups, rec.UID, rec.Source, rec.TokenID = who.user, who.groups, who.uid, who.source, who.tokenID
		r = r.WithContext(withCaller(r.Context(), who))
	}
	var payload []byte
	if ri.isWrite() && r.Body != nil && r.Body != http.NoBody {
		var err error
		payload, err = x.captureBody(r, ri, &rec)
		if err != nil {
			refuse(http.StatusBadRequest, "interlock: reading the request body: "+err.Error())
			return
		}
	}
	op := model.Operation{Protocol: model.ProtoKubernetes, Kind: ri.verb, Resource: ri.policyResource(),
		Namespace: ri.namespace, Name: ri.name, Path: r.URL.Path, K8sUser: rec.User, K8sGroups: rec.Groups}
	switch ri.verb {
	case "exec":
		op.Text = strings.Join(rec.Command, " ")
	case "portforward":
		// The forwarding destination, as ssh's: streams for ports other
		// than these are refused.
		op.Detail = portsText(r.URL.Query())
	}
	if !ri.resourceReq {
		// Discovery, version and health: get or post on a path.
		op.Kind = ""
	}
	stream := ri.verb == "exec" || ri.verb == "attach" || ri.verb == "portforward"
	// Only a stream request is retried by kubectl: any other would take
	// the handler-wide lock on every API request for nothing.
	var rk retryKey
	var kept model.Decision
	var retry bool
	if stream {
		// Unknown when it cannot be read: rules on pod facts then treat
		// it as unknown, which opens nothing.
		pod, err := x.podFacts(r.Context(), ri.namespace, ri.name)
		if err != nil {
			x.log.Info("pod facts unknown", "err", err)
		}
		op.Pod, rec.Pod = pod, pod
		rk = newRetryKey(x.s.Origin, rec.User+"\x00"+rec.TokenID, r.URL.Path, r.URL.RawQuery)
		kept, retry = x.h.retries.take(rk, pod, time.Now())
	}
	notes := &notices{}
	if stream && retry {
		rec.Decision = retried(kept)
	} else {
		rec.Decision = x.decide(model.WithTeller(r.Context(), func(n model.ApprovalNotice) {
			if n.Verdict == "" {
				x.log.Info("request held for approval: the client is told only with its response", "request", n.Request, "seq", seq)
			}
			notes.tell(n)
		}), op)
	}
	notice := notes.outcome(rec.Decision.Rule)
	setWarning(w.Header(), notice)
	// A decision is kept for one retry only: a reused one is not kept
	// again, or a process that fails its upgrade on purpose would keep a
	// decision alive past the window for as long as it liked.
	if stream && !retry {
		x.h.retries.keep(rk, rec.Decision, op.Pod, time.Now())
	}
	d := model.Committed
	if ri.isWrite() || rec.Decision.Action != model.Allow {
		d = model.Synced
	}
	if err := x.journal(r.Context(), rec, payload, d); err != nil {
		refuse(http.StatusServiceUnavailable, "interlock: the journal cannot record the request")
		return
	}
	switch rec.Decision.Action {
	case model.Allow:
	case model.Mask:
		// Column and detector masks are postgres and ssh output's; what
		// a mask rule asks cannot be done here, so it is refused.
		refuse(http.StatusForbidden, fmt.Sprintf("interlock: %s %s matched mask rule %q, which a kubernetes target cannot apply", ri.verb, describe(ri, r.URL.Path), rec.Decision.Rule))
		return
	default:
		msg := fmt.Sprintf("interlock: %s %s denied by policy rule %q", ri.verb, describe(ri, r.URL.Path), rec.Decision.Rule)
		if rec.Decision.Reason != "" {
			msg += ": " + rec.Decision.Reason
		}
		if rec.Decision.Request != "" {
			msg += " (approval request " + rec.Decision.Request + ")"
		}
		refuse(http.StatusForbidden, msg)
		return
	}
	switch {
	case ri.verb == "exec" || ri.verb == "attach":
		var hijacked bool
		resp.Code, resp.Error, hijacked = x.serveStream(w, r, ri, seq, notice, rec.Pod, func() { x.h.retries.forget(rk) })
		// As for a port-forward below: a connection not taken over still
		// has its answer to send.
		if x.hijacked != nil && hijacked {
			defer x.hijacked()
		}
	case ri.verb == "portforward":
		resp.Code, resp.Error = x.servePortForward(w, r, ri, seq, rec.Pod, func() { x.h.retries.forget(rk) })
		// Only a connection taken over is done with: one answered with
		// an error (a pod changed since it was judged) is still served,
		// and ending it here closed it before net/http had sent the
		// answer (kubectl saw "unexpected EOF", not the 409, and did not
		// retry).
		if x.hijacked != nil && resp.Code == http.StatusSwitchingProtocols {
			defer x.hijacked()
		}
	case ri.isSecrets() && ri.verb == "watch":
		refuse(http.StatusForbidden, "interlock: watching secrets is refused: their values could not be masked in the stream")
	case isUpgrade(r) && ri.verb != "portforward":
		refuse(http.StatusBadRequest, "interlock: only exec, attach and portforward may upgrade the connection")
	default:
		body = x.forward(w, r, ri, &resp)
		if resp.Code == http.StatusSwitchingProtocols {
			x.h.retries.forget(rk)
		}
		if isUpgrade(r) && x.hijacked != nil {
			defer x.hijacked()
		}
	}
}

func (x *session) journal(ctx context.Context, rec model.K8sRequest, payload []byte, d model.Durability) error {
	// An exec's command may carry a secret (psql postgres://u:pw@…):
	// the record has it replaced, in Command and in the raw query alike.
	rec.Command, rec.Redacted = argvredact.Argv(rec.Command)
	var n int
	if rec.Query, n = redactCommandQuery(rec.Query); n > rec.Redacted {
		rec.Redacted = n
	}
	r := model.Record{Kind: model.KindK8sRequest, Session: x.s.ID, Data: rec}
	if payload != nil {
		r.Payload = payload
	}
	_, err := x.h.deps.Journal.Append(ctx, r, d)
	if err != nil {
		x.log.Error("journal k8s request", "err", err)
	}
	return err
}

func describe(ri reqInfo, p string) string {
	if !ri.resourceReq {
		return p
	}
	s := ri.policyResource()
	if ri.name != "" {
		s += " " + ri.name
	}
	if ri.namespace != "" {
		s += " in namespace " + ri.namespace
	}
	return s
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// captureBody reads up to the target's record_body_max of a write's body
// for the journal and puts it back in front of the rest. A Secret's
// values are masked in the recorded copy; one that cannot be parsed is not
// recorded at all.
func (x *session) captureBody(r *http.Request, ri reqInfo, rec *model.K8sRequest) ([]byte, error) {
	limit := int64(x.t.cfg.Kubernetes.BodyMax())
	if ri.isSecrets() {
		// The whole of a Secret is read to mask it: its size is bounded by
		// the API server (1 MiB), and the rest would be sent unjudged.
		limit = 3 << 20
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	truncated := int64(len(head)) > limit
	r.Body = readCloser{io.MultiReader(bytes.NewReader(head), r.Body), r.Body}
	rec.BodyBytes = int64(len(head))
	if truncated {
		head = head[:limit]
		rec.BodyTruncated = true
	}
	if ri.isSecrets() {
		rec.BodyMasked = true
		masked, _, ok := maskSecretJSON(head)
		if !ok || truncated {
			return nil, nil
		}
		return masked, nil
	}
	if paths := credentialPaths(ri); paths != nil {
		// A TokenReview carries the token it asks about.
		rec.BodyMasked = true
		masked, ok := maskPaths(head, paths)
		if !ok || truncated {
			return nil, nil
		}
		return masked, nil
	}
	return head, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// forward sends the request to the API server as the request's caller
// (interlock impersonating the session's identity, or the client's own
// bearer token), and streams the answer back (a watch as it
// comes). A Secret's values are masked in the answer.
// With record_responses, the body the client got is returned for the
// journal, as far as recordResponse keeps it.
func (x *session) forward(w http.ResponseWriter, r *http.Request, ri reqInfo, resp *model.K8sResponse) []byte {
	u := x.t.upstream
	secrets := ri.isSecrets()
	record := x.t.cfg.Kubernetes.RecordResponses && recordable(r, ri)
	who := x.callerOf(r.Context())
	tr, up := u.transports(who)
	if isUpgrade(r) {
		tr = up
	}
	rp := &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = u.base.Scheme, u.base.Host
			pr.Out.Host = u.base.Host
			authorize(pr.Out.Header, who)
			if secrets || record && credentialPaths(ri) != nil {
				// Only JSON can be masked; the transport undoes gzip.
				pr.Out.Header.Set("Accept", jsonOnly(pr.Out.Header.Get("Accept")))
			}
			if secrets || record {
				// What is masked or recorded is the body, not its gzip:
				// the transport asks for gzip itself and undoes it.
				pr.Out.Header.Del("Accept-Encoding")
			}
		},
		ModifyResponse: func(res *http.Response) error {
			resp.Code = res.StatusCode
			if secrets {
				n, err := maskResponse(res)
				resp.Masked = n
				return err
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			resp.Code, resp.Error = http.StatusBadGateway, err.Error()
			body := statusJSON(http.StatusBadGateway, "interlock: "+err.Error())
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, body)
		},
	}
	cw := &countWriter{ResponseWriter: w}
	if record {
		cw.keep = x.t.cfg.Kubernetes.ResponseMax()
	}
	rp.ServeHTTP(cw, r)
	resp.Bytes = cw.n
	if !record || resp.Error != "" {
		return nil
	}
	return recordResponse(ri, cw, resp)
}

// countWriter counts the body bytes sent to the client, and keeps the
// first keep of them.
type countWriter struct {
	http.ResponseWriter
	n    int64
	keep int
	head []byte
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	if room := c.keep - len(c.head); room > 0 {
		c.head = append(c.head, p[:min(room, n)]...)
	}
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (c *countWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
