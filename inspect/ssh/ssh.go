// Package ssh is the SSH handler for `protocol: ssh` targets. It terminates
// the client's SSH connection, opens its own to the target with the
// credential interlock holds, asks policy before each exec, shell,
// subsystem, sftp operation and forwarding, and journals channels,
// requests, terminal input and output, exit statuses and sftp operations.
//
// golang.org/x/crypto/ssh (imported as gossh) speaks SSH on both legs.
// The client is not authenticated by what it offers: the kernel-attributed
// identity is the authentication, and the method and key the client offered
// are only recorded.
package ssh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// Options are what the engine gives the handler. Without a Masker, a
// shell or exec whose output a mask rule with detectors covers is refused.
type Options struct {
	inspect.Deps

	// HandshakeTimeout bounds the client's key exchange and authentication
	// (and the upstream connection made meanwhile); 20s when zero.
	HandshakeTimeout time.Duration
	// DialTimeout bounds the upstream TCP connect; 10s when zero.
	DialTimeout time.Duration
}

// Default timeouts.
const (
	DefaultHandshakeTimeout = 20 * time.Second
	DefaultDialTimeout      = 10 * time.Second
)

// Handler serves ssh targets. It is safe for concurrent use.
type Handler struct {
	journal          model.Recorder
	policy           inspect.Policy
	masker           inspect.Masker
	log              *slog.Logger
	stateDir         string
	handshakeTimeout time.Duration
	dialTimeout      time.Duration
	// maskRelease, when set, replaces releaseAfter (tests).
	maskRelease time.Duration

	// targets maps a target name to its prepared settings; Reload swaps it.
	targets atomic.Pointer[map[string]*target]
	// preauth caps each uid's connections still authenticating.
	preauth preauthSlots
}

// target is one ssh target's settings, prepared once.
type target struct {
	name    string
	address string
	user    string
	// signer and password are the held credential (either or both).
	signer   gossh.Signer
	password string
	// userCA, for credentials.certificate, signs a certificate for each
	// login instead (usercert.go); certExt are the extensions it grants.
	userCA  gossh.Signer
	certExt map[string]string
	// hostKeyCallback verifies the real target; hostKeyAlgos are the
	// algorithms its known keys can be checked with (nil: the defaults).
	hostKeyCallback gossh.HostKeyCallback
	hostKeyAlgos    []string
	// hostSigners are presented to clients.
	hostSigners []gossh.Signer
	// allowlist: exec.mode is allowlist (env requests are narrowed);
	// tunnelsAllowed: exec.tunnels is allow (channels are not scanned).
	allowlist, tunnelsAllowed bool
}

// New checks the ssh targets of opts.Config and prepares the handler: key
// files are read and parsed now, so a bad one stops the start instead of
// the first session.
func New(opts Options) (*Handler, error) {
	h := &Handler{
		journal:          opts.Journal,
		policy:           opts.Policy,
		masker:           opts.Masker,
		log:              opts.Log(),
		stateDir:         opts.StateDir(),
		handshakeTimeout: opts.HandshakeTimeout,
		dialTimeout:      opts.DialTimeout,
	}
	if h.handshakeTimeout <= 0 {
		h.handshakeTimeout = DefaultHandshakeTimeout
	}
	if h.dialTimeout <= 0 {
		h.dialTimeout = DefaultDialTimeout
	}
	if err := h.Reload(opts.Config); err != nil {
		return nil, err
	}
	return h, nil
}

// Reload prepares cfg's ssh targets and applies them at once.
func (h *Handler) Reload(cfg *config.Config) error {
	apply, err := h.PrepareReload(cfg)
	if err != nil {
		return err
	}
	apply()
	return nil
}

// PrepareReload implements inspect.Reloader: it prepares the ssh targets
// of cfg (keys, host keys or certificates, known hosts); apply swaps them
// in and sets the pre-authentication cap.
func (h *Handler) PrepareReload(cfg *config.Config) (apply func() (undo func()), err error) {
	m := map[string]*target{}
	var preauthMax int
	var preauthRoot bool
	if cfg != nil {
		var ca *authority
		var userCA gossh.Signer
		for _, tc := range cfg.Targets {
			if tc.Protocol != model.ProtoSSH {
				continue
			}
			if tc.HostKeyFile == "" && ca == nil {
				if ca, err = loadAuthority(h.stateDir, h.log); err != nil {
					return nil, fmt.Errorf("target %s: %w", tc.Name, err)
				}
			}
			if tc.Credentials != nil && tc.Credentials.Certificate && userCA == nil {
				if userCA, err = loadUserCA(h.stateDir, h.log); err != nil {
					return nil, fmt.Errorf("target %s: %w", tc.Name, err)
				}
			}
			t, err := prepareTarget(tc, ca, userCA)
			if err != nil {
				return nil, fmt.Errorf("target %s: %w", tc.Name, err)
			}
			m[t.name] = t
		}
		lim := cfg.Limits.Resolve()
		preauthMax, preauthRoot = lim.SSHPreauth, lim.IncludeRoot
	}
	return func() (undo func()) {
		old := h.targets.Load()
		oldMax, oldRoot := h.preauth.settings()
		h.targets.Store(&m)
		if cfg != nil {
			h.preauth.configure(preauthMax, preauthRoot)
		}
		return func() {
			h.targets.Store(old)
			h.preauth.configure(oldMax, oldRoot)
		}
	}, nil
}

