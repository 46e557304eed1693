package export

import (
	"fmt"
	"sort"
	"strings"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/sessionview"
)

// How summary.html shows the principals behind a session. The cells are
// built here as text sessionview has already escaped (client bytes made
// visible), which html/template then escapes for HTML: neither is done
// twice. Provenance is a badge whose class and word come from this code,
// never from the journal's text, so only a workload recorded as verified
// gets the verified badge; anything else, including a provenance this
// build does not know, is shown as claimed with its recorded word.

type humanCell struct{ Login, IDs, Chain, Key string }

type workloadCell struct {
	Verified              bool
	Provenance, Name      string
	Issuer, Source, Error string
	Claims                []string
}

type agentCell struct {
	Name, Detail string
	Claimed      bool
}

func humanView(h *model.Human) *humanCell {
	if h == nil {
		return nil
	}
	c := &humanCell{Login: sessionview.LoginText(h), Chain: sessionview.ChainText(h)}
	var ids []string
	if h.LoginUID != nil && !h.NoLogin {
		ids = append(ids, fmt.Sprintf("login uid %d", *h.LoginUID))
	}
	if h.SessionID != nil {
		ids = append(ids, fmt.Sprintf("session %d", *h.SessionID))
	}
	c.IDs = strings.Join(ids, " · ")
	switch {
	case h.KeyFingerprint != "" && h.KeyID != "":
		c.Key = textview.Escape(h.KeyFingerprint) + " (" + textview.Escape(h.KeyID) + ")"
	case h.KeyFingerprint != "":
		c.Key = textview.Escape(h.KeyFingerprint)
	case h.KeyID != "":
		c.Key = textview.Escape(h.KeyID)
	}
	return c
}

func workloadView(w *model.Workload) *workloadCell {
	if w == nil {
		return nil
	}
	c := &workloadCell{
		Verified:   w.Provenance == model.ProvVerified,
		Provenance: sessionview.ProvenanceText(w.Provenance),
		Name:       sessionview.WorkloadName(w, 0),
		Issuer:     textview.Escape(w.Issuer),
		Source:     textview.Escape(w.TokenSource),
		Error:      textview.Escape(w.Error),
	}
	for k, v := range w.Claims {
		c.Claims = append(c.Claims, textview.Escape(k)+"="+textview.Escape(v))
	}
	sort.Strings(c.Claims)
	return c
}

func agentView(a *model.Agent) *agentCell {
	if a == nil {
		return nil
	}
	return &agentCell{Name: textview.Escape(a.Name), Detail: sessionview.AgentDetail(a), Claimed: a.Provenance == model.ProvClaimed}
}

// principalTemplates render a principals value (sessionRow and
// identityRow embed one) as three cells: human, workload, agent. The
// classes and data-provenance are for people and for the browser test;
// their values are fixed here.
const principalTemplates = `
{{define "principals"}}<td class="human">{{with human .Human}}<b>{{.Login}}</b>
{{- if .IDs}}<div class="sub">{{.IDs}}</div>{{end}}
{{- if .Chain}}<div class="chain">{{.Chain}}</div>{{end}}
{{- if .Key}}<div class="sub mono">key {{.Key}}</div>{{end}}
{{- else}}<span class="sub">unknown</span>{{end}}</td>
<td class="workload">{{with workload .Workload}}
{{- if .Verified}}<span class="b ok" data-provenance="verified">verified</span>
{{- else}}<span class="b cl" data-provenance="claimed">{{.Provenance}}</span>{{end}}
{{- $c := not .Verified}}<div class="mono{{if $c}} claimed{{end}}">{{.Name}}</div>
{{- if and .Verified .Issuer}}<div class="sub mono">issuer {{.Issuer}}</div>{{end}}
{{- if .Claims}}<div class="{{if $c}}claimed{{end}}">{{if $c}}<div class="lbl">claimed by the process:</div>{{end}}
{{- range .Claims}}<div class="mono">{{.}}</div>{{end}}</div>{{end}}
{{- if .Source}}<div class="sub">token from {{.Source}}</div>{{end}}
{{- if .Error}}<div class="err mono">token refused: {{.Error}}</div>{{end}}
{{- else}}{{if .EnvClaims}}<span class="b cl" data-provenance="claimed">claimed</span><div class="claimed"><div class="lbl">CI environment, claimed by the process:</div>
{{- range .EnvClaims}}<div class="mono">{{v .}}</div>{{end}}</div>
{{- else}}<span class="sub">none</span>{{end}}{{end}}</td>
<td class="agent">{{with agent .Agent}}<b>{{.Name}}</b>
{{- if .Claimed}} <span class="b cl" data-provenance="claimed">claimed</span>{{end}}<div class="sub">{{.Detail}}</div>
{{- else}}<span class="sub">none</span>{{end}}</td>{{end}}`
