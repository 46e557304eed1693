package evidence

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// OriginPrefix starts the origin line of every checkpoint; the journal id
// follows, so a checkpoint of one journal can never pass for another's.
const OriginPrefix = "interlock/journal/"

// Origin is the checkpoint origin line of the journal with that id.
func Origin(journalID string) string { return OriginPrefix + journalID }

// Checkpoint is a signed tree head in the C2SP checkpoint format:
//
//	interlock/journal/<journal id>
//	<tree size>
//	<base64 root hash>
//	time <unix nanoseconds>
//
// followed by a blank line and one signature line. The tree size is the
// number of entries it covers (entries 1..Size).
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   int64     `json:"size"`
	Root   tlog.Hash `json:"root"`
	TimeNS int64     `json:"time_ns"`
	// Note is the signed note, byte for byte.
	Note []byte `json:"-"`
}

// JournalID is the id in the checkpoint's origin line.
func (c Checkpoint) JournalID() string { return strings.TrimPrefix(c.Origin, OriginPrefix) }

// Time is the signing time.
func (c Checkpoint) Time() time.Time { return time.Unix(0, c.TimeNS).UTC() }

func checkpointText(origin string, size int64, root tlog.Hash, timeNS int64) string {
	return fmt.Sprintf("%s\n%d\n%s\ntime %d\n", origin, size, base64.StdEncoding.EncodeToString(root[:]), timeNS)
}

// SignCheckpoint signs a tree head. Callers sign only trees whose entries
// are synced to disk: a checkpoint must never vouch for data a power
// failure can still take back.
func SignCheckpoint(s note.Signer, origin string, size int64, root tlog.Hash, t time.Time) (Checkpoint, error) {
	text := checkpointText(origin, size, root, t.UnixNano())
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("journal: sign checkpoint: %w", err)
	}
	return Checkpoint{Origin: origin, Size: size, Root: root, TimeNS: t.UnixNano(), Note: msg}, nil
}

// CheckpointError says why a checkpoint was refused.
type CheckpointError struct{ Msg string }

func (e *CheckpointError) Error() string { return e.Msg }

func cpErr(format string, args ...any) error {
	return &CheckpointError{Msg: fmt.Sprintf(format, args...)}
}

// ParseCheckpoint verifies msg with v and decodes it. It is strict: exactly
// one signature, by v, and every byte in the one form SignCheckpoint
// writes, so that no byte of a stored checkpoint can change unnoticed
// (note.Open alone ignores extra unknown signatures and non-zero base64
// padding bits).
func ParseCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	return parseCheckpoint(msg, v, OriginPrefix, "an interlock journal")
}

// parseCheckpoint is ParseCheckpoint for origins under prefix: host
// journals and fleet logs share the form but must never pass for each
// other.
func parseCheckpoint(msg []byte, v note.Verifier, prefix, what string) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unknown):
			names := []string{}
			for _, s := range unknown.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return Checkpoint{}, cpErr("checkpoint is not signed by %s+%08x (signed by %s)", v.Name(), v.KeyHash(), strings.Join(names, ", "))
		case errors.As(err, &invalid):
			return Checkpoint{}, cpErr("checkpoint signature by %s+%08x does not verify: the checkpoint was changed", invalid.Name, invalid.Hash)
		}
		return Checkpoint{}, cpErr("checkpoint is not a well-formed signed note: %v", err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return Checkpoint{}, cpErr("checkpoint has %d signatures; want exactly one, by %s", len(n.Sigs)+len(n.UnverifiedSigs), v.Name())
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(n.Sigs[0].Base64)
	if err != nil {
		return Checkpoint{}, cpErr("checkpoint signature is not canonical base64")
	}
	want := n.Text + "\n— " + n.Sigs[0].Name + " " + base64.StdEncoding.EncodeToString(sig) + "\n"
	if string(msg) != want {
		return Checkpoint{}, cpErr("checkpoint is not in canonical form (extra bytes around its text or signature)")
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) != 4 {
		return Checkpoint{}, cpErr("checkpoint text has %d lines, want 4 (origin, size, root, time)", len(lines))
	}
	c := Checkpoint{Origin: lines[0], Note: append([]byte(nil), msg...)}
	if !strings.HasPrefix(c.Origin, prefix) || len(c.Origin) == len(prefix) {
		return Checkpoint{}, cpErr("checkpoint origin %q is not %s", c.Origin, what)
	}
	if c.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || c.Size < 1 || strconv.FormatInt(c.Size, 10) != lines[1] {
		return Checkpoint{}, cpErr("checkpoint tree size %q is not a positive integer", lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return Checkpoint{}, cpErr("checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	copy(c.Root[:], root)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if c.TimeNS, err = strconv.ParseInt(ts, 10, 64); !ok || err != nil || strconv.FormatInt(c.TimeNS, 10) != ts {
		return Checkpoint{}, cpErr("checkpoint time line %q is not \"time <unix ns>\"", lines[3])
	}
	return c, nil
}

// ReadCheckpointFile reads and verifies a checkpoint file.
func ReadCheckpointFile(path string, v note.Verifier) (Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("journal: checkpoint: %w", err)
	}
	c, err := ParseCheckpoint(b, v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("journal: checkpoint %s: %w", path, err)
	}
	return c, nil
}

// ExternalCheckpoint is a checkpoint from outside the journal or bundle
// being verified (a file the auditor kept): Name says where it came from.
type ExternalCheckpoint struct {
	Name string
	Note []byte
}

// SameTree reports whether two checkpoints state the same tree.
func SameTree(a, b Checkpoint) bool {
	return a.Origin == b.Origin && a.Size == b.Size && bytes.Equal(a.Root[:], b.Root[:])
}
