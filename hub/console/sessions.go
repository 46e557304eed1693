package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/asciicast"
	"github.com/interlock/interlock/hub/store"
	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// searchLimit is how many rows a search page shows.
const searchLimit = 200

type searchData struct {
	Q          map[string]string
	Hosts      []store.Host
	Sessions   []sessionRow
	Operations []opRow
	ByOp       bool
	Error      string
	Limit      int
}

type sessionRow struct {
	Time, HostID, HostName, Session, Link string
	Target, Protocol, User                string
	Identity                              []field
	Decision                              string
}

type opRow struct {
	Time, HostName, Session, Link string
	Target, User, Kind, Text      string
	Decision, Action              string
}

// parseTime reads a search bound: RFC 3339, or the form's
// datetime-local (taken as UTC).
func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2026-05-01T09:00 or RFC 3339, UTC)", v)
}

// sessions searches the fleet's sessions by host, target, identity and
// time; with a kind, a decision or a text it searches their operations
// (statements and commands) instead, each linked to its session.
func (c *Console) sessions(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := searchData{Q: map[string]string{}, Limit: searchLimit}
	for _, k := range []string{"host", "target", "user", "since", "until", "kind", "action", "text"} {
		d.Q[k] = q.Get(k)
	}
	hosts, err := c.opts.Store.Hosts(r.Context())
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	d.Hosts = hosts
	since, err1 := parseTime(d.Q["since"])
	until, err2 := parseTime(d.Q["until"])
	if err := errors.Join(err1, err2); err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "sessions", "Sessions", s, d)
		return
	}
	d.ByOp = d.Q["kind"] != "" || d.Q["action"] != "" || d.Q["text"] != ""
	if !d.ByOp {
		found, err := c.opts.Store.Sessions(r.Context(), store.SessionFilter{HostID: d.Q["host"], User: d.Q["user"], Target: d.Q["target"],
			Since: since, Until: until, Limit: searchLimit})
		if err != nil {
			c.unavailable(w, r, s, err)
			return
		}
		for _, x := range found {
			d.Sessions = append(d.Sessions, c.sessionRow(x))
		}
		c.render(w, r, http.StatusOK, "sessions", "Sessions", s, d)
		return
	}
	if a := d.Q["action"]; a != "" && a != string(model.Allow) && a != string(model.Deny) && a != string(model.Review) && a != string(model.Mask) {
		d.Error = "decision: allow, deny, review or mask"
		c.render(w, r, http.StatusBadRequest, "sessions", "Sessions", s, d)
		return
	}
	if len(d.Q["text"]) > store.MaxSearchText {
		d.Error = fmt.Sprintf("text: at most %d bytes", store.MaxSearchText)
		c.render(w, r, http.StatusBadRequest, "sessions", "Sessions", s, d)
		return
	}
	found, err := c.opts.Store.Operations(r.Context(), store.OperationFilter{HostID: d.Q["host"], User: d.Q["user"], Target: d.Q["target"],
		Kind: d.Q["kind"], Action: d.Q["action"], Text: d.Q["text"], Since: since, Until: until, Limit: searchLimit})
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	for _, x := range found {
		body, err := evidence.ParseBody(x.Body)
		op, ok := store.Operation{}, err == nil
		if ok {
			op, ok = store.OperationOf(x.Seq, body)
		}
		if !ok {
			// The index holds only operations that parsed.
			c.fail(w, r, s, http.StatusInternalServerError, "The hub's store was altered",
				fmt.Sprintf("Entry %d of host %s is not the operation indexed.", x.Seq, textview.Escape(x.HostID)), "Verify the fleet bundle.")
			return
		}
		user := x.ProcUser
		if x.LoginUser != "" {
			user = x.LoginUser
		}
		var dd struct {
			Decision model.Decision `json:"decision"`
		}
		json.Unmarshal(body.Data, &dd)
		d.Operations = append(d.Operations, opRow{
			Time: timeText(body.Time), HostName: textview.Escape(x.HostName), Session: textview.Escape(body.Session),
			Link:   c.sessionLink(x.HostID, body.Session) + "#e" + strconv.FormatInt(x.Seq, 10),
			Target: textview.Escape(x.Target), User: textview.Escape(user), Kind: textview.Escape(strings.Join(op.Kinds, " ")),
			Text: textview.Summary(op.Text, 160), Decision: sessionview.DecisionText(dd.Decision), Action: string(dd.Decision.Action),
		})
	}
	c.render(w, r, http.StatusOK, "sessions", "Sessions", s, d)
}

func timeText(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05 UTC")
}

func (c *Console) sessionLink(host, session string) string {
	return c.prefix + "/hosts/" + url.PathEscape(host) + "/sessions/" + url.PathEscape(session)
}

