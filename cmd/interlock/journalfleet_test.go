package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// journal verify --fleet-bundle verifies the golden fleet bundle with its
// fleet key, and fails (exit 1) with another key or usage errors (64).
func TestJournalVerifyFleetBundle(t *testing.T) {
	td := filepath.Join("..", "..", "journal", "evidence", "testdata")
	bundle, fleetPub := filepath.Join(td, "fleet.bundle.gz"), filepath.Join(td, "fleet.pub")
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	oldOut := os.Stdout
	os.Stdout = devnull
	defer func() { os.Stdout = oldOut }()
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--fleet-bundle", bundle, "--fleet-key", fleetPub}, 0},
		{[]string{"--fleet-bundle", bundle, "--fleet-key", fleetPub, "--hub-key", filepath.Join(td, "hub.pub"), "--json"}, 0},
		{[]string{"--fleet-bundle", bundle, "--fleet-key", filepath.Join(td, "journal.pub")}, exitFailed},
		{[]string{"--fleet-bundle", bundle}, exitUsage},
		{[]string{"--fleet-bundle", bundle, "--fleet-key", fleetPub, "--pubkey", fleetPub}, exitUsage},
		{[]string{"--fleet-key", fleetPub, "--journal", "/nonexistent"}, exitUsage},
		{[]string{"--fleet-bundle", filepath.Join(t.TempDir(), "none"), "--fleet-key", fleetPub}, exitNoInput},
	} {
		err := rootCommand().Run(context.Background(), append([]string{"interlock", "journal", "verify"}, c.args...))
		if got := exitCode(err); got != c.want {
			t.Errorf("journal verify %v: exit %d (%v), want %d", c.args, got, err, c.want)
		}
	}
}
