package evidence

import "golang.org/x/mod/sumdb/tlog"

// An evidence bundle is a sealed gzip file (seal.go) holding a tar whose
// first member is the manifest; docs/journal.md specifies it.

// Bundle format identifiers.
const (
	Format  = "interlock-evidence-bundle"
	Version = 1
)

// Fixed names inside a bundle, in the order they appear. Session casts
// (sessions/ID.cast, and sessions/ID-chN.cast for a session's later pty channels) come between approvals.csv and summary.html.
const (
	FileManifest    = "manifest.json"
	FilePublicKey   = "journal.pub"
	FileCheckpoints = "checkpoints.jsonl"
	FileProofs      = "proofs.json"
	FileLeaves      = "leaves.bin"
	FileEntries     = "entries.jsonl"
	FilePayloads    = "payloads.jsonl"
	FileStatements  = "statements.csv"
	FileApprovals   = "approvals.csv"
	FileSummary     = "summary.html"
)

// FixedFiles are the members every bundle has after the manifest, in
// order; the session casts follow them, and FileSummary ends the bundle.
func FixedFiles() []string {
	return []string{FilePublicKey, FileCheckpoints, FileProofs, FileLeaves, FileEntries, FilePayloads, FileStatements, FileApprovals}
}

// Manifest describes a bundle; it is the bundle's first file.
type Manifest struct {
	Format    string `json:"format"`
	Version   int    `json:"version"`
	JournalID string `json:"journal_id"`
	// PublicKey is the journal key (note verifier key) that signed the
	// checkpoints and the seal.
	PublicKey string    `json:"public_key"`
	CreatedNS int64     `json:"created_ns"`
	Selection Selection `json:"selection"`
	// FirstSeq..LastSeq is the range the bundle proves; TreeSize the
	// checkpoint it is proven against.
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	TreeSize uint64   `json:"tree_size"`
	Counts   Counts   `json:"counts"`
	Files    []File   `json:"files"`
	Warnings []string `json:"warnings,omitempty"`
}

// Selection is what the export asked for (zero values: everything).
type Selection struct {
	SinceNS int64  `json:"since_ns,omitempty"`
	UntilNS int64  `json:"until_ns,omitempty"`
	Session string `json:"session,omitempty"`
}

// Matches reports whether an entry is selected: the same rule as the
// journal's Selection when the bundle was exported.
func (s Selection) Matches(timeNS int64, session string) bool {
	return (s.SinceNS == 0 || timeNS >= s.SinceNS) &&
		(s.UntilNS == 0 || timeNS <= s.UntilNS) &&
		(s.Session == "" || session == s.Session)
}

// Counts are what the bundle holds.
type Counts struct {
	// Entries are in entries.jsonl; Omitted entries of the range are
	// represented by their leaf hash only (leaves.bin).
	Entries         uint64 `json:"entries"`
	Omitted         uint64 `json:"omitted"`
	Payloads        uint64 `json:"payloads"`
	PayloadsDeleted uint64 `json:"payloads_deleted"`
	Checkpoints     uint64 `json:"checkpoints"`
	Sessions        uint64 `json:"sessions"`
	Statements      uint64 `json:"statements"`
	Approvals       uint64 `json:"approvals"`
	Casts           uint64 `json:"casts"`
}

// File is one file of the bundle.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Proofs is proofs.json: how the range's leaves prove against the tree.
type Proofs struct {
	TreeSize uint64 `json:"tree_size"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Left are the frontier hashes of the tree of size FirstSeq-1: with
	// the range's leaves they give the tree of size LastSeq.
	Left []tlog.Hash `json:"left"`
	// Consistency proves the tree of size LastSeq is a prefix of the one
	// of size TreeSize (RFC 6962 consistency proof; empty when equal).
	Consistency []tlog.Hash `json:"consistency"`
}

// PayloadLine is one line of payloads.jsonl.
type PayloadLine struct {
	Seq  uint64 `json:"seq"`
	Salt string `json:"salt"`
	Data string `json:"data"`
}

// CheckpointLine is one line of checkpoints.jsonl.
type CheckpointLine struct {
	Note string `json:"note"`
}

// SafeName reports whether a session id can be a file name as it is.
func SafeName(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
