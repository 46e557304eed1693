package ship

import (
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
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
)

// testCA issues certificates the way the hub does: its own CA, a server
// certificate sent with the CA in its chain, client certificates from
// CSRs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test hub CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key}
}

func (ca *testCA) issue(t *testing.T, pub any, cn string, server bool) []byte {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// joinHub answers a join with a certificate for the CSR's key, then
// serves the head to clients with a certificate from its CA only.
func joinHub(t *testing.T, ca *testCA, answerCA []byte) (*httptest.Server, *hubapi.JoinRequest) {
	_, hubKey, _ := note.GenerateKey(rand.Reader, "hub.test")
	_, fleetKey, _ := note.GenerateKey(rand.Reader, "fleet.test")
	got := &hubapi.JoinRequest{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case hubapi.PathJoin:
			json.NewDecoder(r.Body).Decode(got)
			blk, _ := pem.Decode([]byte(got.CSR))
			csr, err := x509.ParseCertificateRequest(blk.Bytes)
			if err != nil || got.Token != "tok" {
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(hubapi.Refusal{Code: hubapi.CodeUnauthorized, Message: "bad token"})
				return
			}
			json.NewEncoder(w).Encode(hubapi.JoinResponse{HostID: "host-7", CA: string(answerCA), HubKey: hubKey, FleetKey: fleetKey,
				Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.issue(t, csr.PublicKey, "host", false)}))})
		case hubapi.PathHead:
			if len(r.TLS.PeerCertificates) == 0 {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(hubapi.Head{HostID: r.TLS.PeerCertificates[0].Subject.CommonName, Size: 3})
		}
	}))
	skey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{ca.issue(t, skey.Public(), "hub", true), ca.cert.Raw}, PrivateKey: skey}},
		ClientAuth:   tls.VerifyClientCertIfGiven, ClientCAs: pool,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, got
}

// A host joins by the CA file or the pinned CA fingerprint, keeps its
// enrolment with the modes it needs, and then calls the hub with mutual
// TLS; a wrong pin, a CA in the answer other than the pinned one, or a
// bad token enrol nothing.
func TestJoin(t *testing.T) {
	ca := newTestCA(t)
	srv, got := joinHub(t, ca, ca.pem())
	sum := sha256.Sum256(ca.cert.Raw)
	pin := hex.EncodeToString(sum[:])
	ctx := context.Background()
	base := JoinOptions{URL: srv.URL, Token: "tok", HostName: "runner-1", JournalID: "abc", JournalKey: "k"}

	for _, o := range []JoinOptions{{CASHA256: pin}, {CASHA256: strings.ToUpper(pin)}, {CAPEM: ca.pem()}} {
		o.URL, o.Token, o.HostName, o.JournalID, o.JournalKey = base.URL, base.Token, base.HostName, base.JournalID, base.JournalKey
		dir := filepath.Join(t.TempDir(), "hub")
		st, err := Join(ctx, o, dir)
		if err != nil {
			t.Fatalf("Join(%+v): %v", o, err)
		}
		if st.HostID != "host-7" || got.HostName != "runner-1" || got.JournalID != "abc" || got.JournalKey != "k" {
			t.Fatalf("enrolled %q with request %+v", st.HostID, got)
		}
		if err := st.Save(); err != nil {
			t.Fatal(err)
		}
		for name, mode := range map[string]os.FileMode{ClientKey: 0o600, ClientCert: 0o640, HostIDFile: 0o640, HubKeyFile: 0o640} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), mode)
			}
		}
		loaded, err := LoadState(dir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(srv.URL, loaded)
		if err != nil {
			t.Fatal(err)
		}
		h, err := c.Head(ctx)
		if err != nil || h.HostID != "host" || h.Size != 3 {
			t.Fatalf("Head over mutual TLS = %+v, %v", h, err)
		}
	}

	other := newTestCA(t)
	osum := sha256.Sum256(other.cert.Raw)
	for _, c := range []struct {
		o    JoinOptions
		want string
	}{
		{JoinOptions{CASHA256: hex.EncodeToString(osum[:])}, "no certificate the hub sent has the SHA-256 fingerprint"},
		{JoinOptions{CAPEM: other.pem()}, "certificate signed by unknown authority"},
		{JoinOptions{}, "required"},
		{JoinOptions{CASHA256: "abcd"}, "not a hex SHA-256"},
		{JoinOptions{CASHA256: pin, Token: "wrong"}, "unauthorized"},
	} {
		o := c.o
		o.URL, o.HostName, o.JournalID, o.JournalKey = base.URL, base.HostName, base.JournalID, base.JournalKey
		if o.Token == "" {
			o.Token = base.Token
		}
		if _, err := Join(ctx, o, t.TempDir()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Join(%+v) = %v, want an error with %q", c.o, err, c.want)
		}
	}

	// A hub that answers with a CA other than the one pinned.
	srv2, _ := joinHub(t, ca, other.pem())
	o := base
	o.URL, o.CASHA256 = srv2.URL, pin
	if _, err := Join(ctx, o, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not the one pinned") {
		t.Errorf("Join with another CA in the answer = %v", err)
	}
}
