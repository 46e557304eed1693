package ssh

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/identity/argvredact"
	"github.com/interlock/interlock/model"
)

// decide asks policy about an operation of this session. Without a policy
// everything is allowed except what must be opened explicitly.
func (c *conn) decide(op model.Operation) model.Decision { return c.decideIn(c.ctx, op) }

// decideIn is decide under ctx (which may carry a model.Teller).
func (c *conn) decideIn(ctx context.Context, op model.Operation) model.Decision {
	op.Protocol = model.ProtoSSH
	// A decision may wait for an approver: the session is not idle then.
	c.deciding.Add(1)
	defer c.deciding.Add(-1)
	if c.h.policy == nil {
		switch op.Kind {
		case "port_forwarding", "agent_forwarding", "x11":
			return model.Decision{Action: model.Deny, Rule: "default", Reason: "no policy"}
		}
		return allowed
	}
	return c.h.policy.Decide(ctx, c.s.Origin, op)
}

// record journals rec: denials and what grants access are synced before
// they take effect, the rest goes through the batched path.
func (c *conn) record(kind string, data any, d model.Durability) error {
	// Client-chosen text that is not UTF-8 is kept whole beside its JSON
	// form, whatever path recorded it.
	switch q := data.(type) {
	case model.SSHRequest:
		// A command line or an env request may carry a secret
		// (mysql -pX, PGPASSWORD=x): the record has it replaced, here
		// where every path that records a request passes.
		var n, m int
		q.Command, n = argvredact.Line(q.Command)
		if q.Env != "" {
			env, k := argvredact.Argv([]string{q.Env})
			q.Env, m = env[0], k
		}
		q.Redacted += n + m
		q.KeepBytes()
		data = q
	case model.SSHSFTP:
		q.KeepBytes()
		data = q
	case model.SSHChannel:
		if q.OffsetNS == 0 {
			q.OffsetNS = c.offset()
		}
		data = q
	}
	rec := model.Record{Kind: kind, Session: c.s.ID, Data: data}
	if d == model.Synced {
		_, err := c.h.journal.Append(c.ctxOrBackground(), rec, model.Synced)
		if err != nil {
			c.log.Error("journal", "kind", kind, "err", err)
		}
		return err
	}
	c.h.journal.Post(rec)
	return nil
}

// permits says whether a decision lets the operation go ahead: allow, or
// mask (what flows back is masked).
func permits(d model.Decision) bool { return d.Action == model.Allow || d.Action == model.Mask }

// durability is Synced for a refusal.
func durability(d model.Decision) model.Durability {
	if !permits(d) {
		return model.Synced
	}
	return model.Committed
}

func (c *conn) nextChannel() uint32 { return c.channels.Add(1) - 1 }

// clientGlobalRequests answers the client's connection-level requests.
// Requests that carry no operation (keepalives, types interlock does not
// support) are counted, not journaled one by one: a client could send
// hundreds of thousands a second, and each record would cost the journal
// what a command costs. Their counts are journaled per type every
// countEvery and when the connection ends, before session.close.
func (c *conn) clientGlobalRequests(reqs <-chan *gossh.Request) {
	counts := requestCounts{}
	defer func() { c.flushCounts(counts) }()
	for req := range reqs {
		switch req.Type {
		case "keepalive@openssh.com":
			// Liveness probes are answered and counted.
			counts.add(model.SSHRequest{Global: true, Type: req.Type, OffsetNS: c.offset()}, keepalive)
			req.Reply(false, nil)
		case "no-more-sessions@openssh.com":
			c.noMoreSessions.Store(true)
			c.record(model.KindSSHRequest, model.SSHRequest{Global: true, Type: req.Type,
				Decision: allowed, OffsetNS: c.offset()}, model.Committed)
			req.Reply(true, nil)
		case "tcpip-forward", "cancel-tcpip-forward", "streamlocal-forward@openssh.com", "cancel-streamlocal-forward@openssh.com":
			c.forwardRequest(req)
		default:
			counts.add(model.SSHRequest{Global: true, Type: req.Type, OffsetNS: c.offset()}, unknownRequest)
			req.Reply(false, nil)
		}
		if counts.due(c.offset()) {
			c.flushCounts(counts)
		}
	}
}

// The decisions of counted requests: a keepalive is answered (false, as
// OpenSSH's own server does), an unknown type refused.
var (
	keepalive      = model.Decision{Action: model.Allow, Rule: "keepalive", Reason: "answered, not forwarded"}
	unknownRequest = model.Decision{Action: model.Deny, Rule: "unknown-request", Reason: "request type not supported"}
)