func (c *Console) sessionRow(x store.Session) sessionRow {
	row := sessionRow{Time: timeText(x.TimeNS), HostID: x.HostID, HostName: textview.Escape(x.HostName),
		Session: textview.Escape(x.Session), Link: c.sessionLink(x.HostID, x.Session)}
	body, err := evidence.ParseBody(x.Body)
	var o model.SessionOpen
	if err != nil || json.Unmarshal(body.Data, &o) != nil {
		row.Decision = "the stored entry does not parse: the store was altered"
		return row
	}
	row.Target, row.Protocol = textview.Escape(o.Target.Name), textview.Escape(string(o.Target.Protocol))
	row.User = sessionview.LoginText(o.Identity.Human)
	if p := o.Identity.Proc; p != nil {
		if row.User != "" {
			row.User += " as "
		}
		row.User += textview.Escape(p.User)
	}
	row.Identity = IdentityView(o.Identity)
	row.Decision = sessionview.DecisionText(o.Decision)
	return row
}

func (c *Console) unavailable(w http.ResponseWriter, r *http.Request, s *session, err error) {
	c.log.Error("console: store", "err", err)
	if c.opts.Place != "" {
		c.fail(w, r, s, http.StatusServiceUnavailable, "The "+c.opts.Place+" could not be read", "The console failed to read the "+c.opts.Place+".", "Try again; the log says why.")
		return
	}
	c.fail(w, r, s, http.StatusServiceUnavailable, "The hub's store failed", "The hub could not read its database.", "Try again; the hub's log says why.")
}

// records reads one session from the store as the records asciicast and
// sessionview read (what `interlock sessions replay` reads from a
// journal).
func (c *Console) records(r *http.Request, host string, open store.Session) iter.Seq2[asciicast.Record, error] {
	return func(yield func(asciicast.Record, error) bool) {
		for e, err := range c.opts.Store.SessionEntries(r.Context(), host, open) {
			if err != nil {
				yield(asciicast.Record{}, err)
				return
			}
			b, err := evidence.ParseBody(e.Body)
			if err != nil {
				yield(asciicast.Record{}, fmt.Errorf("entry %d: %w", e.Seq, err))
				return
			}
			if !yield(asciicast.Record{Seq: uint64(e.Seq), Kind: e.Kind, TimeNS: e.TimeNS, Data: b.Data, Payload: e.Payload}, nil) {
				return
			}
		}
	}
}

// openSession finds the session a page names; false when it answered.
func (c *Console) openSession(w http.ResponseWriter, r *http.Request, s *session) (store.Session, bool) {
	host, id := r.PathValue("host"), r.PathValue("session")
	open, err := c.opts.Store.SessionOf(r.Context(), host, id)
	if errors.Is(err, store.ErrNoSession) {
		c.fail(w, r, s, http.StatusNotFound, "No such session", "The hub holds no session "+textview.Escape(id)+" of host "+textview.Escape(host)+".", "")
		return open, false
	}
	if err != nil {
		c.unavailable(w, r, s, err)
		return open, false
	}
	return open, true
}

// maxEventRows bounds the session page's event rows; the rest is counted,
// and the replay and `interlock sessions show` have it all.
const maxEventRows = 5000

type sessionData struct {
	Row       sessionRow
	Events    []eventRow
	More      int
	Channels  []channelRow
	Terminals bool
	Err       string
}

type eventRow struct {
	Seq       int64
	Offset    string
	Kind      string
	Lines     []string
	Decision  string
	Action    string
	Operation bool
}

type channelRow struct {
	Channel  uint32
	Describe string
	Terminal bool
	Replay   string
}

// session is one session's statements and commands, with their decisions
// and masking, and every other entry as the journal has it (escaped).
// Masking shows which rule masked which column and how many values: the
// hub holds keyed hashes of the originals, never the originals.
func (c *Console) session(w http.ResponseWriter, r *http.Request, s *session) {
	open, ok := c.openSession(w, r, s)
	if !ok {
		return
	}
	d := sessionData{Row: c.sessionRow(open)}
	sess, err := sessionview.Read(c.records(r, open.HostID, open), func(e sessionview.Event) error {
		if len(d.Events) >= maxEventRows {
			d.More++
			return nil
		}
		d.Events = append(d.Events, eventView(e))
		return nil
	})
	if err != nil {
		c.log.Error("console: read session", "host", open.HostID, "session", open.Session, "err", err)
		d.Err = "The session could not be read whole: " + textview.Escape(err.Error())
	}
	if sess != nil {
		for _, ch := range sess.Channels {
			row := channelRow{Channel: ch.Channel, Describe: ch.Describe(), Terminal: ch.Terminal()}
			if row.Terminal {
				d.Terminals = true
				row.Replay = c.sessionLink(open.HostID, open.Session) + "/replay?channel=" + strconv.FormatUint(uint64(ch.Channel), 10)
			}
			d.Channels = append(d.Channels, row)
		}
	}
	c.render(w, r, http.StatusOK, "session", "Session "+textview.Escape(open.Session), s, d)
}

