package runner

import (
	"slices"
	"testing"
)

func TestScrubEnv(t *testing.T) {
	env := []string{"PATH=/bin", "PGPW=s3cret", "HOME=/root", "PGPW=again", "PGPW2=kept", "EMPTY=", "PGP=kept"}
	kept, removed := ScrubEnv(env, []string{"PGPW", "SSHPW"})
	want := []string{"PATH=/bin", "HOME=/root", "PGPW2=kept", "EMPTY=", "PGP=kept"}
	if !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if !slices.Equal(removed, []string{"PGPW"}) {
		t.Errorf("removed %q, want [PGPW] (SSHPW was not set)", removed)
	}
	// The caller's slice is not changed under it.
	if env[1] != "PGPW=s3cret" {
		t.Errorf("input modified: %q", env)
	}
	kept, removed = ScrubEnv(env, nil)
	if !slices.Equal(kept, env) || removed != nil {
		t.Errorf("no secrets: kept %q removed %q", kept, removed)
	}
}