// countEvery is how often counts of requests are journaled while a
// connection lasts; maxCountedTypes bounds the types counted apart (the
// type is the client's string), the rest are counted under otherType.
const (
	countEvery      = time.Minute
	maxCountedTypes = 16
	otherType       = "(other)"
)

// countedRequests is the data of an ssh.request entry that stands for
// Count requests of one type: the first at OffsetNS, the last at
// LastOffsetNS.
type countedRequests struct {
	model.SSHRequest
	Count        uint64 `json:"count"`
	LastOffsetNS int64  `json:"last_offset_ns"`
}

// requestCounts counts requests by type since the last flush: a
// connection's global requests (owned by the clientGlobalRequests
// goroutine) or one channel's (owned by its request loop).
type requestCounts map[string]*countedRequests

// add counts q (its Global, Channel, Type and OffsetNS) under decision d.
func (rc requestCounts) add(q model.SSHRequest, d model.Decision) {
	typ := q.Type
	e := rc[typ]
	if e == nil {
		if len(rc) >= maxCountedTypes {
			typ = otherType
			e = rc[typ]
		}
		if e == nil {
			q.Type, q.Decision = typ, d
			e = &countedRequests{SSHRequest: q}
			rc[typ] = e
		}
	}
	e.Count++
	e.LastOffsetNS = q.OffsetNS
}

// due says whether the oldest count is countEvery old.
func (rc requestCounts) due(now int64) bool {
	for _, e := range rc {
		if now-e.OffsetNS >= int64(countEvery) {
			return true
		}
	}
	return false
}

// flushCounts journals one entry per counted type, in the order of their
// first request, and starts counting afresh.
func (c *conn) flushCounts(rc requestCounts) {
	es := make([]*countedRequests, 0, len(rc))
	for _, e := range rc {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *countedRequests) int { return cmp.Compare(a.OffsetNS, b.OffsetNS) })
	for _, e := range es {
		c.record(model.KindSSHRequest, *e, model.Committed)
	}
	if len(es) > 0 {
		c.log.Debug("ssh requests counted, not forwarded", "types", len(es))
	}
	clear(rc)
}

// forwardRequest handles remote forwarding requests (ssh -R): refused
// unless policy allows port forwarding, journaled either way.
func (c *conn) forwardRequest(req *gossh.Request) {
	detail := forwardDetail(req.Type, req.Payload)
	d := c.decide(model.Operation{Kind: "port_forwarding", Text: req.Type, Detail: detail})
	rec := model.SSHRequest{Global: true, Type: req.Type, Command: detail, Decision: d, OffsetNS: c.offset()}
	if err := c.record(model.KindSSHRequest, rec, durability(d)); err != nil || !permits(d) {
		req.Reply(false, nil)
		return
	}
	ok, payload, err := c.up.conn.SendRequest(req.Type, req.WantReply, req.Payload)
	if err != nil {
		ok = false
	}
	req.Reply(ok, payload)
}

func forwardDetail(typ string, payload []byte) string {
	if typ == "tcpip-forward" || typ == "cancel-tcpip-forward" {
		return hostPort(payload)
	}
	// The streamlocal forwards: the socket path.
	return firstString(payload)
}

// upstreamGlobalRequests refuses what the target asks of the client
// (hostkeys-00@openssh.com would hand the target's real keys to a client
// that talks to interlock).
func (c *conn) upstreamGlobalRequests(reqs <-chan *gossh.Request) {
	for req := range reqs {
		req.Reply(false, nil)
	}
}

// clientChannel serves a channel the client opens.
func (c *conn) clientChannel(nc gossh.NewChannel) {
	switch nc.ChannelType() {
	case "session":
		if c.noMoreSessions.Load() {
			c.rejectChannel(nc, c.nextChannel(), "", model.Decision{Action: model.Deny, Rule: "no-more-sessions", Reason: "the client sent no-more-sessions@openssh.com"})
			return
		}
		c.session(nc)
	case "direct-tcpip", "direct-streamlocal@openssh.com":
		c.forwardChannel(nc, "port_forwarding", c.up.conn, "client")
	default:
		c.rejectChannel(nc, c.nextChannel(), "", model.Decision{Action: model.Deny, Rule: "unknown-channel", Reason: "channel type " + strconv.Quote(nc.ChannelType()) + " is not supported"})
	}
}

