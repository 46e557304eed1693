package sessionview

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/interlock/interlock/internal/textview"
	"github.com/interlock/interlock/model"
)

// The principals behind a session as text for a person: the sessions
// list, the bundle's views and `sessions show` all say them the same way.
// Every function returns escaped text (textview): claimed values are the
// client's to choose. Where a value could be taken for interlock's own
// words, such as a repository named "x (verified)", it is quoted, and a
// quote in it escaped, so the provenance after it is always interlock's.

// LoginText is the login behind a process: the login user's name (its
// uid when it has no name), "no login" for a process started by no login
// (a service), "" when nothing was resolved.
func LoginText(h *model.Human) string {
	switch {
	case h == nil:
		return ""
	case h.NoLogin || h.LoginUID == nil:
		return "no login"
	case h.LoginUser != "":
		return token(h.LoginUser)
	}
	return fmt.Sprintf("uid %d", *h.LoginUID)
}

// ChainText is the changes of user along the parent chain, outermost
// first: "alice → root via sudo → postgres via su". A hop that does not
// start from where the last one ended begins a new run after a comma.
func ChainText(h *model.Human) string {
	if h == nil {
		return ""
	}
	var b strings.Builder
	for i, hop := range h.Chain {
		if i == 0 || hop.FromUID != h.Chain[i-1].ToUID {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(userText(hop.FromUser, hop.FromUID))
		}
		b.WriteString(" → " + userText(hop.ToUser, hop.ToUID))
		if hop.Via != "" {
			b.WriteString(" via " + token(hop.Via))
		}
	}
	return b.String()
}

// HumanText is the whole human on one line: "alice (login uid 1000,
// session 7), alice → root via sudo, key SHA256:...".
func HumanText(h *model.Human) string {
	if h == nil {
		return ""
	}
	s := LoginText(h)
	var ids []string
	if h.LoginUID != nil && !h.NoLogin {
		ids = append(ids, fmt.Sprintf("login uid %d", *h.LoginUID))
	}
	if h.SessionID != nil {
		ids = append(ids, fmt.Sprintf("session %d", *h.SessionID))
	}
	if len(ids) > 0 {
		s += " (" + strings.Join(ids, ", ") + ")"
	}
	if c := ChainText(h); c != "" {
		s += ", " + c
	}
	if h.KeyFingerprint != "" {
		s += ", key " + token(h.KeyFingerprint)
	}
	if h.KeyID != "" {
		s += ", key id " + Quote(h.KeyID)
	}
	return s
}

func userText(name string, uid uint32) string {
	if name == "" {
		return fmt.Sprintf("uid %d", uid)
	}
	return token(name)
}

// WorkloadName names the job: "acme/billing@refs/heads/main", from its
// repository (or project, pipeline, subject, platform) and ref, cut to
// about max bytes (0: whole). A name that is not one plain token is
// quoted, and a cut one ends in "…" inside the quotes.
func WorkloadName(w *model.Workload, max int) string {
	if w == nil {
		return ""
	}
	name := ""
	for _, k := range []string{"repository", "project", "pipeline"} {
		if name = w.Claims[k]; name != "" {
			break
		}
	}
	for _, alt := range []string{w.Subject, w.Platform, w.Issuer} {
		if name == "" {
			name = alt
		}
	}
	if ref := w.Claims["ref"]; ref != "" {
		name += "@" + ref
	}
	if max > 0 && len(name) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut] + "…"
	}
	if name == "" {
		return `""`
	}
	return token(name)
}

// ProvenanceText is a provenance as a word; an empty one is "unknown".
func ProvenanceText(p model.Provenance) string {
	if p == "" {
		return "unknown"
	}
	return token(string(p))
}

// WorkloadText is the job and its provenance, last where nothing the
// client wrote can follow it: "acme/billing@refs/heads/main (verified)".
// A token that was refused adds why.
func WorkloadText(w *model.Workload, max int) string {
	if w == nil {
		return ""
	}
	s := WorkloadName(w, max) + " (" + ProvenanceText(w.Provenance) + ")"
	if w.Error != "" {
		s += ", token refused: " + Quote(w.Error)
	}
	return s
}

// AgentText is the agent's name, with "(claimed)" when what matched it
// is the process's to write (its command line).
func AgentText(a *model.Agent) string {
	if a == nil {
		return ""
	}
	s := token(a.Name)
	if a.Provenance == model.ProvClaimed {
		s += " (claimed)"
	}
	return s
}

// AgentDetail is how the agent was found: "matched by exe, pid 42
// /usr/bin/claude".
func AgentDetail(a *model.Agent) string {
	if a == nil {
		return ""
	}
	s := "matched by " + token(a.MatchedBy) + fmt.Sprintf(", pid %d", a.PID)
	if a.Exe != "" {
		s += " " + token(a.Exe)
	}
	return s
}

// token is s as is when it is one plain word or path, quoted otherwise.
func token(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@._-/:+=", r)) {
			return Quote(s)
		}
	}
	return textview.Escape(s)
}
