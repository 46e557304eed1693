package ssh

import (
	"strings"
	"testing"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

type testMasker struct{ m *policy.Masker }

func (a testMasker) Hash(b []byte) []byte { return a.m.Hash(b) }

func (a testMasker) Plan(spec *model.MaskSpec, cols []model.MaskColumn) inspect.RowMasker {
	if rm := a.m.Plan(spec, cols); rm != nil {
		return rm
	}
	return nil
}

func TestOutputMasking(t *testing.T) {
	r := newRig(t, rigOpts{masker: testMasker{policy.NewMaskerWithKey(make([]byte, 32))}})
	c := r.mustDial()
	run := func(cmd string) string {
		sess, _ := c.NewSession()
		out, err := sess.Output(cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return string(out)
	}
	// Recorded copy masked, live output as it is.
	if out := run("echo alice@example.com # mask-me"); out != "alice@example.com\n" {
		t.Errorf("live output %q", out)
	}
	// Live masking too.
	if out := run("echo bob@example.com # mask-me live"); out != "***@***\n" {
		t.Errorf("live output %q", out)
	}
	c.Close()
	r.waitClosed(1)
	var recorded string
	r.j.mu.Lock()
	for _, rec := range r.j.recs {
		if rec.Kind == model.KindSSHIO {
			recorded += string(rec.Payload.([]byte))
		}
	}
	r.j.mu.Unlock()
	if strings.Contains(recorded, "example.com") || strings.Count(recorded, "***@***") != 2 {
		t.Errorf("recorded %q", recorded)
	}
	masks := of[model.MaskDecision](r.j, model.KindSSHMask)
	if len(masks) != 2 || masks[0].Count != 1 || masks[0].Detector != "email" || masks[0].Column != "channel 0 output" {
		t.Errorf("ssh.mask %+v", masks)
	}
}

func TestOutputMaskingWithoutMaskerFailsClosed(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, _ := c.NewSession()
	err := sess.Run("echo alice@example.com # mask-me")
	if err == nil || !strings.Contains(err.Error(), "126") {
		t.Errorf("run: %v", err)
	}
	if len(r.target.commands()) != 0 {
		t.Errorf("the target ran %v", r.target.commands())
	}
}