func (h *Handler) target(name string) *target {
	if m := h.targets.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

func prepareTarget(tc config.TargetConfig, ca *authority, userCA gossh.Signer) (*target, error) {
	t, err := prepareUpstream(tc, userCA)
	if err != nil {
		return nil, err
	}
	host, _, err := tc.HostPort()
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	if tc.HostKeyFile != "" {
		signer, err := readPrivateKey(tc.HostKeyFile)
		if err != nil {
			return nil, fmt.Errorf("host_key_file: %w", err)
		}
		t.hostSigners = []gossh.Signer{signer}
	} else {
		if ca == nil {
			return nil, errors.New("no host_key_file and no SSH CA")
		}
		signers, err := ca.hostSigners(tc.Name, principals(host))
		if err != nil {
			return nil, err
		}
		t.hostSigners = signers
	}
	return t, nil
}

// prepareUpstream prepares what logging in to the target takes: the held
// credential and the host key check.
func prepareUpstream(tc config.TargetConfig, userCA gossh.Signer) (*target, error) {
	t := &target{name: tc.Name, address: tc.Address, allowlist: tc.AllowlistOn(), tunnelsAllowed: tc.TunnelsAllowed()}
	c := tc.Credentials
	if c == nil || c.User == "" {
		return nil, errors.New("credentials.user is required")
	}
	t.user = c.User
	if c.Certificate {
		if userCA == nil {
			return nil, errors.New("credentials.certificate: no SSH user CA")
		}
		if c.KeyFile != "" || c.PasswordFile != "" || c.PasswordEnv != "" {
			return nil, errors.New("credentials.certificate: give no key_file or password beside it")
		}
		t.userCA, t.certExt = userCA, CertExtensions(tc.Allow)
	}
	if c.KeyFile != "" {
		signer, err := readPrivateKey(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("credentials.key_file: %w", err)
		}
		t.signer = signer
	}
	if c.PasswordFile != "" || c.PasswordEnv != "" {
		pw, err := c.Password()
		if err != nil {
			return nil, err
		}
		t.password = pw
	}
	if t.signer == nil && t.password == "" && t.userCA == nil {
		return nil, errors.New("credentials: give certificate: true, key_file, password_file or password_env")
	}

	switch {
	case tc.HostKey != "":
		key, _, _, _, err := gossh.ParseAuthorizedKey([]byte(tc.HostKey))
		if err != nil {
			return nil, fmt.Errorf("host_key: %w", err)
		}
		t.hostKeyCallback = gossh.FixedHostKey(key)
		t.hostKeyAlgos = algorithmsFor([]string{key.Type()})
	case tc.KnownHosts != "":
		cb, err := knownhosts.New(tc.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		t.hostKeyCallback = cb
		t.hostKeyAlgos = knownAlgorithms(cb, tc.Address)
	default:
		return nil, errors.New("known_hosts or host_key is required: interlock always verifies the target's host key")
	}
	return t, nil
}

// readPrivateKey reads an unencrypted private key that only its owner can
// read, as ssh and sshd insist.
func readPrivateKey(path string) (gossh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %04o lets others read the private key; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	signer, err := gossh.ParsePrivateKey(b)
	var pp *gossh.PassphraseMissingError
	if errors.As(err, &pp) {
		return nil, fmt.Errorf("%s: the key is encrypted with a passphrase; interlock needs it unencrypted (protect it with file mode 0600)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return signer, nil
}

// knownAlgorithms asks the known_hosts callback which key types it holds
// for address (by offering it a key it cannot know) and returns the
// signature algorithms that verify them, so the key exchange picks a host
// key that known_hosts can check. Nil (the library's defaults) when the
// file names no plain key for the host, e.g. only a @cert-authority.
func knownAlgorithms(cb gossh.HostKeyCallback, address string) []string {
	probe, err := probeKey()
	if err != nil {
		return nil
	}
	var ke *knownhosts.KeyError
	err = cb(address, &net.TCPAddr{IP: net.IPv4zero}, probe)
	if !errors.As(err, &ke) || len(ke.Want) == 0 {
		return nil
	}
	var types []string
	for _, k := range ke.Want {
		types = append(types, k.Key.Type())
	}
	return algorithmsFor(types)
}

// algorithmsFor maps key types to the host key algorithms that use them.
func algorithmsFor(types []string) []string {
	var out []string
	add := func(a ...string) {
		for _, x := range a {
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	for _, t := range types {
		if t == gossh.KeyAlgoRSA {
			add(gossh.KeyAlgoRSASHA512, gossh.KeyAlgoRSASHA256, gossh.KeyAlgoRSA)
			continue
		}
		add(t)
	}
	return out
}

// principals are the names a client may use for the target's host: the
// host as written in the address and, for a DNS name, the name without a
// trailing dot and its first label.
func principals(host string) []string {
	out := []string{host}
	add := func(p string) {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if net.ParseIP(host) == nil {
		name := strings.TrimSuffix(host, ".")
		add(name)
		if i := strings.IndexByte(name, '.'); i > 0 {
			add(name[:i])
		}
	}
	return out
}
