// Package decision signs and verifies the hub's approval decisions
// (docs/hub.md, "Approvals from anywhere"): a hubapi.SignedDecision is a
// signed note whose text states every field the host acts on, signed with
// the hub's cosigner key under a signature type of its own, so that a
// decision can never pass for a checkpoint or a cosignature, nor they for
// a decision.
package decision

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/hub/hubapi"
	"github.com/interlock/interlock/model"
)

// Header is the first line of every decision note's text: it names what
// the signature is for.
const Header = "interlock approval decision v1"

// sigType is the note signature type of decisions: 0xff, "a signature
// type with an identifier" in C2SP signed-note, with identifier sigID.
// Checkpoints are signed with type 0x01 and cosignatures with 0x04, so a
// decision signature has another key hash than either (note verifiers
// never try it as one of them), and its message starts with Header where
// a cosignature's starts with "cosignature/v1".
const (
	sigType = 0xff
	sigID   = "interlock-approval-decision/v1"
)

// keyHash is the note key hash of the decision key: SHA-256 over the
// name, a newline, the type, the identifier and the public key.
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{sigType})
	h.Write([]byte(sigID))
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s *signer) Name() string                    { return s.name }
func (s *signer) KeyHash() uint32                 { return s.hash }
func (s *signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NewSigner is the decision signer of an ed25519 note signer key (the
// hub's cosigner key text, PRIVATE+KEY+name+hash+base64(0x01||seed)).
func NewSigner(skey string) (note.Signer, error) {
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return nil, errors.New("decision: not a note signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, errors.New("decision: not an ed25519 note signer key")
	}
	key := ed25519.NewKeyFromSeed(raw[1:])
	return &signer{name: parts[2], hash: keyHash(parts[2], key.Public().(ed25519.PublicKey)), key: key}, nil
}

type verifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

func (v *verifier) Name() string    { return v.name }
func (v *verifier) KeyHash() uint32 { return v.hash }
func (v *verifier) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(v.pub, msg, sig)
}

// NewVerifier is the decision verifier of the hub's key as a host holds
// it from enrolment (hub.pub: name+hash+base64(type||public key), type
// 0x04 or 0x01): the same ed25519 key, under the decision type.
func NewVerifier(hubKey string) (note.Verifier, error) {
	parts := strings.SplitN(strings.TrimSpace(hubKey), "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("decision: the hub key is not a note verifier key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || (raw[0] != 0x04 && raw[0] != 0x01) {
		return nil, errors.New("decision: the hub key is not an ed25519 key")
	}
	pub := ed25519.PublicKey(raw[1:])
	return &verifier{name: parts[0], hash: keyHash(parts[0], pub), pub: pub}, nil
}

// Text is the note text of d: one field a line, strings JSON-quoted so
// that no value can start a line of its own. Signed is not part of it.
func Text(d hubapi.SignedDecision) []byte {
	var b strings.Builder
	line := func(k string, v any) {
		j, _ := json.Marshal(v)
		b.WriteString(k + " " + string(j) + "\n")
	}
	b.WriteString(Header + "\n")
	line("host", d.HostID)
	line("request", d.RequestID)
	line("request_sha256", d.RequestSHA256)
	line("verdict", d.Verdict)
	line("scope", d.Scope)
	line("reason", d.Reason)
	line("decided_at", d.DecidedAt.UTC().Format(time.RFC3339Nano))
	line("expires_at", d.ExpiresAt.UTC().Format(time.RFC3339Nano))
	line("approver", d.Approver)
	line("approvers", d.Approvers)
	return []byte(b.String())
}

// Sign fills in d.Signed: d's text signed by s (from NewSigner).
func Sign(d *hubapi.SignedDecision, s note.Signer) error {
	d.DecidedAt = d.DecidedAt.UTC()
	d.ExpiresAt = d.ExpiresAt.UTC()
	msg, err := note.Sign(&note.Note{Text: string(Text(*d))}, s)
	if err != nil {
		return fmt.Errorf("decision: sign: %w", err)
	}
	d.Signed = string(msg)
	return nil
}

// ErrBadSignature: the decision's note is not signed by the hub's
// decision key.
var ErrBadSignature = errors.New("decision: the note is not signed by the hub's decision key")

// Open verifies d.Signed with v and returns the decision its text states
// (with Signed kept): the fields outside the note are never trusted. It
// checks the signature and the form only; what the decision may do is
// the host's to check (the request, its hash, the host, the expiry).
func Open(d hubapi.SignedDecision, v note.Verifier) (hubapi.SignedDecision, error) {
	n, err := note.Open([]byte(d.Signed), note.VerifierList(v))
	if err != nil {
		return hubapi.SignedDecision{}, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	out, err := parse(n.Text)
	if err != nil {
		return hubapi.SignedDecision{}, err
	}
	out.Signed = d.Signed
	return out, nil
}

func parse(text string) (hubapi.SignedDecision, error) {
	var d hubapi.SignedDecision
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) == 0 || lines[0] != Header {
		return d, errors.New("decision: the signed text is not an approval decision (first line)")
	}
	var decided, expires string
	fields := []struct {
		key string
		v   any
	}{
		{"host", &d.HostID}, {"request", &d.RequestID}, {"request_sha256", &d.RequestSHA256},
		{"verdict", &d.Verdict}, {"scope", &d.Scope}, {"reason", &d.Reason},
		{"decided_at", &decided}, {"expires_at", &expires}, {"approver", &d.Approver}, {"approvers", &d.Approvers},
	}
	if len(lines) != 1+len(fields) {
		return d, fmt.Errorf("decision: the signed text has %d lines, want %d", len(lines), 1+len(fields))
	}
	for i, f := range fields {
		v, ok := strings.CutPrefix(lines[1+i], f.key+" ")
		if !ok {
			return d, fmt.Errorf("decision: line %d is not %s", 2+i, f.key)
		}
		if err := json.Unmarshal([]byte(v), f.v); err != nil {
			return d, fmt.Errorf("decision: %s: %w", f.key, err)
		}
	}
	var err error
	if d.DecidedAt, err = time.Parse(time.RFC3339Nano, decided); err != nil {
		return d, fmt.Errorf("decision: decided_at: %w", err)
	}
	if d.ExpiresAt, err = time.Parse(time.RFC3339Nano, expires); err != nil {
		return d, fmt.Errorf("decision: expires_at: %w", err)
	}
	if d.Verdict != model.VerdictApprove && d.Verdict != model.VerdictDeny {
		return d, fmt.Errorf("decision: verdict %q is neither approve nor deny", d.Verdict)
	}
	return d, nil
}

// RequestSHA256 is the hash a decision names its request by: the hex
// SHA-256 of the approval.request entry's data, the JSON bytes the
// journal stores for the request (json.Marshal of the
// model.ApprovalRequest, which is what the journal's encoder writes).
func RequestSHA256(req model.ApprovalRequest) (string, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("decision: encode the request: %w", err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// RequesterNames are the names a requester goes by as a person: the
// login user, every user along the sudo chain, the process's user and
// the CI actor (verified or only claimed: a name here can only keep
// someone from approving, never let them). An approver whose IdP
// username is one of them is the requester, and neither the hub nor the
// host takes their decision; with no name at all, the requester could be
// anyone, and neither takes any.
func RequesterNames(id model.Identity) []string {
	var out []string
	add := func(n string) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if h := id.Human; h != nil {
		add(h.LoginUser)
		for _, hop := range h.Chain {
			add(hop.FromUser)
			add(hop.ToUser)
		}
	}
	if id.Proc != nil {
		add(id.Proc.User)
	}
	if wl := id.Workload; wl != nil {
		add(wl.Claims[model.ClaimActor])
	}
	return out
}

// NamesApprover says whether a rule's approvers (user names and
// @groups) name the person called name, member of groups. The host's
// broker (local accounts, console sign-ins) and the hub both ask it, so a
// rule names the same people wherever it is decided. An empty name is
// nobody.
func NamesApprover(name string, groups, approvers []string) bool {
	if name == "" {
		return false
	}
	for _, a := range approvers {
		if g, ok := strings.CutPrefix(a, "@"); ok {
			if slices.Contains(groups, g) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

// IsRequester says whether the person the IdP calls username goes by one
// of the requester's names. IdP usernames and Unix names are spelled
// differently (Alice, alice@corp.example, alice), so the comparison
// ignores case and an email-style domain: matching too widely only keeps
// someone from approving, matching too narrowly would let the requester
// approve their own request.
func IsRequester(names []string, username string) bool {
	local, _, _ := strings.Cut(username, "@")
	for _, n := range names {
		nl, _, _ := strings.Cut(n, "@")
		if strings.EqualFold(n, username) || strings.EqualFold(nl, local) {
			return true
		}
	}
	return false
}
