// Package server is the fleet hub's HTTPS API (docs/hub.md): it enrols
// hosts with join tokens, authenticates them by the client certificates
// its CA issued, accepts or refuses the batches they ship, cosigns what
// it accepts, signs fleet checkpoints and serves session searches and
// fleet bundles to operators, and carries the approvals loop between
// hosts and approvers signed in through the identity provider. What
// it keeps is in hub/store; the wire types are hub/hubapi.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/hub/store"
)

// Publisher puts a signed fleet checkpoint where auditors find it (an
// S3 bucket under object lock, hub/publish). Publish must be idempotent:
// after a failure the hub publishes the same checkpoint again.
type Publisher interface {
	Publish(ctx context.Context, size int64, note []byte) error
}

// Options configure a Server.
type Options struct {
	Store *store.Store
	Keys  *Keys
	// Cert is the server certificate; the zero value has the hub's CA
	// issue one for Names.
	Cert  *tls.Certificate
	Names []string
	// MaxBatchEntries and MaxBatchBytes bound one batch.
	MaxBatchEntries int64
	MaxBatchBytes   int64
	// FleetInterval is how often the fleet log is checkpointed while it
	// grows.
	FleetInterval time.Duration
	// Publisher, when set, receives every fleet checkpoint.
	Publisher Publisher
	// Console, when set, serves every path the API does not: the web
	// console (hub/console).
	Console http.Handler
	Logger  *slog.Logger
	// Now is the clock (cosignature times, fleet checkpoints); time.Now
	// when nil.
	Now func() time.Time
	// Authenticators say who calls the approver API (approvals.go), tried
	// in order: the console's session, an OIDC bearer token. Without any,
	// every approver call is refused.
	Authenticators []Authenticator
	// DecisionTTL bounds how long a signed approval decision is good for
	// (never past the request's deadline); 5 minutes when zero.
	DecisionTTL time.Duration
}

// maxJoinBytes bounds a join request: a CSR and a few keys.
const maxJoinBytes = 64 << 10

// Server is the hub.
type Server struct {
	opts Options
	log  *slog.Logger
	tls  *tls.Config

	// fleetMu serializes fleet checkpoint signing (the loop and tests).
	fleetMu sync.Mutex

	// wake holds, per host, a channel closed at its next decision: what
	// its long poll waits on.
	wakeMu sync.Mutex
	wake   map[string]chan struct{}
}

// New makes a Server; Serve runs it.
func New(opts Options) (*Server, error) {
	if opts.Store == nil || opts.Keys == nil {
		return nil, errors.New("hub: a server needs a store and keys")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBatchEntries <= 0 || opts.MaxBatchBytes <= 0 || opts.FleetInterval <= 0 {
		return nil, errors.New("hub: batch bounds and the fleet interval must be positive")
	}
	cert := opts.Cert
	if cert == nil {
		c, err := opts.Keys.ServerCert(opts.Names)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	pool := x509.NewCertPool()
	pool.AddCert(opts.Keys.CA)
	s := &Server{opts: opts, log: opts.Logger}
	s.tls = &tls.Config{
		Certificates: []tls.Certificate{*cert},
		// Join and the fleet checkpoint need no client certificate;
		// every other handler refuses a request without one.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		MinVersion: tls.VersionTLS13,
	}
	return s, nil
}

// TLSConfig is the server's TLS configuration.
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// Handler serves the hub's API (over a TLS listener that sets
// r.TLS).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+hubapi.PathJoin, s.join)
	mux.HandleFunc("GET "+hubapi.PathHead, s.host(s.head))
	mux.HandleFunc("POST "+hubapi.PathBatches, s.host(s.batch))
	mux.HandleFunc("GET "+hubapi.PathFleet, s.fleet)
	mux.HandleFunc("GET "+hubapi.PathSessions, s.operator(s.sessions))
	mux.HandleFunc("GET "+hubapi.PathStatements, s.operator(s.statements))
	mux.HandleFunc("GET "+hubapi.PathFleetBundle, s.operator(s.fleetBundle))
	mux.HandleFunc("POST "+hubapi.PathHostApprovals, s.host(s.postHeld))
	mux.HandleFunc("DELETE "+hubapi.PathHostApprovals+"/{id}", s.host(s.deleteHeld))
	mux.HandleFunc("GET "+hubapi.PathHostDecisions, s.host(s.hostDecisions))
	mux.HandleFunc("GET "+hubapi.PathApprovals, s.person(s.listApprovals))
	mux.HandleFunc("GET "+hubapi.PathApprovals+"/{id}", s.person(s.getApproval))
	mux.HandleFunc("POST "+hubapi.PathApprovals+"/{id}/decision", s.person(s.decideApproval))
	if s.opts.Console != nil {
		mux.Handle("/", s.opts.Console)
	}
	return mux
}

// Serve serves HTTPS on ln until ctx ends, and signs fleet checkpoints
// every FleetInterval while the fleet log grows.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: 10 * time.Second,
		// A batch of the largest size over a slow link; a host that
		// cannot send it in this time sends smaller ones.
		ReadTimeout:  5 * time.Minute,
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.fleetLoop(ctx)
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
	}()
	err := hs.ServeTLS(ln, "", "")
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("hub: serve: %w", err)
}

