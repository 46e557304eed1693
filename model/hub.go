package model

// KindHubCosignature is the entry a host's shipper writes for each
// cosignature the fleet hub returned (docs/hub.md): the host's own journal
// then proves which of its checkpoints the hub witnessed, and up to which
// size its entries are held elsewhere.
const KindHubCosignature = "hub.cosignature"

// HubCosignature is the data of a hub.cosignature entry. The cosigned note
// is kept whole in the data, not as a payload: payloads may be pruned, and
// this is evidence.
type HubCosignature struct {
	// Size and Root are the cosigned checkpoint's tree (entries 1..Size).
	Size int64  `json:"size"`
	Root []byte `json:"root"`
	// HostID is the id the hub enrolled this host under.
	HostID string `json:"host_id,omitempty"`
	// HubKey is the name of the hub's cosigning key (its note key name).
	HubKey string `json:"hub_key"`
	// CosignedNS is the time the hub put in its cosignature (C2SP
	// tlog-cosignature time, seconds precision) in nanoseconds.
	CosignedNS int64 `json:"cosigned_ns"`
	// Note is the checkpoint with the host's signature and the hub's
	// cosignature, byte for byte.
	Note string `json:"note"`
}
