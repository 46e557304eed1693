package ssh

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/interlock/interlock/internal/testkit"
	"github.com/interlock/interlock/model"
)

// TestExecCommandRedacted: an exec's command line and an env request run
// on the target as sent, and are journaled with their secrets' values
// replaced and counted.
func TestExecCommandRedacted(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	_ = sess.Setenv("PGPASSWORD", "envs3cret") // the target may refuse it; it is journaled either way
	var stdout bytes.Buffer
	sess.Stdout = &stdout
	if err := sess.Run("X_TOKEN=cmds3cret; echo $X_TOKEN"); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "cmds3cret\n" {
		t.Errorf("the target ran something else: %q", stdout.String())
	}
	c.Close()
	r.waitClosed(1)
	var exec, env *model.SSHRequest
	for _, q := range testkit.Data[model.SSHRequest](r.j, model.KindSSHRequest) {
		switch q.Type {
		case "exec":
			exec = &q
		case "env":
			env = &q
		}
	}
	if exec == nil || exec.Command != "X_TOKEN=[redacted]; echo $X_TOKEN" || exec.Redacted != 1 || exec.CommandBase64 != "" {
		t.Errorf("exec request: %+v", exec)
	}
	if env == nil || env.Env != "PGPASSWORD=[redacted]" || env.Redacted != 1 {
		t.Errorf("env request: %+v", env)
	}
	for _, rec := range r.j.Records() {
		b, _ := json.Marshal(rec.Data)
		if rec.Kind == model.KindSSHRequest && strings.Contains(string(b), "s3cret") {
			t.Errorf("a secret is journaled: %+v", rec.Data)
		}
	}
}

// TestRefusedExecMessageRedacted: policy judges the command as sent (the
// test's policy denies an exec whose text holds "forbidden", here only in
// the password), and the refusal the client reads, journaled as its
// stderr, names the command without its secret.
func TestRefusedExecMessageRedacted(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := r.mustDial()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	_ = sess.Run("mysql -pforbiddenS3cret app")
	c.Close()
	r.waitClosed(1)
	if !strings.Contains(stderr.String(), `"mysql -p[redacted] app" refused`) {
		t.Errorf("the client read %q", stderr.String())
	}
	for _, rec := range r.j.Records() {
		b, _ := json.Marshal(rec.Data)
		if p, ok := rec.Payload.([]byte); ok {
			b = append(b, p...)
		}
		if strings.Contains(string(b), "S3cret") {
			t.Errorf("a secret is journaled in %s: %s", rec.Kind, b)
		}
	}
}