func (s *Server) refuse(w http.ResponseWriter, status int, code, msg string, head *hubapi.Head) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(hubapi.Refusal{Code: code, Message: msg, Head: head})
}

func (s *Server) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// unavailable answers a failure of the hub's own (its database): the
// host keeps its entries and retries.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) {
	s.log.Error("hub: "+what, "err", err)
	s.refuse(w, http.StatusServiceUnavailable, hubapi.CodeUnavailable, what+" failed on the hub; retry later", nil)
}

// host wraps a handler that needs an enrolled host's client certificate:
// issued by the hub's CA (the TLS handshake checked that), naming the
// host in its CN, and the very certificate the host was enrolled with.
func (s *Server) host(fn func(http.ResponseWriter, *http.Request, store.Host)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "this call needs the client certificate the hub issued at enrolment", nil)
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		if slices.Contains(leaf.Subject.OrganizationalUnit, OperatorOU) {
			s.refuse(w, http.StatusForbidden, hubapi.CodeUnauthorized, "an operator certificate cannot ship as a host", nil)
			return
		}
		h, err := s.opts.Store.Host(r.Context(), leaf.Subject.CommonName)
		if errors.Is(err, store.ErrNoHost) {
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "the client certificate names no enrolled host", nil)
			return
		}
		if err != nil {
			s.unavailable(w, "host lookup", err)
			return
		}
		if Fingerprint(leaf.Raw) != h.CertFingerprint {
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "the client certificate is not the one host "+h.ID+" enrolled with", nil)
			return
		}
		fn(w, r, h)
	}
}

// operator wraps a handler for operators: a client certificate the hub's
// CA issued as an operator's.
func (s *Server) operator(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 ||
			!slices.Contains(r.TLS.VerifiedChains[0][0].Subject.OrganizationalUnit, OperatorOU) {
			s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "this call needs an operator certificate from the hub (interlock hub operator)", nil)
			return
		}
		fn(w, r)
	}
}

func headOf(h store.Host) *hubapi.Head {
	return &hubapi.Head{HostID: h.ID, JournalID: h.JournalID, Size: h.Size, Root: h.Root, CosignedSize: h.CosignedSize}
}

func (s *Server) head(w http.ResponseWriter, r *http.Request, h store.Host) {
	s.reply(w, headOf(h))
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request, h store.Host) {
	if r.ContentLength > s.opts.MaxBatchBytes {
		s.refuse(w, http.StatusRequestEntityTooLarge, hubapi.CodeTooLarge, fmt.Sprintf("the batch is %d bytes; the hub takes at most %d", r.ContentLength, s.opts.MaxBatchBytes), headOf(h))
		return
	}
	var b hubapi.Batch
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.opts.MaxBatchBytes))
	if err := dec.Decode(&b); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.refuse(w, http.StatusRequestEntityTooLarge, hubapi.CodeTooLarge, fmt.Sprintf("the batch exceeds %d bytes", s.opts.MaxBatchBytes), headOf(h))
			return
		}
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "the batch is not JSON of hubapi.Batch: "+err.Error(), headOf(h))
		return
	}
	switch n := int64(len(b.Entries)); {
	case n == 0:
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "the batch has no entries", headOf(h))
		return
	case n > s.opts.MaxBatchEntries:
		s.refuse(w, http.StatusRequestEntityTooLarge, hubapi.CodeTooLarge, fmt.Sprintf("the batch has %d entries; the hub takes at most %d", n, s.opts.MaxBatchEntries), headOf(h))
		return
	}
	var cosigned []byte
	after, err := s.opts.Store.Batch(r.Context(), h.ID, func(st store.HostState) (*store.Accepted, error) {
		acc, err := accept(st, &b, s.opts.Keys.Cosigner, s.opts.Now())
		if acc != nil {
			cosigned = acc.Cosigned
		}
		return acc, err
	})
	var ref *store.Refusal
	switch {
	case errors.As(err, &ref):
		status := http.StatusUnprocessableEntity
		if ref.Code == hubapi.CodeNotContiguous {
			status = http.StatusConflict
		}
		s.log.Warn("hub: batch refused", "host", h.ID, "code", ref.Code, "from", b.From, "entries", len(b.Entries), "reason", ref.Message)
		s.refuse(w, status, ref.Code, ref.Message, headOf(after))
		return
	case err != nil:
		s.unavailable(w, "storing the batch", err)
		return
	}
	s.reply(w, hubapi.BatchResponse{Head: *headOf(after), Cosigned: cosigned})
}

