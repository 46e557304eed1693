package export

import (
	"html/template"
	"time"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// The page has no external assets and no script: html/template escapes
// every value, and all style is inline.
//
// Client-controlled text (executables, users, claims, SQL, commands,
// paths, reasons) goes through textview first: html/template stops
// markup, but a control byte, a bidi override or a zero-width character
// would still render as something other than the bytes recorded. v
// escapes to one line; ml keeps lines apart in the pre-wrap cells, so a
// multi-line statement reads as multi-line, every line of it. Nothing is
// cut: a long statement scrolls inside its cell.
//
// Layout: it is read on a laptop (1366x768, 1280 wide). Every table has a
// fixed layout with column widths in percent and cells that wrap
// anywhere, so no table is wider than the page; the page never scrolls
// sideways.
//
// Links: every operation row is the anchor e<seq> of its entry, its seq a
// link to itself; the denials, approvals and masking rows link to the
// operation they concern; each session's row links to its activity
// (s-<id>). The entry itself is the line of entries.jsonl with that seq.
var summaryTemplate = template.Must(template.Must(template.New("summary").Funcs(template.FuncMap{
	"v": textview.Escape, "ml": textview.EscapeMultiline, "esc": esc,
	"human": humanView, "workload": workloadView, "agent": agentView,
	"humanText": sessionview.HumanText, "agentText": sessionview.AgentText,
	"workloadText": func(w *model.Workload) string { return sessionview.WorkloadText(w, 0) },
	"tm":           shortTime,
	// anchored marks an events table whose rows are the anchors of their
	// entries (approvals, masking: entries no other row stands for).
	"anchored": func(rows []eventRow) eventTable { return eventTable{rows, true} },
	"plain":    func(rows []eventRow) eventTable { return eventTable{rows, false} },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Interlock evidence: journal {{.M.JournalID}}</title>
<style>
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1em 1.25em;color:#111;max-width:1800px}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
h3{font-size:1em;margin:1.4em 0 .3em}h4{font-size:.95em;margin:.8em 0 .2em}
nav{font-size:13px;margin:.5em 0}nav a{margin-right:1em}
table{border-collapse:collapse;width:100%;margin:.5em 0;table-layout:fixed}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;font-size:12px;overflow-wrap:anywhere;word-break:break-word}
th{background:#f3f3f3}td.t,.t{white-space:pre-wrap;overflow-wrap:anywhere;font-family:monospace}
.op{max-height:14em;overflow:auto}.nw{white-space:nowrap}
.deny{color:#a00;font-weight:bold}.warn{background:#fff4d6;padding:.5em}
.mono{font-family:monospace;overflow-wrap:anywhere}.sub{color:#555}
.b{display:inline-block;padding:0 .4em;border-radius:3px;font-size:11px;font-weight:bold}
.b.ok{background:#dcf2e0;color:#075e1b;border:1px solid #5aa96b}.b.cl{background:#fdebd3;color:#8a4300;border:1px solid #d9903a}
.claimed{border-left:3px dashed #d9903a;padding-left:4px;font-style:italic}.lbl{color:#8a4300;font-size:11px}
.err{color:#a00}.chain{color:#333}
.k{display:inline-block;min-width:4.5em;font:bold 11px system-ui,sans-serif;color:#333;background:#eee;border-radius:3px;padding:0 .3em;margin-right:.4em}
td.act{font-weight:bold}td.act.deny{color:#fff;background:#b00020}td.act.review{background:#fff0c2}td.act.mask{background:#e5e1f7}td.act.allow{color:#075e1b}
tr:target{outline:2px solid #1a5fb4}
.who{margin:.2em 0 .4em;font-size:13px}.who b{font-weight:600}
section.sess{border-top:1px solid #e3e3e3}
</style></head><body>
<h1>Interlock evidence bundle</h1>
<table class="meta"><colgroup><col style="width:12%"><col></colgroup>
<tr><th>journal</th><td>{{.M.JournalID}}</td></tr>
<tr><th>entries</th><td>{{.M.FirstSeq}} to {{.M.LastSeq}} ({{.M.Counts.Entries}} included, {{.M.Counts.Omitted}} of other sessions or times represented by their hash), proven against the signed tree of {{.M.TreeSize}} entries</td></tr>
<tr><th>selection</th><td>{{if .Since}}since {{.Since}} {{end}}{{if .Until}}until {{.Until}} {{end}}{{if .M.Selection.Session}}session {{.M.Selection.Session}}{{end}}{{if not (or .Since .Until .M.Selection.Session)}}everything{{end}}</td></tr>
<tr><th>public key</th><td class="t">{{.M.PublicKey}}</td></tr>
<tr><th>exported</th><td>{{.Created}}</td></tr>
</table>
<p>This page is a view. The evidence is entries.jsonl, checked with <code>interlock journal verify --bundle FILE --pubkey journal.pub</code>; every row below names the entry (seq) it comes from, the line of entries.jsonl with that seq. Client text is shown escaped (<code>\x1b</code>, <code>\u202e</code>); masked values are never shown.</p>
<nav><a href="#sessions">Sessions</a><a href="#activity">Activity</a><a href="#identities">Identities</a><a href="#denials">Denials</a><a href="#approvals">Approvals</a><a href="#masking">Masking</a></nav>
{{range .M.Warnings}}<p class="warn">{{.}}</p>{{end}}
<h2>Sessions ({{.SessionCount}})</h2>
<table id="sessions"><colgroup><col style="width:15%"><col style="width:12%"><col style="width:17%"><col style="width:15%"><col style="width:18%"><col style="width:11%"><col style="width:12%"></colgroup>
<tr><th>session</th><th>target</th><th>process</th><th>human</th><th>workload</th><th>agent</th><th>outcome</th></tr>
{{range .Sessions}}<tr data-session="{{.ID}}"><td><div class="mono"><a href="#s-{{.ID}}">{{.ID}}</a></div><div class="sub">{{tm .Opened}}</div><div class="sub">{{if .Closed}}{{tm .Closed}}{{else}}open{{end}}</div></td><td><b>{{v .Target}}</b> ({{.Protocol}})<div class="sub">{{.Client}} → {{.Dst}}</div></td><td>pid {{.PID}} uid {{.UID}}{{if .User}} ({{v .User}}){{end}}<div class="mono">{{v .Exe}}</div>{{if .Unit}}<div class="sub">{{v .Unit}}</div>{{end}}</td>{{template "principals" .}}<td class="outcome">{{.Decision}}<div>{{.Operations}} operation{{if ne .Operations 1}}s{{end}}, <span{{if .Denials}} class="deny"{{end}}>{{.Denials}} denied</span></div><div class="sub">{{.Up}} bytes up, {{.Down}} down</div>{{if .Error}}<div class="err t">{{ml .Error}}</div>{{end}}</td></tr>
{{end}}</table>{{if gt .SessionCount .MaxRows}}<p>Only the first {{.MaxRows}} are shown.</p>{{end}}
<h2 id="activity">Activity</h2>
<p class="sub">Times are UTC. What each session did, operation by operation: SQL statements, ssh exec commands, shells and subsystems, sftp operations, refused requests and channels, Kubernetes API requests (with who made them, their response, an exec's exit and port-forward streams). The action is what the operation got: <b>allow</b>, <b>deny</b>, <b>mask</b> (values of its output were masked, as its masking entries record), <b>review: approved</b> or <b>review: denied</b> (held for approval; timeouts deny).{{if .OpsDropped}} Only the first {{.MaxRows}} operations are listed; {{.OpsDropped}} more are in entries.jsonl.{{end}}</p>
{{range .Sessions}}<section class="sess" id="s-{{.ID}}">
<h3>Session <span class="mono">{{.ID}}</span> · {{v .Target}} ({{.Protocol}}) · {{tm .Opened}} → {{if .Closed}}{{tm .Closed}}{{else}}open{{end}}</h3>
<div class="who">{{with humanText .Human}}<b>human</b> {{.}} · {{end}}{{with workloadText .Workload}}<b>workload</b> {{.}} · {{end}}{{with agentText .Agent}}<b>agent</b> {{.}} · {{end}}<b>process</b> pid {{.PID}} uid {{.UID}}{{if .User}} ({{v .User}}){{end}} <span class="mono">{{v .Exe}}</span></div>
{{range .K8s}}<div class="who"><b>kubernetes</b> <span class="mono">{{.}}</span></div>{{end}}
{{if .Casts}}<div class="who"><b>terminal recording</b>{{range .Casts}} <a class="mono" href="{{.}}">{{.}}</a>{{end}} (asciicast v2 in the bundle; <code>interlock sessions replay</code> plays it from the journal)</div>{{end}}
{{if .Ops}}<table class="ops"><colgroup><col style="width:6%"><col style="width:11%"><col style="width:39%"><col style="width:10%"><col style="width:17%"><col style="width:17%"></colgroup>
<tr><th>entry</th><th>time</th><th>operation</th><th>action</th><th>rule and reason</th><th>result</th></tr>
{{range .Ops}}{{$o := .}}<tr id="e{{.Seq}}" data-kind="{{.Kind}}" data-outcome="{{.Action}}"><td><a href="#e{{.Seq}}">{{.Seq}}</a></td><td>{{tm .Time}}</td><td><span class="k">{{.Kind}}</span><div class="t op">{{esc .Esc .What}}</div></td><td class="act {{.ActionKind}}">{{.Action}}</td><td>{{v .Rule}}{{if .Reason}}<div class="sub t">{{ml .Reason}}</div>{{end}}</td><td>{{range .Result}}<div class="t">{{esc $o.Esc .}}</div>{{end}}{{range .MaskNotes}}<div class="t">{{v .}}</div>{{end}}{{with .Covered}}<div class="sub">mask rule {{v .}} covered its output; nothing was masked</div>{{end}}</td></tr>
{{end}}</table>{{if gt .OpCount (len .Ops)}}<p class="sub">{{len .Ops}} of its {{.OpCount}} operations are listed.</p>{{end}}{{else}}<p class="sub">No operations recorded.</p>{{end}}
{{if .Transfers}}<h4>Files transferred</h4>
<table class="files"><colgroup><col style="width:6%"><col style="width:7%"><col style="width:9%"><col style="width:36%"><col style="width:12%"><col style="width:12%"><col style="width:18%"></colgroup>
<tr><th>entry</th><th>how</th><th>direction</th><th>path</th><th>bytes</th><th>action</th><th>note</th></tr>
{{range .Transfers}}<tr data-path="{{v .Path}}"><td><a href="#e{{.Seq}}">{{.Seq}}</a></td><td>{{.How}}</td><td>{{.Direction}}</td><td class="t">{{ml .Path}}</td><td>{{.Bytes}}</td><td class="act {{.Op.ActionKind}}">{{.Op.Action}}</td><td class="sub">{{.Note}}; no content hash is recorded</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}
<h2>Identities ({{.IdentityCount}})</h2>
<table id="identities"><colgroup><col style="width:5%"><col style="width:7%"><col style="width:15%"><col style="width:12%"><col style="width:8%"><col style="width:7%"><col style="width:14%"><col style="width:16%"><col style="width:10%"><col style="width:6%"></colgroup>
<tr><th>uid</th><th>user</th><th>executable</th><th>sha-256</th><th>unit</th><th>container</th><th>human</th><th>workload</th><th>agent</th><th>sessions</th></tr>
{{range .Identities}}<tr><td>{{.UID}}</td><td>{{v .User}}</td><td class="t">{{v .Exe}}</td><td class="t">{{.ExeSHA256}}</td><td>{{v .Unit}}</td><td>{{v .Container}}</td>{{template "principals" .}}<td>{{.Sessions}}</td></tr>
{{end}}</table>
<h2 id="denials">Denials ({{.Counts.Denials}})</h2>
{{template "events" plain .Denials}}
<h2 id="approvals">Approvals ({{.Counts.Approvals}})</h2>
{{template "events" anchored .Approvals}}
<h2 id="masking">Masking decisions ({{.Counts.Masks}})</h2>
<p class="sub">What masking did, from the pg.mask, ssh.mask and k8s.mask entries and the Secret values masked in Kubernetes responses: how many values each rule masked and where. The originals are not in the bundle, only their keyed hashes.</p>
{{template "events" anchored .Masks}}
</body></html>
{{define "events"}}{{$anchor := .Anchor}}{{if .Rows}}<table class="events"><colgroup><col style="width:6%"><col style="width:11%"><col style="width:11%"><col style="width:9%"><col style="width:31%"><col style="width:7%"><col style="width:10%"><col style="width:15%"></colgroup>
<tr><th>seq</th><th>time</th><th>session</th><th>kind</th><th>what</th><th>action</th><th>rule</th><th>reason</th></tr>
{{range .Rows}}<tr{{if $anchor}} id="e{{.Seq}}"{{end}}><td>{{if $anchor}}<a href="#e{{.Seq}}">{{.Seq}}</a>{{else}}{{.Seq}}{{end}}{{if .Link}}<div class="sub"><a href="#e{{.Link}}">→ {{.Link}}</a></div>{{end}}</td><td>{{tm .Time}}</td><td class="t">{{.Session}}</td><td>{{.Kind}}</td><td class="t">{{esc .Esc .What}}</td><td{{if eq .Action "deny" "timeout"}} class="deny"{{end}}>{{.Action}}</td><td>{{v .Rule}}</td><td class="t">{{ml .Reason}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}{{end}}
`)).Parse(principalTemplates))

// shortTime shows an RFC 3339 time (UTC) to the millisecond, with a space
// where a narrow cell may wrap it; the entries have it to the nanosecond.
func shortTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

// eventTable is one of the denials, approvals and masking tables.
type eventTable struct {
	Rows   []eventRow
	Anchor bool
}