// eventView is one entry of the session as a row: statements and
// commands with their exact text (every line, escaped) and decision.
func eventView(e sessionview.Event) eventRow {
	row := eventRow{Seq: int64(e.Seq), Offset: "+" + asciicast.FormatTime(e.OffsetNS), Kind: e.Kind}
	switch e.Kind {
	case model.KindPGStatement:
		var m model.PGStatement
		if json.Unmarshal(e.Data, &m) == nil {
			row.Operation = true
			row.Lines = textview.Lines(model.ExactText(m.SQL, m.SQLBase64))
			if m.Prepared != "" {
				row.Lines = append(row.Lines, "prepared as: "+textview.Escape(m.Prepared))
			}
			if len(m.Kinds) > 0 || len(m.Tables) > 0 {
				row.Lines = append(row.Lines, "kinds "+textview.Escape(strings.Join(m.Kinds, ", "))+"; tables "+textview.Escape(strings.Join(m.Tables, ", ")))
			}
			row.Decision, row.Action = sessionview.DecisionText(m.Decision), string(m.Decision.Action)
			return row
		}
	case model.KindPGResult:
		var m model.PGResult
		if json.Unmarshal(e.Data, &m) == nil {
			s := fmt.Sprintf("statement %d: ", m.Statement)
			switch {
			case m.NotRun:
				s += "not run"
			case m.Error != "":
				s += "failed " + textview.Escape(m.SQLState) + " " + textview.Escape(m.Error)
			default:
				s += fmt.Sprintf("%s, %d rows", textview.Escape(m.Tag), m.Rows)
			}
			row.Lines = []string{s}
			return row
		}
	case model.KindPGMask, model.KindSSHMask:
		// The payload is keyed hashes of the masked values: never shown.
		var m model.MaskDecision
		if json.Unmarshal(e.Data, &m) == nil {
			s := fmt.Sprintf("masked by rule %s in %s", sessionview.Quote(m.Rule), sessionview.Quote(m.Column))
			if m.Detector != "" {
				s += " (detector " + sessionview.Quote(m.Detector) + ")"
			}
			row.Lines, row.Action = []string{fmt.Sprintf("%s: %d values (their originals never left the host)", s, m.Count)}, string(model.Mask)
			return row
		}
	case model.KindSSHRequest:
		var m model.SSHRequest
		if json.Unmarshal(e.Data, &m) == nil && (m.Type == "exec" || m.Type == "shell" || m.Type == "subsystem") {
			row.Operation = true
			row.Lines = []string{"request " + textview.Escape(m.Type)}
			if m.Command != "" {
				row.Lines = append(row.Lines, textview.Lines(model.ExactText(m.Command, m.CommandBase64))...)
			}
			row.Decision, row.Action = sessionview.DecisionText(m.Decision), string(m.Decision.Action)
			return row
		}
	case model.KindK8sRequest:
		// A kubernetes request is an operation: its resource, caller and
		// command on lines of their own (escaped by sessionview), its
		// decision in the decision column.
		var m model.K8sRequest
		if json.Unmarshal(e.Data, &m) == nil {
			row.Operation = true
			row.Lines = append([]string{fmt.Sprintf("k8s request %d", m.Seq)}, sessionview.K8sRequestLines(m)...)
			row.Decision, row.Action = sessionview.DecisionText(m.Decision), string(m.Decision.Action)
			return row
		}
	case model.KindApprovalRequest:
		var m model.ApprovalRequest
		if json.Unmarshal(e.Data, &m) == nil {
			row.Lines = append([]string{fmt.Sprintf("request %s: rule %s, %d of %s, scope %s, text sha256 %s", textview.Escape(m.ID),
				sessionview.Quote(m.Rule), m.Needed, textview.Escape(strings.Join(m.Approvers, ", ")), textview.Escape(m.Scope), textview.Escape(m.TextSHA256))},
				textview.Lines(requestText(m))...)
			row.Action = string(model.Review)
			return row
		}
	case model.KindApprovalDecision:
		var m model.ApprovalDecision
		if json.Unmarshal(e.Data, &m) == nil {
			row.Lines = []string{approvalDecisionText(m)}
			if m.Reason != "" {
				row.Lines = append(row.Lines, "reason "+sessionview.Quote(m.Reason))
			}
			return row
		}
	}
	// ssh.io chunks and the rest, as `interlock sessions show` prints them.
	// Lines starts with the offset, which has its own column here.
	prefix := "+" + asciicast.FormatTime(e.OffsetNS) + " "
	for _, l := range sessionview.Lines(e) {
		row.Lines = append(row.Lines, strings.TrimLeft(strings.TrimPrefix(l, prefix), " "))
	}
	return row
}

