package ssh

import (
	"path"
	"strings"

	"github.com/interlock/interlock/model"
)

// File transfers under mask rules, at the program's start.
//
// An sftp server (the subsystem, or started by exec) keeps the decision's
// mask rules for the files it sends (sftp_mask.go). Legacy scp (`scp -O`)
// runs `scp -f PATH` on the target, whose output is the file stream framed
// by scp's own headers ("C0644 SIZE NAME\n", then SIZE bytes): it is
// refused under a transfers: refuse rule, and otherwise masked as any
// exec's output is, but with secrets replaced by as many bytes as they had
// (outputMask.sameLength), so that SIZE stays true. `scp -t` (an upload)
// sends the client's file to the target: its contents are input, which
// masking does not touch (rules mask what flows back); its output is
// scp's acknowledgements, masked like any exec's.

// transfers applies the decision's mask rules to a program that sends
// files, and returns the decision it runs under.
func (s *sessionChan) transfers(typ, cmd string, sftp bool, d model.Decision) model.Decision {
	if !permits(d) || d.Mask == nil {
		return d
	}
	if sftp {
		s.transferSpec = d.Mask
		return d
	}
	if typ != "exec" || !scpSource(cmd) {
		return d
	}
	for _, r := range d.Mask.Rules {
		if r.Transfers == "refuse" {
			return model.Decision{Action: model.Deny, Rule: r.Rule, Reason: "mask rule " + r.Rule + " refuses file transfers (transfers: refuse)"}
		}
	}
	if s.mask != nil {
		s.mask.sameLength = true
		if len(s.mask.liveNames) > 0 {
			s.mask.ruleOf[boundaryDetector] = s.mask.ruleOf[s.mask.liveNames[0]]
		} else {
			s.mask.ruleOf[boundaryDetector] = s.mask.ruleOf[s.mask.recNames[0]]
		}
	}
	return d
}

// scpSource says whether an exec command may be scp's source side (`scp
// -f`), which sends files framed by sizes. Any scp whose options may hold
// -f counts: a look-alike then only gets same-length masking.
func scpSource(cmd string) bool {
	argv := strings.Fields(cmd)
	if len(argv) == 0 || path.Base(argv[0]) != "scp" {
		return false
	}
	for _, a := range argv[1:] {
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && strings.Contains(a[1:], "f") {
			return true
		}
	}
	return false
}
