package export

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// maxRows caps each table of the summary so it stays one page a browser
// opens at once; the counts say how many there were.
const maxRows = 5000

// summary gathers what summary.html shows while the entries stream by.
type summary struct {
	m          *evidence.Manifest
	sessions   map[string]*sessionRow
	order      []string
	identities map[string]*identityRow
	denials    []eventRow
	approvals  []eventRow
	masks      []eventRow
	counts     struct{ Denials, Approvals, Masks int }
	ptys       map[string]bool
	act        activity
}

type sessionRow struct {
	ID, Target, Protocol, Client, Dst, Exe, User, Unit, Decision, Error string
	PID, UID                                                            uint32
	Opened, Closed                                                      string
	Up, Down                                                            int64
	Operations, Denials                                                 int
	principals
	// Ops are the session's operations (summary_activity.go), OpCount
	// how many it had; Transfers the files it moved.
	Ops       []*opRow
	OpCount   int
	Transfers []*transferRow
	// Casts are the bundle's terminal recordings of the session.
	Casts []string
	// K8s says who a kubernetes session called the API server as, and
	// whose each bearer token was (escaped by sessionview).
	K8s []string
}

type identityRow struct {
	Exe, ExeSHA256, User, Unit, Container string
	UID                                   uint32
	Sessions                              int
	principals
}

// principals are who is behind a session's process. EnvClaims are the CI
// variables an older journal recorded before workloads were resolved:
// shown, as claimed, only when there is no Workload.
type principals struct {
	Human     *model.Human
	Workload  *model.Workload
	Agent     *model.Agent
	EnvClaims []string
}

func principalsOf(id model.Identity) principals {
	p := principals{Human: id.Human, Workload: id.Workload, Agent: id.Agent}
	if p.Workload == nil {
		for k, v := range id.Claimed {
			p.EnvClaims = append(p.EnvClaims, k+"="+v)
		}
		sort.Strings(p.EnvClaims)
	}
	return p
}

type eventRow struct {
	Seq                                     uint64
	Time, Session, Kind, What, Action, Rule string
	Reason                                  string
	// Req is the approval request the row concerns; Link the operation
	// row (its entry's seq) the row refers to, 0 for none in the page.
	Req  string
	Link uint64
	// Esc: What is escaped already (a kubernetes request's text).
	Esc bool
}

func newSummary(m *evidence.Manifest) *summary {
	return &summary{m: m, sessions: map[string]*sessionRow{}, identities: map[string]*identityRow{}, ptys: map[string]bool{}}
}

func (s *summary) event(list *[]eventRow, n *int, r eventRow) {
	*n++
	if len(*list) < maxRows {
		*list = append(*list, r)
	}
}

func (s *summary) session(id string) *sessionRow {
	r := s.sessions[id]
	if r == nil {
		r = &sessionRow{ID: id}
		s.sessions[id] = r
		s.order = append(s.order, id)
	}
	return r
}

