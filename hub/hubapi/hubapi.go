// Package hubapi is the wire vocabulary between a host's shipper and the
// fleet hub (docs/hub.md): enrolment, the head the hub holds for a host,
// batches of entries with the host's signed checkpoint, and the hub's
// cosignature. It imports only the standard library and model, so that a
// shipper, the hub and an offline verifier can all speak it.
package hubapi

import (
	"encoding/json"

	"github.com/interlock/interlock/model"
)

// Paths of the hub's API. The host paths need the host's client
// certificate (mutual TLS), the operator paths an operator's; Join needs
// a join token instead, and the fleet checkpoint nothing.
const (
	PathJoin    = "/v1/join"
	PathHead    = "/v1/host/head"
	PathBatches = "/v1/host/batches"
	// PathFleet serves the newest fleet checkpoint (no client certificate
	// needed to read it: it is public evidence).
	PathFleet = "/v1/fleet/checkpoint"
	// PathSessions searches sessions across hosts (operators and auditors;
	// see docs/hub.md for who may call it).
	PathSessions = "/v1/sessions"
	// PathStatements searches the operations of every host's sessions
	// (pg.statement, and ssh exec, subsystem and shell requests), for
	// operators.
	PathStatements = "/v1/statements"
	// PathFleetBundle serves the fleet bundle `interlock hub export`
	// writes (gzip-compressed JSON, streamed), for operators: every host,
	// or the hosts named by QueryHost, from QueryFrom with one host.
	PathFleetBundle = "/v1/fleet/bundle"
)

// Query parameters of PathFleetBundle besides QueryHost (repeatable).
const (
	// QueryFrom is the first seq of the one host's entries (1 when
	// absent); the bundle carries the frontier of the tree before it.
	QueryFrom = "from"
	// QueryFleetSize asks for the bundle against the fleet checkpoint of
	// this size (one the hub signed: the auditor's pinned copy from the
	// bucket) instead of the newest.
	QueryFleetSize = "fleet_size"
)

// TrailerExportError is the HTTP trailer in which the hub says why a
// fleet bundle it had started to stream was cut short (a failure of its
// database half way: the status was already sent).
const TrailerExportError = "Interlock-Export-Error"

// JoinRequest enrols a host: it proves it holds a join token the hub
// issued (one use, short-lived), and registers the keys the hub will hold
// it to.
type JoinRequest struct {
	Token    string `json:"token"`
	HostName string `json:"host_name"`
	// JournalID is the id of the host's journal (its checkpoints' origin
	// is interlock/journal/<id>); JournalKey is the note verifier key
	// that signs them (the text of journal.pub).
	JournalID  string `json:"journal_id"`
	JournalKey string `json:"journal_key"`
	// CSR is a PEM certificate request for the host's TLS client key.
	CSR string `json:"csr"`
}

// JoinResponse is what a host keeps after enrolment.
type JoinResponse struct {
	HostID string `json:"host_id"`
	// Certificate is the host's client certificate (PEM), issued by the
	// hub's CA; CA is that CA (PEM), which the host then trusts for the
	// hub's server certificate too.
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	// HubKey is the note verifier key of the hub's cosignatures
	// (C2SP tlog-cosignature, ed25519), and FleetKey that of its fleet
	// checkpoints.
	HubKey   string `json:"hub_key"`
	FleetKey string `json:"fleet_key"`
}

// Head is what the hub holds of one host's journal: entries 1..Size, the
// root over them, and the largest checkpoint it cosigned.
type Head struct {
	HostID       string `json:"host_id"`
	JournalID    string `json:"journal_id"`
	Size         int64  `json:"size"`
	Root         []byte `json:"root,omitempty"`
	CosignedSize int64  `json:"cosigned_size"`
}

// Entry is one journal entry as stored: its canonical body (the bytes
// the chain and the tree vouch for) and, when it still has one, its
// payload and salt. Exactly the fields of a bundle's entries and
// payloads.
type Entry struct {
	Seq     int64  `json:"seq"`
	Body    []byte `json:"body"`
	Salt    []byte `json:"salt,omitempty"`
	Payload []byte `json:"payload,omitempty"`
}

// Batch is the next entries of a host's journal, contiguous with the
// hub's head (From is Head.Size+1), and the host's signed checkpoint of
// the tree they end (its size is From+len(Entries)-1).
type Batch struct {
	From    int64   `json:"from"`
	Entries []Entry `json:"entries"`
	// Checkpoint is the signed note, byte for byte.
	Checkpoint []byte `json:"checkpoint"`
}

