package ship

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/internal/atomicfile"
	"github.com/interlock/interlock/journal/evidence"
)

// Files of the enrolment in the ship state directory. The client key is
// root's alone; the rest is public or names the host and may be read by
// the audit group.
const (
	HostIDFile   = "host_id"
	ClientKey    = "client.key"
	ClientCert   = "client.crt"
	CAFile       = "ca.crt"
	HubKeyFile   = "hub.pub"
	FleetKeyFile = "fleet.pub"
)

// State is what `interlock hub join` keeps: who the hub knows this host
// as, the TLS client identity it proves that with, the CA that issued
// the hub's server certificate, and the keys of the hub's cosignatures
// and fleet checkpoints.
type State struct {
	Dir    string
	HostID string
	// KeyPEM and CertPEM are the TLS client key and certificate; CAPEM the
	// certificates trusted for the hub's server certificate.
	KeyPEM, CertPEM, CAPEM []byte
	// HubKey and FleetKey are note verifier keys.
	HubKey, FleetKey string
}

// LoadState reads the enrolment in dir.
func LoadState(dir string) (*State, error) {
	s := &State{Dir: dir}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("ship: %s has no %s: enrol this host with `interlock hub join URL --token T` first", dir, name)
		}
		if err != nil {
			return nil, fmt.Errorf("ship: enrolment: %w", err)
		}
		return b, nil
	}
	var err error
	text := func(name string) string {
		var b []byte
		if err == nil {
			b, err = read(name)
		}
		return strings.TrimSpace(string(b))
	}
	s.HostID, s.HubKey, s.FleetKey = text(HostIDFile), text(HubKeyFile), text(FleetKeyFile)
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{ClientKey, &s.KeyPEM}, {ClientCert, &s.CertPEM}, {CAFile, &s.CAPEM}} {
		if err == nil {
			*f.dst, err = read(f.name)
		}
	}
	if err != nil {
		return nil, err
	}
	if s.HostID == "" {
		return nil, fmt.Errorf("ship: %s is empty", filepath.Join(dir, HostIDFile))
	}
	if _, err := s.HubVerifier(); err != nil {
		return nil, err
	}
	return s, nil
}

// Save writes the enrolment to s.Dir (created 0750): the key 0600, the
// rest 0640, each file replaced atomically.
func (s *State) Save() error {
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return fmt.Errorf("ship: enrolment directory: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{ClientKey, s.KeyPEM, 0o600},
		{ClientCert, s.CertPEM, 0o640},
		{CAFile, s.CAPEM, 0o640},
		{HubKeyFile, []byte(s.HubKey + "\n"), 0o640},
		{FleetKeyFile, []byte(s.FleetKey + "\n"), 0o640},
		// The host id last: its presence says the enrolment is whole.
		{HostIDFile, []byte(s.HostID + "\n"), 0o640},
	} {
		if err := atomicfile.Write(filepath.Join(s.Dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("ship: save enrolment: %w", err)
		}
	}
	return nil
}

// HubVerifier verifies the hub's cosignatures.
func (s *State) HubVerifier() (note.Verifier, error) {
	v, err := evidence.NewCosignatureVerifier(s.HubKey)
	if err != nil {
		return nil, fmt.Errorf("ship: hub key of the enrolment in %s: %w", s.Dir, err)
	}
	return v, nil
}

// TLSConfig is mutual TLS to the hub: the client certificate, and only the
// enrolment's CA trusted for the hub's server certificate.
func (s *State) TLSConfig() (*tls.Config, error) {
	cert, err := tls.X509KeyPair(s.CertPEM, s.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("ship: client certificate in %s: %w", s.Dir, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM) {
		return nil, fmt.Errorf("ship: %s holds no PEM certificate", filepath.Join(s.Dir, CAFile))
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}, nil
}