// add takes one selected entry; it reports true when the entry is the
// first sign that its session had a terminal (a pty-req).
func (s *summary) add(seq uint64, p evidence.Body) (pty bool) {
	ev := eventRow{Seq: seq, Time: timeString(p.Time), Session: p.Session, Kind: p.Kind}
	// decided lists a denial. What masking did is in pg.mask and ssh.mask
	// entries: a decision of mask only says a mask rule covers the
	// operation, so it lists nothing.
	decided := func(d model.Decision, what string) {
		ev.What, ev.Action, ev.Rule, ev.Reason = what, string(d.Action), d.Rule, d.Reason
		if d.Action == model.Deny {
			s.event(&s.denials, &s.counts.Denials, ev)
			if p.Session != "" {
				s.session(p.Session).Denials++
			}
		}
	}
	s.activityEntry(seq, p, ev)
	switch p.Kind {
	case model.KindSessionOpen:
		var o model.SessionOpen
		if json.Unmarshal(p.Data, &o) != nil {
			return false
		}
		r := s.session(p.Session)
		r.Target, r.Protocol, r.Opened = o.Target.Name, string(o.Target.Protocol), ev.Time
		r.Client, r.Dst, r.Decision = o.Client.String(), o.OrigDst.String(), string(o.Decision.Action)
		r.PID, r.UID = o.Identity.Kernel.TGID, o.Identity.Kernel.UID
		r.principals = principalsOf(o.Identity)
		if o.Kubernetes != nil {
			r.K8s = append(r.K8s, sessionview.K8sStartupText(*o.Kubernetes))
		}
		idr := identityRow{UID: o.Identity.Kernel.UID, principals: r.principals}
		if pr := o.Identity.Proc; pr != nil {
			r.Exe, r.User, r.Unit = pr.Exe, pr.User, pr.SystemdUnit
			idr.Exe, idr.ExeSHA256, idr.User, idr.Unit, idr.Container = pr.Exe, pr.ExeSHA256, pr.User, pr.SystemdUnit, pr.ContainerID
		}
		// The principals are part of who connected: the same program run
		// by another person, job or agent is another identity.
		who, _ := json.Marshal([]any{idr.Human, idr.Workload, idr.Agent, idr.EnvClaims})
		key := fmt.Sprintf("%d\x00%s\x00%s\x00%s\x00%s", idr.UID, idr.Exe, idr.ExeSHA256, idr.Unit, who)
		if s.identities[key] == nil {
			s.identities[key] = &idr
		}
		s.identities[key].Sessions++
		decided(o.Decision, "connect to "+o.Target.Name)
	case model.KindSessionClose:
		var c model.SessionClose
		if json.Unmarshal(p.Data, &c) == nil {
			r := s.session(p.Session)
			r.Closed, r.Up, r.Down, r.Error = ev.Time, c.BytesUp, c.BytesDown, c.Error
		}
	case model.KindPGStatement:
		var st model.PGStatement
		if json.Unmarshal(p.Data, &st) == nil {
			s.session(p.Session).Operations++
			decided(st.Decision, st.SQL)
		}
	case model.KindSSHRequest:
		var rq model.SSHRequest
		if json.Unmarshal(p.Data, &rq) == nil {
			s.session(p.Session).Operations++
			what := rq.Type
			if rq.Command != "" {
				what += ": " + rq.Command
			}
			decided(rq.Decision, what)
			if rq.Type == "pty-req" && p.Session != "" && !s.ptys[p.Session] {
				s.ptys[p.Session] = true
				return true
			}
		}
	case model.KindSSHChannel:
		var ch model.SSHChannel
		if json.Unmarshal(p.Data, &ch) == nil {
			decided(ch.Decision, "channel "+ch.Type+" "+ch.Detail)
		}
	case model.KindSSHSFTP:
		var f model.SSHSFTP
		if json.Unmarshal(p.Data, &f) == nil {
			s.session(p.Session).Operations++
			decided(f.Decision, "sftp "+f.Op+" "+f.Path)
		}
	case model.KindPGMask:
		var m model.PGMask
		if json.Unmarshal(p.Data, &m) == nil && m.Count > 0 {
			ev.What, ev.Action, ev.Rule, ev.Link = fmt.Sprintf("statement %d: %s", m.Statement, m.Column), string(model.Mask), m.Rule, m.Statement
			ev.Reason = maskNote(m.Rule, m.Column, m.Detector, m.Count)
			s.event(&s.masks, &s.counts.Masks, ev)
		}
	case model.KindSSHMask, model.KindK8sMask:
		var m model.MaskDecision
		if json.Unmarshal(p.Data, &m) == nil && m.Count > 0 {
			ev.What, ev.Action, ev.Rule = m.Column, string(model.Mask), m.Rule
			ev.Reason = maskNote(m.Rule, m.Column, m.Detector, m.Count)
			s.event(&s.masks, &s.counts.Masks, ev)
		}
	case model.KindApprovalRequest:
		var r model.ApprovalRequest
		if json.Unmarshal(p.Data, &r) == nil {
			ev.Req = r.ID
			uid, exe := who(r.Requester)
			ev.What, ev.Rule = fmt.Sprintf("request %s by uid %s %s: %s %s on %s (needs %d of %s)", r.ID, uid, exe, r.Operation.Kind, r.Operation.Text, r.Target, r.Needed, strings.Join(r.Approvers, ", ")), r.Rule
			if r.TextSHA256 != "" {
				// What the approver's --expect named, so an auditor can
				// tie the approval to these exact bytes.
				ev.What += "\ntext sha256 " + r.TextSHA256
			}
			s.event(&s.approvals, &s.counts.Approvals, ev)
		}
	case model.KindApprovalDecision:
		var d model.ApprovalDecision
		if json.Unmarshal(p.Data, &d) == nil {
			ev.Req = d.ID
			uid, exe := who(d.Approver)
			ev.What, ev.Action, ev.Reason = fmt.Sprintf("decision on %s by uid %s %s", d.ID, uid, exe), d.Verdict, d.Reason
			if d.Hub != nil {
				ev.What = fmt.Sprintf("decision on %s through the hub by %s", d.ID, hubApprovers(d.Hub))
			}
			if d.IdP != nil {
				ev.What = fmt.Sprintf("decision on %s in the host's console by %s", d.ID, idpApprover(*d.IdP))
			}
			s.event(&s.approvals, &s.counts.Approvals, ev)
			if d.Verdict != model.VerdictApprove {
				s.event(&s.denials, &s.counts.Denials, ev)
			}
		}
	case model.KindGrantExpired:
		var g model.GrantExpired
		if json.Unmarshal(p.Data, &g) == nil {
			ev.What = "grant " + g.ID + " expired (" + g.Scope + ")"
			s.event(&s.approvals, &s.counts.Approvals, ev)
		}
	case model.KindK8sRequest, model.KindK8sResponse, model.KindK8sExec, model.KindK8sPortFwd, model.KindK8sIdentity:
		return s.k8sEntry(seq, p, ev)
	case model.KindGap:
		var g model.Gap
		if json.Unmarshal(p.Data, &g) == nil {
			s.m.Warnings = appendOnce(s.m.Warnings, fmt.Sprintf("the journal records lost output (journal.gap entries), first at seq %d", seq))
		}
	}
	return false
}

