package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v3"
	gossh "golang.org/x/crypto/ssh"

	"github.com/interlock/interlock/inspect/ssh"
)

// sshCAKey is what `interlock ssh-ca` prints with --json.
type sshCAKey struct {
	// Kind is user (targets trust it) or host (clients trust it).
	Kind        string `json:"kind"`
	Path        string `json:"path"`
	Line        string `json:"line"`
	Fingerprint string `json:"fingerprint"`
}

func sshCACommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh-ca",
		Usage: "print interlock's SSH CA public keys, for targets' sshd and for clients",
		Description: "interlock keeps two SSH certificate authorities in <state_dir>/ssh, created at first\n" +
			"start (or by this command): the user CA, which signs the certificate interlock logs in\n" +
			"with to targets that set credentials.certificate, and the host CA, which certifies\n" +
			"interlock to clients. Run as root: creating them writes to state_dir.",
		Commands: []*cli.Command{
			{
				Name:  "user",
				Usage: "print the user CA's public key, for a target's TrustedUserCAKeys",
				Description: "Prints the line a target's sshd trusts interlock's logins with, e.g.\n" +
					"  interlock ssh-ca user > /etc/ssh/interlock_user_ca.pub\n" +
					"and in /etc/ssh/sshd_config (the held account, here deploy, has no authorized keys,\n" +
					"so a session cannot add its own):\n" +
					"  TrustedUserCAKeys /etc/ssh/interlock_user_ca.pub\n" +
					"  Match User deploy\n" +
					"      AuthorizedKeysFile none\n" +
					"See docs/ssh.md. `interlock doctor` checks the target's setup.",
				Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return printSSHCA(cmd, "user")
				},
			},
			{
				Name:  "host",
				Usage: "print the host CA's known_hosts line, for clients",
				Description: "Prints the @cert-authority line a client's known_hosts trusts interlock with for\n" +
					"every ssh target without host_key_file (the packages add it to /etc/ssh/ssh_known_hosts).",
				Flags: []cli.Flag{configFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return printSSHCA(cmd, "host")
				},
			},
		},
	}
}

func printSSHCA(cmd *cli.Command, kind string) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	var k sshCAKey
	k.Kind = kind
	switch kind {
	case "user":
		k.Path = ssh.UserCAPublicKeyPath(cfg.StateDir)
		k.Line, err = ssh.EnsureUserCA(cfg.StateDir)
	default:
		k.Path = ssh.CAPublicKeyPath(cfg.StateDir)
		k.Line, err = ssh.EnsureCA(cfg.StateDir)
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return exitWith(exitNoPerm, fmt.Errorf("%w; run as root (interlock keeps its CAs in %s)", err, cfg.StateDir))
		}
		return exitWith(exitIOErr, err)
	}
	fields := strings.Fields(strings.TrimPrefix(k.Line, "@cert-authority * "))
	if len(fields) >= 2 {
		if pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(fields[0] + " " + fields[1])); err == nil {
			k.Fingerprint = gossh.FingerprintSHA256(pub)
		}
	}
	if cmd.Bool("json") {
		k.Line = strings.TrimSuffix(k.Line, "\n")
		return printJSON(k)
	}
	fmt.Print(k.Line)
	fmt.Fprintf(os.Stderr, "interlock: %s CA %s, public key in %s\n", kind, k.Fingerprint, k.Path)
	return nil
}
