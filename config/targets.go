package config

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/interlock/interlock/model"
)

// Defaults and limits of the per-target keys.
const (
	DefaultTLS           = "prefer"
	DefaultRecordResults = "summary"
	DefaultRecordRowsMax = 100
	maxRecordRowsMax     = 100000
)

// TLSMode is the upstream TLS mode, with its default.
func (t TargetConfig) TLSMode() string {
	if t.TLS == "" {
		return DefaultTLS
	}
	return t.TLS
}

// ResultsMode is record_results, with its default.
func (t TargetConfig) ResultsMode() string {
	if t.RecordResults == "" {
		return DefaultRecordResults
	}
	return t.RecordResults
}

// RowsMax is record_rows_max, with its default.
func (t TargetConfig) RowsMax() int {
	if t.RecordRowsMax == 0 {
		return DefaultRecordRowsMax
	}
	return t.RecordRowsMax
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateTargetOptions checks the protocol-specific keys of target i.
func validateTargetOptions(l *errorList, i int, t TargetConfig) {
	key := "targets[" + strconv.Itoa(i) + "]"
	only := func(k string, set bool, proto model.Protocol) {
		if set && t.Protocol != proto && t.Protocol != "" {
			l.add(key+"."+k, fmt.Sprintf("applies to %s targets only; this target's protocol is %s", proto, t.Protocol))
		}
	}
	only("tls", t.TLS != "", model.ProtoPostgres)
	only("ca_file", t.CAFile != "", model.ProtoPostgres)
	only("record_results", t.RecordResults != "", model.ProtoPostgres)
	only("record_rows_max", t.RecordRowsMax != 0, model.ProtoPostgres)
	only("deny_statements", len(t.DenyStatements) > 0, model.ProtoPostgres)
	only("check_effects", t.CheckEffects != nil, model.ProtoPostgres)
	only("known_hosts", t.KnownHosts != "", model.ProtoSSH)
	only("host_key", t.HostKey != "", model.ProtoSSH)
	only("host_key_file", t.HostKeyFile != "", model.ProtoSSH)
	only("deny_exec", len(t.DenyExec) > 0, model.ProtoSSH)
	only("allow", t.Allow != nil, model.ProtoSSH)
	only("exec", t.Exec != nil, model.ProtoSSH)
	only("kubernetes", t.Kubernetes != nil, model.ProtoKubernetes)

	switch t.Protocol {
	case model.ProtoTCP:
		if t.Credentials != nil {
			l.add(key+".credentials", "a tcp target is relayed as it is; interlock holds no credentials for it")
		}
	case model.ProtoPostgres:
		validateCredentials(l, key, t, false)
		if t.TLS != "" {
			oneOf(l, key+".tls", t.TLS, "disable", "prefer", "require", "verify-full")
		}
		if t.CAFile != "" {
			absPath(l, key+".ca_file", t.CAFile, true)
		}
		if t.TLSMode() == "verify-full" && t.CAFile == "" {
			l.add(key+".ca_file", "is required with tls: verify-full; give the CA certificate that signed the server's")
		}
		if t.RecordResults != "" {
			oneOf(l, key+".record_results", t.RecordResults, "none", "summary", "rows")
		}
		if t.RecordRowsMax < 0 || t.RecordRowsMax > maxRecordRowsMax {
			l.add(key+".record_rows_max", fmt.Sprintf("%d is out of range; write 1 to %d", t.RecordRowsMax, maxRecordRowsMax))
		}
		for j, k := range t.DenyStatements {
			if msg := KindProblem(k); msg != "" {
				l.add(key+".deny_statements["+strconv.Itoa(j)+"]", msg)
			}
		}
	case model.ProtoKubernetes:
		if t.Credentials != nil {
			l.add(key+".credentials", "a kubernetes target's credential is kubernetes.client_certificate_file and client_key_file, or kubernetes.token_file")
		}
		validateKubernetes(l, key, t.Kubernetes)
	case model.ProtoSSH:
		validateCredentials(l, key, t, true)
		switch {
		case t.KnownHosts == "" && t.HostKey == "":
			l.add(key+".known_hosts", "is required (or host_key): interlock always verifies the target's host key")
		case t.KnownHosts != "" && t.HostKey != "":
			l.add(key+".host_key", "give known_hosts or host_key, not both")
		case t.KnownHosts != "":
			absPath(l, key+".known_hosts", t.KnownHosts, true)
		}
		if t.HostKeyFile != "" {
			absPath(l, key+".host_key_file", t.HostKeyFile, true)
		}
		for j, g := range t.DenyExec {
			if g == "" {
				l.add(key+".deny_exec["+strconv.Itoa(j)+"]", "is empty; write a command-line glob such as 'rm -rf *'")
			}
		}
		if t.Exec != nil {
			validateExec(l, key, t.Exec)
		}
	}
}

func validateCredentials(l *errorList, key string, t TargetConfig, ssh bool) {
	c := t.Credentials
	if c == nil {
		l.add(key+".credentials", fmt.Sprintf("is required for a %s target: interlock logs in with credentials it holds, never the client's", t.Protocol))
		return
	}
	if c.User == "" {
		l.add(key+".credentials.user", "is required")
	}
	if c.PasswordFile != "" && c.PasswordEnv != "" {
		l.add(key+".credentials.password_env", "give password_file or password_env, not both")
	}
	if c.PasswordFile != "" {
		absPath(l, key+".credentials.password_file", c.PasswordFile, true)
	}
	if c.PasswordEnv != "" && !envNameRE.MatchString(c.PasswordEnv) {
		l.add(key+".credentials.password_env", quote(c.PasswordEnv)+" is not an environment variable name")
	}
	if !ssh && c.KeyFile != "" {
		l.add(key+".credentials.key_file", "applies to ssh targets only")
	}
	if !ssh && c.Certificate {
		l.add(key+".credentials.certificate", "applies to ssh targets only")
	}
	if ssh && c.Certificate {
		// One credential, so what the target trusts is unambiguous: a
		// fallback key would be the standing credential the certificate
		// exists to remove.
		if c.KeyFile != "" {
			l.add(key+".credentials.key_file", "give key_file or certificate: true, not both; with certificate interlock signs a fresh key for each login, and the target should trust interlock's user CA instead of an authorized key (docs/ssh.md)")
		}
		if c.PasswordFile != "" || c.PasswordEnv != "" {
			l.add(key+".credentials.certificate", "give certificate: true or a password, not both; with certificate the target should accept interlock's user CA only (docs/ssh.md)")
		}
	}
	if ssh && !c.Certificate {
		if c.KeyFile == "" && c.PasswordFile == "" && c.PasswordEnv == "" {
			l.add(key+".credentials.key_file", "is required (or certificate: true, or password_file/password_env): the credential interlock logs in to the target with; certificate: true is recommended (docs/ssh.md)")
		}
		if c.KeyFile != "" {
			absPath(l, key+".credentials.key_file", c.KeyFile, true)
		}
	}
}
