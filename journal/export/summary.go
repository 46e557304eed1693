package export

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/journal/evidence"
	"github.com/interlock/interlock/model"
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
}

type sessionRow struct {
	ID, Target, Protocol, Client, Dst, Exe, User, Unit, Decision, Error string
	PID, UID                                                            uint32
	Opened, Closed                                                      string
	Up, Down                                                            int64
	Operations, Denials                                                 int
	principals
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
	decided := func(d model.Decision, what string) {
		ev.What, ev.Action, ev.Rule, ev.Reason = what, string(d.Action), d.Rule, d.Reason
		if d.Action == model.Deny {
			s.event(&s.denials, &s.counts.Denials, ev)
			if p.Session != "" {
				s.session(p.Session).Denials++
			}
		}
		if d.Action == model.Mask || d.Mask != nil {
			if d.Mask != nil {
				var rules []string
				for _, r := range d.Mask.Rules {
					rules = append(rules, r.Rule+" ("+strings.Join(append(append([]string{}, r.Columns...), r.Detectors...), ", ")+")")
				}
				ev.Reason = strings.Join(rules, "; ")
			}
			s.event(&s.masks, &s.counts.Masks, ev)
		}
	}
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
	case model.KindApprovalRequest:
		var r model.ApprovalRequest
		if json.Unmarshal(p.Data, &r) == nil {
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
			uid, exe := who(d.Approver)
			ev.What, ev.Action, ev.Reason = fmt.Sprintf("decision on %s by uid %s %s", d.ID, uid, exe), d.Verdict, d.Reason
			if d.Hub != nil {
				ev.What = fmt.Sprintf("decision on %s through the hub by %s", d.ID, hubApprovers(d.Hub))
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
		"Since": optTime(s.m.Selection.SinceNS), "Until": optTime(s.m.Selection.UntilNS),
	})
}

func optTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