func appendOnce(list []string, w string) []string {
	for _, x := range list {
		if strings.HasPrefix(x, w[:min(len(w), 40)]) {
			return list
		}
	}
	return append(list, w)
}

func (s *summary) render(w io.Writer) error {
	s.finishActivity()
	var sessions []*sessionRow
	for _, id := range s.order {
		if len(sessions) == maxRows {
			break
		}
		sessions = append(sessions, s.sessions[id])
	}
	var ids []*identityRow
	for _, r := range s.identities {
		ids = append(ids, r)
	}
	sort.Slice(ids, func(i, k int) bool {
		return ids[i].Sessions > ids[k].Sessions || ids[i].Sessions == ids[k].Sessions && ids[i].Exe < ids[k].Exe
	})
	if len(ids) > maxRows {
		ids = ids[:maxRows]
	}
	return summaryTemplate.Execute(w, map[string]any{
		"M": s.m, "Created": timeString(s.m.CreatedNS), "Sessions": sessions, "SessionCount": len(s.sessions),
		"Identities": ids, "IdentityCount": len(s.identities),
		"Denials": s.denials, "Approvals": s.approvals, "Masks": s.masks, "Counts": s.counts, "MaxRows": maxRows,
		"OpsDropped": s.act.dropped,
		"Since":      optTime(s.m.Selection.SinceNS), "Until": optTime(s.m.Selection.UntilNS),
	})
}

func optTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}
