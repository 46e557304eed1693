package sessionview

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/interlock/interlock/model"
)

// The lines of a kubernetes session's entries. Every name in them (the
// path, namespace, pod, user, command) comes from the client or from an
// API server it may control, so all of it is quoted; the verb, resource
// and API group are words when they are plain tokens, quoted otherwise.

// quoteList quotes each string and joins them with spaces: a command's
// arguments, a user's groups. An argument holding a space or a quote
// cannot pass as two.
func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = Quote(s)
	}
	return strings.Join(q, " ")
}

// K8sResource is what a request is about, for a person: its resource
// (with its subresource), namespace and name, and API group and version;
// the method and path for a non-resource request (/version, /apis).
func K8sResource(m model.K8sRequest) string {
	if m.Resource == "" {
		return word(m.Method) + " " + Quote(m.Path)
	}
	s := word(m.Resource)
	if m.Subresource != "" {
		s += "/" + word(m.Subresource)
	}
	if m.Namespace != "" {
		s += " in " + Quote(m.Namespace)
	}
	if m.Name != "" {
		s += " name " + Quote(m.Name)
	}
	g := "core"
	if m.APIGroup != "" {
		g = word(m.APIGroup)
	}
	if m.APIVersion != "" {
		g += "/" + word(m.APIVersion)
	}
	return s + ", group " + g
}

// K8sCaller is who a request was made as: the identity interlock
// impersonated, or the owner of the client's bearer token as the API
// server's SelfSubjectReview told.
func K8sCaller(m model.K8sRequest) string {
	s := "as " + Quote(m.User)
	if len(m.Groups) > 0 {
		s += " groups " + quoteList(m.Groups)
	}
	switch {
	case m.Source == "bearer-token":
		s += " (bearer token " + Quote(m.TokenID)
		if m.UID != "" {
			s += " uid " + Quote(m.UID)
		}
		s += ", reviewed)"
	case m.Source != "":
		s += " (impersonated, " + word(m.Source) + ")"
	default:
		s += " (impersonated)"
	}
	return s
}

// K8sRequestLines is a request without its decision, for a view that
// shows it on several lines: verb and resource, caller, and an exec's
// command, the pod's facts and the body's size when it has them.
func K8sRequestLines(m model.K8sRequest) []string {
	lines := []string{word(m.Verb) + " " + K8sResource(m), K8sCaller(m)}
	if len(m.Command) > 0 {
		lines = append(lines, "command "+quoteList(m.Command))
	}
	if p := m.Pod; p != nil {
		lines = append(lines, "pod"+k8sPodText(*p))
	}
	if m.BodyBytes > 0 {
		s := fmt.Sprintf("body %d bytes", m.BodyBytes)
		if m.BodyTruncated {
			s += " (recorded truncated)"
		}
		if m.BodyMasked {
			s += " (secret values masked)"
		}
		lines = append(lines, s)
	}
	return lines
}

// K8sRequestText is a request in one line, without its decision.
func K8sRequestText(m model.K8sRequest) string {
	return strings.Join(K8sRequestLines(m), ", ")
}

func k8sPodText(p model.K8sPod) string {
	s := ""
	for _, f := range []struct {
		on   bool
		name string
	}{{p.Privileged, "privileged"}, {p.HostPID, "hostPID"}, {p.HostNetwork, "hostNetwork"}, {p.HostIPC, "hostIPC"}} {
		if f.on {
			s += " " + f.name
		}
	}
	if p.ServiceAccount != "" {
		s += " serviceaccount " + Quote(p.ServiceAccount)
	}
	if p.UID != "" {
		s += " uid " + Quote(p.UID)
	}
	if s == "" {
		return " unprivileged"
	}
	return s
}

