package ssh

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

type testMasker struct{ m *policy.Masker }

func (a testMasker) Hash(b []byte) []byte { return a.m.Hash(b) }

func (a testMasker) Detect(names []string, v []byte) []model.Finding {
	var out []model.Finding
	for _, f := range policy.Detect(names, v) {
		out = append(out, model.Finding{Detector: f.Detector, Start: f.Start, End: f.End})
	}
	return out
}

func (a testMasker) ColumnRule(spec *model.MaskSpec, t, c string) string {
	return policy.ColumnRule(spec, t, c)
}

func (a testMasker) Scrub(spec *model.MaskSpec, s string) (string, bool) { return a.m.Scrub(spec, s) }

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
	for _, rec := range r.j.Records() {
		if rec.Kind == model.KindSSHIO {
			recorded += string(rec.Payload.([]byte))
		}
	}
	if strings.Contains(recorded, "example.com") || strings.Count(recorded, "***@***") != 2 {
		t.Errorf("recorded %q", recorded)
	}
	masks := testkit.Data[model.MaskDecision](r.j, model.KindSSHMask)
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

// recordedOutput is what the journal holds of the sessions' stdout.
func (r *rig) recordedOutput() string {
	var out string
	for _, rec := range r.j.Records() {
		if rec.Kind == model.KindSSHIO && rec.Data.(model.SSHIO).Stream == "o" {
			out += string(rec.Payload.([]byte))
		}
	}
	return out
}

// TestOutputMaskingAcrossReads: the target sends its output 7 bytes at a
// time, so secrets reach interlock split across reads; neither the client
// (live) nor the journal (always) gets one. (The held bytes' timer is
// lengthened so that a slow machine cannot make the test flaky: the timer
// has its own tests.)
func TestOutputMaskingAcrossReads(t *testing.T) {
	key := testKeyPEM(t)
	secrets := []string{"jane.doe+ci@example.co.uk", "4111 1111 1111 1111", "123-45-6789", "AKIAIOSFODNN7EXAMPLE",
		"ghp_" + strings.Repeat("a", 36), key}
	var text, want strings.Builder
	for i, s := range secrets {
		fmt.Fprintf(&text, "line %d: %s end\n", i, s)
		det := []string{"email", "card", "national_id", "cloud_key", "token", "private_key"}[i]
		fmt.Fprintf(&want, "line %d: %s end\n", i, marker(det, []byte(s)))
	}
	file := filepath.Join(t.TempDir(), "out.txt")
	if err := os.WriteFile(file, []byte(text.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOpts{masker: testMasker{policy.NewMaskerWithKey(make([]byte, 32))}, maskRelease: 10 * time.Second})
	c := r.mustDial()
	for _, live := range []bool{true, false} {
		cmd := "cat " + file + " #chunked mask-all"
		if live {
			cmd += " live"
		}
		sess, _ := c.NewSession()
		out, err := sess.Output(cmd)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		wantClient := text.String()
		if live {
			wantClient = want.String()
		}
		if string(out) != wantClient {
			t.Errorf("live %v: the client got %q", live, out)
		}
	}
	c.Close()
	r.waitClosed(1)
	if got := r.recordedOutput(); got != want.String()+want.String() {
		t.Errorf("recorded %q", got)
	}
	n := 0
	for _, m := range testkit.Data[model.MaskDecision](r.j, model.KindSSHMask) {
		n += m.Count
	}
	if n != 2*len(secrets) {
		t.Errorf("ssh.mask entries count %d maskings, want %d", n, 2*len(secrets))
	}
}

// TestPromptIsNotHeld: output without a newline (a prompt) reaches the
// client within releaseAfter, not when the command goes on.
func TestPromptIsNotHeld(t *testing.T) {
	r := newRig(t, rigOpts{masker: testMasker{policy.NewMaskerWithKey(make([]byte, 32))}})
	c := r.mustDial()
	sess, _ := c.NewSession()
	stdout, _ := sess.StdoutPipe()
	start := time.Now()
	if err := sess.Start("printf 'Password for alice@example.com: '; sleep 5 # mask-me live"); err != nil {
		t.Fatal(err)
	}
	want := "Password for ***@***: "
	got := make([]byte, len(want))
	if _, err := io.ReadFull(stdout, got); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); string(got) != want || took > 2*time.Second {
		t.Errorf("got %q after %v", got, took)
	}
	sess.Close()
}
