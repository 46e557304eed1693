package evidence

import (
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FleetOriginPrefix starts the origin line of a hub's fleet log, whose
// leaves are the host checkpoints the hub accepted and cosigned. It is
// not under OriginPrefix, so a fleet checkpoint never passes for a host's.
const FleetOriginPrefix = "interlock/fleet/"

// FleetOrigin is the origin line of a hub's fleet log.
func FleetOrigin(hubID string) string { return FleetOriginPrefix + hubID }

// HubID is the hub id in a fleet checkpoint's origin line.
func (c Checkpoint) HubID() string { return strings.TrimPrefix(c.Origin, FleetOriginPrefix) }

// FleetLeaf is the leaf hash of one accepted, cosigned host checkpoint in
// the fleet log: the RFC 6962 leaf hash of the cosigned note, byte for
// byte, so the fleet log vouches for the cosignature as well as for the
// host's tree.
func FleetLeaf(cosignedNote []byte) tlog.Hash { return tlog.RecordHash(cosignedNote) }

// SignFleetCheckpoint signs a fleet log's tree head with the fleet key:
// the same C2SP checkpoint text as a host's, with origin FleetOrigin(hubID).
func SignFleetCheckpoint(s note.Signer, hubID string, size int64, root tlog.Hash, t time.Time) (Checkpoint, error) {
	return SignCheckpoint(s, FleetOrigin(hubID), size, root, t)
}

// ParseFleetCheckpoint verifies a fleet checkpoint with the fleet key and
// decodes it, as strictly as ParseCheckpoint does a host's.
func ParseFleetCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	return parseCheckpoint(msg, v, FleetOriginPrefix, "an interlock fleet log")
}