// join enrols a host: the token is checked and burned, the CSR signed,
// and the host recorded with its journal's key, in that order of cost
// (the cheap checks first, the token burned last so a bad CSR does not
// waste it).
func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req hubapi.JoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJoinBytes)).Decode(&req); err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, "the join request is not JSON of hubapi.JoinRequest (at most 64 KiB)", nil)
		return
	}
	if err := checkJoin(&req); err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, err.Error(), nil)
		return
	}
	id := newHostID()
	cert, fp, err := s.opts.Keys.SignCSR([]byte(req.CSR), id)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, hubapi.CodeBadRequest, err.Error(), nil)
		return
	}
	err = s.opts.Store.Enroll(r.Context(), HashToken(req.Token), store.Host{
		ID: id, Name: req.HostName, JournalID: req.JournalID, JournalKey: req.JournalKey,
		CertFingerprint: fp, EnrolledAt: s.opts.Now().UTC(),
	})
	switch {
	case errors.Is(err, store.ErrBadToken):
		s.refuse(w, http.StatusUnauthorized, hubapi.CodeUnauthorized, "the join token is unknown, used or expired", nil)
		return
	case errors.Is(err, store.ErrEnrolled):
		s.refuse(w, http.StatusConflict, hubapi.CodeBadRequest, "journal "+req.JournalID+" is already enrolled (as another host); the token was not used", nil)
		return
	case err != nil:
		s.unavailable(w, "enrolment", err)
		return
	}
	s.log.Info("hub: host enrolled", "host", id, "name", req.HostName, "journal", req.JournalID)
	s.reply(w, hubapi.JoinResponse{
		HostID: id, Certificate: string(cert), CA: string(s.opts.Keys.CAPEM),
		HubKey: s.opts.Keys.CosignerKey, FleetKey: s.opts.Keys.FleetKey,
	})
}

func newHostID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "h" + strings.ToLower(base32NoPad(b))
}

// NewToken makes a join token: 32 random bytes, which the hub keeps only
// hashed (HashToken).
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// TokenPrefix starts every join token, so one pasted in the wrong place
// is recognisable.
const TokenPrefix = "iljoin_"

// HashToken is what the store keeps of a token.
func HashToken(token string) []byte {
	s := sha256.Sum256([]byte(token))
	return s[:]
}

func base32NoPad(b []byte) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// checkJoin checks a join request's fields before anything is spent on
// it.
func checkJoin(req *hubapi.JoinRequest) error {
	switch {
	case !strings.HasPrefix(req.Token, TokenPrefix) || len(req.Token) > 128:
		return errors.New("token: not a join token from interlock hub token create")
	case req.HostName == "" || len(req.HostName) > 253 || strings.IndexFunc(req.HostName, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return errors.New("host_name: want 1 to 253 printable characters without spaces")
	case len(req.JournalID) != 32 || strings.Trim(req.JournalID, "0123456789abcdef") != "":
		return errors.New("journal_id: want the journal's id, 32 lowercase hex digits")
	}
	// x/mod's note knows only ed25519 keys, the journal's.
	if _, err := note.NewVerifier(req.JournalKey); err != nil {
		return fmt.Errorf("journal_key: not a note verifier key (the text of journal.pub): %v", err)
	}
	return nil
}