// K8sResponseText is how a request ended: its status code, size and
// time, what was masked, and whether the body was recorded.
func K8sResponseText(m model.K8sResponse) string {
	s := fmt.Sprintf("%d, %d bytes, %s", m.Code, m.Bytes, time.Duration(m.DurationNS).Round(time.Millisecond))
	if m.Masked > 0 {
		s += fmt.Sprintf(", %d secret values masked", m.Masked)
	}
	switch {
	case m.BodyRecorded && m.BodyTruncated:
		s += ", body recorded (truncated)"
	case m.BodyRecorded:
		s += ", body recorded"
	case m.BodyWithheld != "":
		s += ", body not recorded: " + Quote(m.BodyWithheld)
	}
	if m.Error != "" {
		s += ", error " + Quote(m.Error)
	}
	return s
}

// K8sPortForwardText is one port-forward stream: its pod and port and
// the bytes each way.
func K8sPortForwardText(m model.K8sPortForward) string {
	s := fmt.Sprintf("port-forward stream %d to %s/%s port %d: %d bytes up, %d down, %s", m.Stream, Quote(m.Namespace), Quote(m.Pod), m.Port,
		m.BytesUp, m.BytesDown, time.Duration(m.DurationNS).Round(time.Millisecond))
	if m.Refused {
		s += ", refused"
	}
	if m.Error != "" {
		s += ", error " + Quote(m.Error)
	}
	return s + fmt.Sprintf(" (request %d)", m.Seq)
}

// K8sIdentityText is whose a client's bearer token is.
func K8sIdentityText(m model.K8sIdentity) string {
	s := "bearer token " + Quote(m.TokenID) + " is " + Quote(m.User)
	if m.UID != "" {
		s += " uid " + Quote(m.UID)
	}
	if len(m.Groups) > 0 {
		s += " groups " + quoteList(m.Groups)
	}
	return s + " (SelfSubjectReview)"
}

// K8sStartupText is who a kubernetes session calls the API server as.
func K8sStartupText(m model.K8sStartup) string {
	s := "kubernetes user " + Quote(m.User)
	if len(m.Groups) > 0 {
		s += " groups " + quoteList(m.Groups)
	}
	s += " (" + word(m.Source) + ")"
	if m.PassBearer {
		s += ", bearer tokens passed"
	}
	return s
}

// MaskText is what a masking entry did, never the values.
func MaskText(m model.MaskDecision) string {
	s := "masked by rule " + Quote(m.Rule) + " in " + Quote(m.Column)
	if m.Detector != "" {
		s += " detector " + Quote(m.Detector)
	}
	return s + fmt.Sprintf(": %d values", m.Count)
}

// describeK8s is the text of a kubernetes entry; ok is false for one it
// does not know or whose data does not parse.
func describeK8s(e Event) (string, bool) {
	switch e.Kind {
	case model.KindK8sRequest:
		var m model.K8sRequest
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return fmt.Sprintf("k8s request %d %s: %s", m.Seq, K8sRequestText(m), DecisionText(m.Decision)), true
	case model.KindK8sResponse:
		var m model.K8sResponse
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return fmt.Sprintf("k8s response %d: %s", m.Seq, K8sResponseText(m)), true
	case model.KindK8sExec:
		var m model.K8sExec
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		s := word(m.Type) + " in " + Quote(m.Namespace) + "/" + Quote(m.Pod)
		if m.Container != "" {
			s += " container " + Quote(m.Container)
		}
		if m.TTY {
			s += " tty"
		}
		if m.Stdin {
			s += " stdin"
		}
		if len(m.Command) > 0 {
			s += ": " + quoteList(m.Command)
		}
		return s + fmt.Sprintf(" (request %d, %s)", m.Seq, word(m.Protocol)), true
	case model.KindK8sPortFwd:
		var m model.K8sPortForward
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return K8sPortForwardText(m), true
	case model.KindK8sIdentity:
		var m model.K8sIdentity
		if json.Unmarshal(e.Data, &m) != nil {
			break
		}
		return K8sIdentityText(m), true
	}
	return "", false
}