// The page has no external assets and no script: html/template escapes
// every value, and all style is inline.
//
// Client-controlled text (executables, users, claims, SQL, commands,
// reasons) goes through textview first: html/template stops markup, but
// a control byte, a bidi override or a zero-width character would still
// render as something other than the bytes recorded. v escapes to one
// line; ml keeps lines apart in the pre-wrap cells, so a multi-line
// statement reads as multi-line, every line of it.
//
// The sessions and identities tables sit in a container that scrolls
// sideways, and their cells wrap anywhere: a table as wide as its longest
// path would otherwise push columns off a 1280-pixel screen.
var summaryTemplate = template.Must(template.Must(template.New("summary").Funcs(template.FuncMap{
	"v": textview.Escape, "ml": textview.EscapeMultiline,
	"human": humanView, "workload": workloadView, "agent": agentView,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Interlock evidence: journal {{.M.JournalID}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;font-size:12px;overflow-wrap:break-word}
th{background:#f3f3f3}td.t,.t{white-space:pre-wrap;word-break:break-all;font-family:monospace}.nw{white-space:nowrap}
.deny{color:#a00;font-weight:bold}.warn{background:#fff4d6;padding:.5em}
.scroll{overflow-x:auto;max-width:100%}.mono{font-family:monospace;word-break:break-all}.sub{color:#555}
.b{display:inline-block;padding:0 .4em;border-radius:3px;font-size:11px;font-weight:bold}
.b.ok{background:#dcf2e0;color:#075e1b;border:1px solid #5aa96b}.b.cl{background:#fdebd3;color:#8a4300;border:1px solid #d9903a}
.claimed{border-left:3px dashed #d9903a;padding-left:4px;font-style:italic}.lbl{color:#8a4300;font-size:11px}
.err{color:#a00}.chain{color:#333}td.human,td.agent{min-width:9em}td.workload{min-width:14em}
</style></head><body>
<h1>Interlock evidence bundle</h1>
<table>
<tr><th>journal</th><td>{{.M.JournalID}}</td></tr>
<tr><th>entries</th><td>{{.M.FirstSeq}} to {{.M.LastSeq}} ({{.M.Counts.Entries}} included, {{.M.Counts.Omitted}} of other sessions or times represented by their hash), proven against the signed tree of {{.M.TreeSize}} entries</td></tr>
<tr><th>selection</th><td>{{if .Since}}since {{.Since}} {{end}}{{if .Until}}until {{.Until}} {{end}}{{if .M.Selection.Session}}session {{.M.Selection.Session}}{{end}}{{if not (or .Since .Until .M.Selection.Session)}}everything{{end}}</td></tr>
<tr><th>public key</th><td class="t">{{.M.PublicKey}}</td></tr>
<tr><th>exported</th><td>{{.Created}}</td></tr>
</table>
<p>This page is a view. The evidence is entries.jsonl, checked with <code>interlock journal verify --bundle FILE --pubkey journal.pub</code>; every row below names the entry (seq) it comes from.</p>
{{range .M.Warnings}}<p class="warn">{{.}}</p>{{end}}
<h2>Sessions ({{.SessionCount}})</h2>
<div class="scroll"><table id="sessions"><tr><th>session</th><th>target</th><th>process</th><th>human</th><th>workload</th><th>agent</th><th>outcome</th></tr>
{{range .Sessions}}<tr data-session="{{.ID}}"><td><div class="mono">{{.ID}}</div><div class="sub nw">{{.Opened}}</div><div class="sub nw">{{if .Closed}}{{.Closed}}{{else}}open{{end}}</div></td><td><b>{{v .Target}}</b> ({{.Protocol}})<div class="sub">{{.Client}} → {{.Dst}}</div></td><td>pid {{.PID}} uid {{.UID}}{{if .User}} ({{v .User}}){{end}}<div class="mono">{{v .Exe}}</div>{{if .Unit}}<div class="sub">{{v .Unit}}</div>{{end}}</td>{{template "principals" .}}<td class="outcome">{{.Decision}}<div>{{.Operations}} operation{{if ne .Operations 1}}s{{end}}, <span{{if .Denials}} class="deny"{{end}}>{{.Denials}} denied</span></div><div class="sub">{{.Up}} bytes up, {{.Down}} down</div>{{if .Error}}<div class="err t">{{ml .Error}}</div>{{end}}</td></tr>
{{end}}</table></div>{{if gt .SessionCount .MaxRows}}<p>Only the first {{.MaxRows}} are shown.</p>{{end}}
<h2>Identities ({{.IdentityCount}})</h2>
<div class="scroll"><table id="identities"><tr><th>uid</th><th>user</th><th>executable</th><th>sha-256</th><th>unit</th><th>container</th><th>human</th><th>workload</th><th>agent</th><th>sessions</th></tr>
{{range .Identities}}<tr><td>{{.UID}}</td><td>{{v .User}}</td><td class="t">{{v .Exe}}</td><td class="t">{{.ExeSHA256}}</td><td>{{v .Unit}}</td><td>{{v .Container}}</td>{{template "principals" .}}<td>{{.Sessions}}</td></tr>
{{end}}</table></div>
<h2>Denials ({{.Counts.Denials}})</h2>
{{template "events" .Denials}}
<h2>Approvals ({{.Counts.Approvals}})</h2>
{{template "events" .Approvals}}
<h2>Masking decisions ({{.Counts.Masks}})</h2>
{{template "events" .Masks}}
</body></html>
{{define "events"}}{{if .}}<table><tr><th>seq</th><th>time</th><th>session</th><th>kind</th><th>what</th><th>action</th><th>rule</th><th>reason</th></tr>
{{range .}}<tr><td>{{.Seq}}</td><td>{{.Time}}</td><td class="t">{{.Session}}</td><td>{{.Kind}}</td><td class="t">{{ml .What}}</td><td{{if eq .Action "deny"}} class="deny"{{end}}>{{.Action}}</td><td>{{v .Rule}}</td><td class="t">{{ml .Reason}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}{{end}}
`)).Parse(principalTemplates))