// BatchResponse answers an accepted batch with the hub's cosignature of
// the checkpoint: the checkpoint note with the hub's cosignature line
// added (C2SP tlog-cosignature), which the host journals.
type BatchResponse struct {
	Head     Head   `json:"head"`
	Cosigned []byte `json:"cosigned"`
}

// Refusal is the body of every error answer: Code says which rule the
// request broke, Head what the hub holds (so a shipper can resume).
type Refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Head    *Head  `json:"head,omitempty"`
}

// Refusal codes.
const (
	// CodeNotContiguous: the batch does not start at Head.Size+1 (a
	// replay of an old range, or a gap).
	CodeNotContiguous = "not_contiguous"
	// CodeBadCheckpoint: the checkpoint is not signed by the host's
	// enrolled key, or is not for its journal.
	CodeBadCheckpoint = "bad_checkpoint"
	// CodeRootMismatch: the root recomputed from the hub's tree and the
	// batch is not the checkpoint's (a forked or altered tree). The hub
	// keeps the batch as evidence.
	CodeRootMismatch = "root_mismatch"
	// CodeBadEntry: an entry's body does not parse, has the wrong seq, or
	// breaks the chain.
	CodeBadEntry = "bad_entry"
	// CodeUnauthorized: no valid client certificate or join token.
	CodeUnauthorized = "unauthorized"
	// CodeTooLarge: the batch exceeds the hub's limits.
	CodeTooLarge = "too_large"
	// CodeBadRequest: the request is not what the endpoint takes (not
	// JSON, a field missing or malformed).
	CodeBadRequest = "bad_request"
	// CodeNotFound: there is nothing to serve yet (no fleet checkpoint).
	CodeNotFound = "not_found"
	// CodeUnavailable: the hub could not do it now (its database is
	// down); nothing was kept, and the request may be retried.
	CodeUnavailable = "unavailable"
)

// Query parameters of PathSessions. Times are RFC 3339.
const (
	QueryHost   = "host"
	QuerySince  = "since"
	QueryUntil  = "until"
	QueryUser   = "user"
	QueryTarget = "target"
	QueryLimit  = "limit"
)

// Session is one session.open entry a search found, on any host.
type Session struct {
	HostID   string `json:"host_id"`
	HostName string `json:"host_name"`
	Seq      int64  `json:"seq"`
	// TimeNS is the open time (Unix nanoseconds); Session the session id.
	TimeNS  int64  `json:"time_ns"`
	Session string `json:"session"`
	// Data is the entry's data (model.SessionOpen); Body the entry's body,
	// which the host's checkpoints vouch for.
	Data json.RawMessage `json:"data"`
	Body []byte          `json:"body"`
}

// Sessions answers a search, newest first.
type Sessions struct {
	Sessions []Session `json:"sessions"`
}

// Query parameters of PathStatements besides QueryHost, QueryUser,
// QueryTarget, QuerySince, QueryUntil and QueryLimit (the session's user
// and target).
const (
	QuerySession = "session"
	// QueryKind is an entry kind (pg.statement, ssh.request) or an
	// operation's kind (select, drop_table, exec, ...).
	QueryKind  = "kind"
	QueryTable = "table"
	// QueryAction is the decision's action: allow, deny, review or mask.
	QueryAction = "action"
	// QueryText is a substring of the SQL or command, any case.
	QueryText = "text"
)

// Statement is one operation a statement search found, on any host.
type Statement struct {
	HostID   string `json:"host_id"`
	HostName string `json:"host_name"`
	Seq      int64  `json:"seq"`
	// TimeNS is the entry's time (Unix nanoseconds).
	TimeNS  int64  `json:"time_ns"`
	Session string `json:"session"`
	// Target and User are the session's (User the process's user, or the
	// human's login user when there is one), "" when the hub holds no
	// session.open of it.
	Target string `json:"target,omitempty"`
	User   string `json:"user,omitempty"`
	// Kind is the entry's kind; Kinds the statement kinds or the ssh
	// request's type; Tables the relations a statement names.
	Kind   string   `json:"kind"`
	Kinds  []string `json:"kinds"`
	Tables []string `json:"tables,omitempty"`
	// Text is the SQL as journaled (password literals redacted) or the
	// command.
	Text     string         `json:"text"`
	Decision model.Decision `json:"decision"`
	// Data is the entry's data; Body the entry's body, which the host's
	// checkpoints vouch for.
	Data json.RawMessage `json:"data"`
	Body []byte          `json:"body"`
}

// Statements answers a statement search, newest first.
type Statements struct {
	Statements []Statement `json:"statements"`
}