// upstreamChannel serves a channel the target opens towards the client:
// remote forwarding, X11 and agent connections.
func (c *conn) upstreamChannel(nc gossh.NewChannel) {
	switch nc.ChannelType() {
	case "forwarded-tcpip", "forwarded-streamlocal@openssh.com":
		c.forwardChannel(nc, "port_forwarding", c.client, "target")
	case "x11":
		c.forwardChannel(nc, "x11", c.client, "target")
	case "auth-agent@openssh.com":
		c.forwardChannel(nc, "agent_forwarding", c.client, "target")
	default:
		c.rejectChannel(nc, c.nextChannel(), "", model.Decision{Action: model.Deny, Rule: "unknown-channel", Reason: "channel type " + strconv.Quote(nc.ChannelType()) + " is not supported"})
	}
}

func (c *conn) rejectChannel(nc gossh.NewChannel, id uint32, detail string, d model.Decision) {
	c.record(model.KindSSHChannel, model.SSHChannel{Channel: id, Type: nc.ChannelType(), Detail: detail, Decision: d}, model.Synced)
	reason := gossh.Prohibited
	if d.Rule == "unknown-channel" {
		reason = gossh.UnknownChannelType
	}
	nc.Reject(reason, "interlock: "+d.Reason)
}

// forwardChannel relays a forwarding, X11 or agent channel to the other
// side if policy allows it. Its bytes are counted, not recorded.
func (c *conn) forwardChannel(nc gossh.NewChannel, kind string, to gossh.Conn, from string) {
	id := c.nextChannel()
	detail := channelDetail(nc.ChannelType(), nc.ExtraData())
	d := c.decide(model.Operation{Kind: kind, Text: nc.ChannelType(), Detail: detail})
	if !permits(d) {
		c.rejectChannel(nc, id, detail, d)
		return
	}
	och, oreqs, err := to.OpenChannel(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		d = model.Decision{Action: model.Deny, Rule: "open-failed", Reason: err.Error()}
		c.record(model.KindSSHChannel, model.SSHChannel{Channel: id, Type: nc.ChannelType(), Detail: detail, Decision: d}, model.Committed)
		reason, msg := gossh.ConnectionFailed, err.Error()
		if oe, ok := err.(*gossh.OpenChannelError); ok {
			reason, msg = oe.Reason, oe.Message
		}
		nc.Reject(reason, msg)
		return
	}
	ich, ireqs, err := nc.Accept()
	if err != nil {
		och.Close()
		return
	}
	c.record(model.KindSSHChannel, model.SSHChannel{Channel: id, Type: nc.ChannelType(), Detail: detail, Decision: d}, model.Committed)
	go gossh.DiscardRequests(oreqs)
	go gossh.DiscardRequests(ireqs)
	// Count towards the session's totals in the client's terms.
	inCount, outCount := &c.bytesUp, &c.bytesDown
	if from == "target" {
		inCount, outCount = &c.bytesDown, &c.bytesUp
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pump := func(dst, src gossh.Channel, n interface{ Add(int64) int64 }) {
		defer wg.Done()
		k, _ := io.Copy(dst, src)
		n.Add(k)
		dst.CloseWrite()
	}
	go pump(och, ich, inCount)
	go pump(ich, och, outCount)
	wg.Wait()
	ich.Close()
	och.Close()
}

// channelDetail describes where a forwarding channel goes.
func channelDetail(typ string, extra []byte) string {
	switch typ {
	case "direct-tcpip", "forwarded-tcpip":
		var m struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}
		if gossh.Unmarshal(extra, &m) == nil {
			return fmt.Sprintf("%s from %s", net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))), net.JoinHostPort(m.OrigHost, strconv.Itoa(int(m.OrigPort))))
		}
	case "direct-streamlocal@openssh.com", "forwarded-streamlocal@openssh.com":
		// The socket path, then reserved fields.
		return firstString(extra)
	case "x11":
		return hostPort(extra)
	}
	return ""
}

// hostPort reads a payload that is a host and a port (tcpip-forward, x11),
// as host:port; "" when it does not parse.
func hostPort(b []byte) string {
	var m struct {
		Host string
		Port uint32
	}
	if gossh.Unmarshal(b, &m) != nil {
		return ""
	}
	return net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port)))
}

// firstString reads the string a payload starts with; "" when it does not
// parse.
func firstString(b []byte) string {
	r := &reader{b: b}
	if s := r.str(); !r.bad {
		return s
	}
	return ""
}
