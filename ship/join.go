package ship

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
)

// JoinOptions say how to enrol with a hub.
type JoinOptions struct {
	// URL is the hub's https:// base URL; Token the join token
	// `interlock hub token create` printed.
	URL, Token string
	HostName   string
	// JournalID and JournalKey name the local journal and the verifier
	// key of its checkpoints, which the hub will hold this host to.
	JournalID, JournalKey string
	// The hub's server certificate is verified with the CA certificates
	// in CAPEM, or, without them, by pinning CASHA256: the hex SHA-256 of
	// the CA certificate the hub sends in its chain (as `hub token
	// create` prints it). One of the two is required: a join token must
	// never go to a hub that was not verified.
	CAPEM    []byte
	CASHA256 string
	Timeout  time.Duration
}

// Join enrols this host: a fresh client key and its CSR go to the hub
// with the token and the journal's identity, and what the hub answers is
// returned as the State to save (in dir).
func Join(ctx context.Context, o JoinOptions, dir string) (*State, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("ship: join: %q is not an https:// URL", o.URL)
	}
	tc, pin, err := joinTLS(o, u.Hostname())
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ship: join: client key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: o.HostName}}, key)
	if err != nil {
		return nil, fmt.Errorf("ship: join: certificate request: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ship: join: client key: %w", err)
	}
	body, err := json.Marshal(hubapi.JoinRequest{
		Token: o.Token, HostName: o.HostName, JournalID: o.JournalID, JournalKey: o.JournalKey,
		CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if err != nil {
		return nil, fmt.Errorf("ship: join: %w", err)
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(o.URL, "/")+hubapi.PathJoin, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ship: join: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	defer hc.CloseIdleConnections()
	var jr hubapi.JoinResponse
	if err := do(hc, req, &jr); err != nil {
		return nil, err
	}
	st := &State{
		Dir: dir, HostID: jr.HostID, HubKey: strings.TrimSpace(jr.HubKey), FleetKey: strings.TrimSpace(jr.FleetKey),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		CertPEM: []byte(jr.Certificate), CAPEM: []byte(jr.CA),
	}
	if err := checkJoinResponse(st, key, pin, o.CAPEM); err != nil {
		return nil, err
	}
	return st, nil
}

// joinTLS verifies the hub with the CA given, or by the pinned CA
// fingerprint; pin is the decoded fingerprint (nil with a CA).
func joinTLS(o JoinOptions, host string) (*tls.Config, []byte, error) {
	switch {
	case len(o.CAPEM) > 0 && o.CASHA256 != "":
		return nil, nil, errors.New("ship: join: give the hub's CA or its fingerprint, not both")
	case len(o.CAPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(o.CAPEM) {
			return nil, nil, errors.New("ship: join: the CA file holds no PEM certificate")
		}
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, nil, nil
	case o.CASHA256 == "":
		return nil, nil, errors.New("ship: join: the hub's CA (--ca FILE) or its SHA-256 fingerprint (--ca-sha256) is required: the token must not go to an unverified hub")
	}
	pin, err := hex.DecodeString(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(o.CASHA256)), ":", ""))
	if err != nil || len(pin) != sha256.Size {
		return nil, nil, fmt.Errorf("ship: join: %q is not a hex SHA-256 fingerprint", o.CASHA256)
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Verification is VerifyConnection's: the chain must hold the
		// pinned CA and the leaf must verify up to it for host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pin, host)
		},
	}
	return tc, pin, nil
}

func verifyPinned(chain []*x509.Certificate, pin []byte, host string) error {
	if len(chain) == 0 {
		return errors.New("ship: join: the hub sent no certificate")
	}
	for _, c := range chain {
		if sum := sha256.Sum256(c.Raw); bytes.Equal(sum[:], pin) {
			roots := x509.NewCertPool()
			roots.AddCert(c)
			inter := x509.NewCertPool()
			for _, i := range chain[1:] {
				inter.AddCert(i)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter}); err != nil {
				return fmt.Errorf("ship: join: the hub's certificate does not verify with the pinned CA: %w", err)
			}
			return nil
		}
	}
	return fmt.Errorf("ship: join: no certificate the hub sent has the SHA-256 fingerprint %x", pin)
}

// checkJoinResponse refuses an enrolment the host could not use or that
// is not the hub it verified: a certificate for another key, a CA other
// than the pinned one, keys that do not parse.
func checkJoinResponse(st *State, key *ecdsa.PrivateKey, pin, caPEM []byte) error {
	if st.HostID == "" || strings.ContainsAny(st.HostID, "/\n ") {
		return fmt.Errorf("ship: join: the hub gave the host id %q", st.HostID)
	}
	blk, _ := pem.Decode(st.CertPEM)
	if blk == nil {
		return errors.New("ship: join: the hub's answer holds no client certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("ship: join: client certificate: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return errors.New("ship: join: the hub's certificate is not for the key this host sent")
	}
	if pin != nil {
		blk, _ := pem.Decode(st.CAPEM)
		if blk == nil {
			return errors.New("ship: join: the hub's answer holds no CA")
		}
		if sum := sha256.Sum256(blk.Bytes); !bytes.Equal(sum[:], pin) {
			return errors.New("ship: join: the CA in the hub's answer is not the one pinned")
		}
	}
	if len(caPEM) > 0 {
		// The hub's server certificate may come from the CA given
		// rather than the hub's own: trust both from now on.
		st.CAPEM = append(append(append([]byte(nil), st.CAPEM...), '\n'), caPEM...)
	}
	if _, err := st.HubVerifier(); err != nil {
		return fmt.Errorf("ship: join: %w", err)
	}
	if _, err := note.NewVerifier(st.FleetKey); err != nil {
		return fmt.Errorf("ship: join: fleet key %q: %w", st.FleetKey, err)
	}
	if _, err := st.TLSConfig(); err != nil {
		return err
	}
	return nil
}