type replayData struct {
	Row      sessionRow
	Channel  uint32
	Describe string
	Cast     string
	Others   []channelRow
	Session  string
}

// replay is the page that plays a terminal channel with asciinema-player.
func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	open, ok := c.openSession(w, r, s)
	if !ok {
		return
	}
	sess, err := sessionview.Read(c.records(r, open.HostID, open), nil)
	if err != nil {
		c.unavailable(w, r, s, err)
		return
	}
	terms := sess.Terminals()
	if len(terms) == 0 {
		c.fail(w, r, s, http.StatusNotFound, "Nothing to replay", "This session had no terminal (no pty, shell or command).", "Its page lists what it did.")
		return
	}
	ch := terms[0]
	if v := r.URL.Query().Get("channel"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		ch = sess.Channel(uint32(n))
		if err != nil || ch == nil || !ch.Terminal() {
			c.fail(w, r, s, http.StatusNotFound, "No such terminal", "This session has no terminal channel "+textview.Escape(v)+".", "")
			return
		}
	}
	link := c.sessionLink(open.HostID, open.Session)
	d := replayData{Row: c.sessionRow(open), Channel: ch.Channel, Describe: ch.Describe(), Session: link,
		Cast: link + "/cast?channel=" + strconv.FormatUint(uint64(ch.Channel), 10)}
	for _, o := range terms {
		if o != ch {
			d.Others = append(d.Others, channelRow{Channel: o.Channel, Describe: o.Describe(), Terminal: true,
				Replay: link + "/replay?channel=" + strconv.FormatUint(uint64(o.Channel), 10)})
		}
	}
	c.render(w, r, http.StatusOK, "replay", "Replay", s, d)
}

// cast serves a terminal channel as an asciicast v2 file, rendered from
// the shipped entries by the same code as `interlock sessions export`.
func (c *Console) cast(w http.ResponseWriter, r *http.Request, s *session) {
	open, ok := c.openSession(w, r, s)
	if !ok {
		return
	}
	n, err := strconv.ParseUint(r.URL.Query().Get("channel"), 10, 32)
	if err != nil {
		http.Error(w, "channel: a channel number", http.StatusBadRequest)
		return
	}
	// Streamed: a long terminal session is never held in memory whole.
	cw := &startedWriter{w: w}
	err = asciicast.WriteChannel(cw, c.records(r, open.HostID, open), uint32(n))
	switch {
	case err == nil:
	case cw.started:
		// Cut short: abort, so that the player does not take a part
		// for the whole.
		c.log.Error("console: cast cut short", "host", open.HostID, "session", open.Session, "err", err)
		panic(http.ErrAbortHandler)
	case errors.Is(err, asciicast.ErrNoTerminal) || errors.Is(err, asciicast.ErrNoChannel):
		http.Error(w, "no such terminal channel", http.StatusNotFound)
	default:
		c.log.Error("console: cast", "host", open.HostID, "session", open.Session, "err", err)
		http.Error(w, "the session could not be read", http.StatusServiceUnavailable)
	}
}

// startedWriter sets the cast's content type at its first byte and
// remembers that the answer has begun.
type startedWriter struct {
	w       http.ResponseWriter
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/x-asciicast")
	}
	return s.w.Write(p)
}

// approvalDecisionText says who decided a request and how: the IdP
// identities of a decision the hub signed, or the local approver.
func approvalDecisionText(m model.ApprovalDecision) string {
	s := textview.Escape(m.Verdict) + " " + textview.Escape(m.ID)
	if h := m.Hub; h != nil {
		var who []string
		for _, a := range h.Approvers {
			who = append(who, sessionview.Quote(a.Username)+" ("+textview.Escape(a.Issuer)+" "+textview.Escape(a.Subject)+")")
		}
		if len(who) == 0 {
			who = []string{sessionview.Quote(h.Approver.Username) + " (" + textview.Escape(h.Approver.Issuer) + ")"}
		}
		return s + " by " + strings.Join(who, ", ") + ", signed by the hub (the note is in the entry)"
	}
	if a := m.IdP; a != nil {
		return s + " by " + sessionview.Quote(a.Username) + " (" + textview.Escape(a.Issuer) + " " + textview.Escape(a.Subject) + ") in the host's console"
	}
	if p := m.Approver.Proc; p != nil {
		return s + fmt.Sprintf(" by %s (uid %d) on the host", textview.Escape(p.User), m.Approver.Kernel.UID)
	}
	if m.Verdict == "timeout" {
		return s + ": no decision in time"
	}
	return s + fmt.Sprintf(" by uid %d on the host", m.Approver.Kernel.UID)
}
