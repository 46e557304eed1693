package journal

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/interlock/interlock/internal/atomicfile"
)

// Key file names inside the state directory.
const (
	KeyFile       = "journal.key"
	PublicKeyFile = "journal.pub"
)

// Signer signs checkpoints (and bundle seals) with the journal key.
type Signer struct {
	note.Signer
	// VerifierKey is the public half in note's "name+hash+key" form, as
	// journal.pub holds it.
	VerifierKey string
}

// Verifier returns the note verifier of the signer's public key.
func (s *Signer) Verifier() note.Verifier {
	v, err := note.NewVerifier(s.VerifierKey)
	if err != nil {
		panic("journal: verifier key derived from a valid signer does not parse: " + err.Error())
	}
	return v
}

// keyName names the key in signature lines; the host name tells keys of
// different machines apart for a reader of a bundle.
func keyName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, "+ \t\n") {
		return "interlock"
	}
	return "interlock@" + h
}

// LoadOrCreateKey returns the signer whose private key is at
// stateDir/journal.key, creating the key pair (mode 0600, and journal.pub
// 0644 beside it) if there is none. Several processes starting at once
// agree on one key: the file appears atomically (link, which fails if it
// exists) and the losers read the winner's.
func LoadOrCreateKey(stateDir string) (*Signer, error) {
	priv := filepath.Join(stateDir, KeyFile)
	s, err := LoadSigner(priv)
	if err == nil {
		return s, ensurePublic(stateDir, s)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("journal: create state directory %s: %w", stateDir, err)
	}
	skey, _, err := note.GenerateKey(rand.Reader, keyName())
	if err != nil {
		return nil, fmt.Errorf("journal: generate signing key: %w", err)
	}
	if _, err := atomicfile.Create(priv, []byte(skey+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("journal: create signing key %s: %w", priv, err)
	}
	if s, err = LoadSigner(priv); err != nil {
		return nil, err
	}
	return s, ensurePublic(stateDir, s)
}

// ensurePublic (re)writes journal.pub when it is missing or does not hold
// the key's public half, so the exported key always matches.
func ensurePublic(stateDir string, s *Signer) error {
	pub := filepath.Join(stateDir, PublicKeyFile)
	if b, err := os.ReadFile(pub); err == nil && strings.TrimSpace(string(b)) == s.VerifierKey {
		return nil
	}
	if err := atomicfile.Write(pub, []byte(s.VerifierKey+"\n"), 0o644); err != nil {
		return fmt.Errorf("journal: export public key: %w", err)
	}
	return nil
}

// LoadSigner reads a private key file written by LoadOrCreateKey. A key
// file others can read is refused: whoever has it can sign checkpoints.
func LoadSigner(path string) (*Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("journal: signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("journal: signing key %s has mode %v; it must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("journal: signing key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	ns, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("journal: signing key %s does not parse: %w", path, err)
	}
	vkey, err := verifierKeyOf(skey)
	if err != nil {
		return nil, fmt.Errorf("journal: signing key %s: %w", path, err)
	}
	return &Signer{Signer: ns, VerifierKey: vkey}, nil
}

// verifierKeyOf derives "name+hash+key" from "PRIVATE+KEY+name+hash+key".
func verifierKeyOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("not a PRIVATE+KEY+name+hash+key string")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("not an ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// CheckpointPath is where the newest checkpoint of the journal at dbPath is
// written: a file beside the database.
func CheckpointPath(dbPath string) string { return dbPath + ".checkpoint" }
