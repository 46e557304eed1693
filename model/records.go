package model

import (
	"encoding/base64"
	"net/netip"
	"unicode/utf8"
)

// The records below are what protocol handlers journal inside a session,
// and what the journal's exporters (statements.csv, asciicast, OCSF) read
// back. Field names are part of the evidence format: add fields, never
// rename or repurpose them. Times are integer nanoseconds.

// Entry kinds written inside sessions.
const (
	// KindGap marks records lost because a bounded queue overflowed.
	KindGap = "journal.gap"

	KindPGStatement = "pg.statement"
	KindPGResult    = "pg.result" // how a pg.statement ended
	KindPGCancel    = "pg.cancel" // a CancelRequest, matched or not
	KindPGMask      = "pg.mask"   // what masking did to a statement's result

	KindSSHChannel = "ssh.channel" // a channel opened or refused
	KindSSHRequest = "ssh.request" // pty-req, env, shell, exec, subsystem, signal, forwarding, ...
	KindSSHExit    = "ssh.exit"    // exit-status or exit-signal of a channel
	KindSSHIO      = "ssh.io"      // a chunk of channel data
	KindSSHResize  = "ssh.resize"  // window-change
	KindSSHSFTP    = "ssh.sftp"    // one sftp operation
	KindSSHMask    = "ssh.mask"    // what masking did to a channel's output (data: MaskDecision)
)

// Gap is the data of a journal.gap entry.
type Gap struct {
	// Lost counts the records that could not be queued.
	Lost uint64 `json:"lost"`
	// Kinds counts the lost records by kind.
	Kinds map[string]uint64 `json:"kinds,omitempty"`
	// Sessions counts them by session (up to 256 sessions), so a replay
	// can show where output is missing.
	Sessions map[string]uint64 `json:"sessions,omitempty"`
}

// PGStartup is what a PostgreSQL client asked for when it connected;
// SessionOpen.Postgres carries it. Passwords never appear.
type PGStartup struct {
	User        string            `json:"user"`
	Database    string            `json:"database"`
	Application string            `json:"application_name,omitempty"`
	Params      map[string]string `json:"params,omitempty"`
	// ProtocolVersion is "3.0" or "3.2".
	ProtocolVersion string `json:"protocol_version"`
	// ClientTLS says whether the client leg was TLS; UpstreamTLS the
	// server leg.
	ClientTLS   bool `json:"client_tls"`
	UpstreamTLS bool `json:"upstream_tls"`
	// UpstreamPID is the server backend's process id.
	UpstreamPID uint32 `json:"upstream_pid,omitempty"`
	// ServerVersion is the server's server_version.
	ServerVersion string `json:"server_version,omitempty"`
}

// PGParam is one bound parameter of an extended-protocol statement.
type PGParam struct {
	// Type is the parameter's type name (int4, text, ...) or its OID when
	// unknown.
	Type string `json:"type,omitempty"`
	// Value is the decoded value, masked where policy says so; nil is SQL
	// NULL.
	Value *string `json:"value"`
	// Format is "text" or "binary", as sent.
	Format string `json:"format"`
}

// PGStatement is the data of a pg.statement entry: one statement the
// client ran, with what came back.
type PGStatement struct {
	// SQL is the statement's text exactly as the client sent it, with
	// password literals replaced by '[redacted]' (their keyed hashes are
	// the entry's payload). Text that is not valid UTF-8 is also kept
	// whole in SQLBase64.
	SQL       string `json:"sql"`
	SQLBase64 string `json:"sql_b64,omitempty"`
	// Prepared is the text of the SQL PREPARE an EXECUTE runs, redacted
	// and scrubbed as SQL is.
	Prepared string `json:"prepared_sql,omitempty"`
	// Redacted counts the password literals and detected values replaced
	// in SQL, Prepared and the parameters' values (their keyed hashes are
	// the payload).
	Redacted int `json:"redacted,omitempty"`
	// Wrapped says interlock ran the statement inside a transaction it
	// held, to read its effects before the COMMIT (see pg.effects).
	Wrapped bool `json:"wrapped,omitempty"`
	// Protocol is "simple" or "extended".
	Protocol string `json:"protocol"`
	// StatementName and Portal are the extended protocol's names ("" for
	// the unnamed ones).
	StatementName string    `json:"statement_name,omitempty"`
	Portal        string    `json:"portal,omitempty"`
	Params        []PGParam `json:"params,omitempty"`
	// Kinds are the statement kinds the parser found (select, insert,
	// drop_database, ...); Tables the relations it names.
	Kinds  []string `json:"kinds"`
	Tables []string `json:"tables,omitempty"`
	// ReadOnly is true when the parser proved the statement reads only.
	ReadOnly bool     `json:"read_only"`
	Decision Decision `json:"decision"`
	// Tag is the CommandComplete tag; Rows the rows returned or affected.
	Tag  string `json:"tag,omitempty"`
	Rows int64  `json:"rows"`
	// SQLState and Error are set when the statement failed.
	SQLState string `json:"sqlstate,omitempty"`
	Error    string `json:"error,omitempty"`
	StartNS  int64  `json:"start_ns"`
	// DurationNS runs from forwarding to CommandComplete (or the error).
	DurationNS int64 `json:"duration_ns"`
	// Columns names the result columns, when there were any.
	Columns []string `json:"columns,omitempty"`
	// RowsRecorded counts the rows in the entry's payload (record_results:
	// rows); Truncated says more rows came than were recorded.
	RowsRecorded int  `json:"rows_recorded,omitempty"`
	Truncated    bool `json:"truncated,omitempty"`
}

// PGResult is the data of a pg.result entry: how the statement of an
// earlier pg.statement entry ended. The pg.statement entry is committed
// before the statement reaches the server; this one follows when the
// server has answered, so the two together are the statement's record.
type PGResult struct {
	// Statement is the sequence number of the pg.statement entry.
	Statement uint64 `json:"statement"`
	// NotRun is set when the statement never ran: an earlier statement of
	// the same query or pipeline failed, or the session ended first.
	NotRun bool `json:"not_run,omitempty"`
	// Tag is the CommandComplete tag; Rows the rows returned or affected.
	Tag  string `json:"tag,omitempty"`
	Rows int64  `json:"rows"`
	// SQLState and Error are set when the statement failed.
	SQLState string `json:"sqlstate,omitempty"`
	Error    string `json:"error,omitempty"`
	// DurationNS runs from forwarding to CommandComplete (or the error).
	DurationNS int64 `json:"duration_ns"`
	// Columns names the result columns (record_results summary or rows).
	Columns []string `json:"columns,omitempty"`
	// RowsRecorded counts the rows in the entry's payload (record_results:
	// rows); Truncated says more rows (or longer values) came than were
	// recorded.
	RowsRecorded int  `json:"rows_recorded,omitempty"`
	Truncated    bool `json:"truncated,omitempty"`
}

// PGCancel is the data of a pg.cancel entry: a CancelRequest that arrived
// on its own intercepted connection, and who sent it.
type PGCancel struct {
	Target   Target         `json:"target"`
	Client   netip.AddrPort `json:"client"`
	Identity Identity       `json:"identity"`
	// Session is the session whose running statement the key names; empty
	// when the key matched no session of this target and client.
	Session string `json:"session,omitempty"`
	// Forwarded says the cancel was passed to the server.
	Forwarded bool   `json:"forwarded"`
	Error     string `json:"error,omitempty"`
}

// SSHStartup is what an SSH client presented; SessionOpen.SSH carries it.
type SSHStartup struct {
	// User is the user name the client asked for.
	User          string `json:"user"`
	ClientVersion string `json:"client_version"`
	// AuthMethod and KeyFingerprint are what the client offered
	// (publickey, password, keyboard-interactive); they are recorded, not
	// trusted: the kernel identity is the authentication.
	AuthMethod     string `json:"auth_method"`
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	// UpstreamHostKey is the SHA256 fingerprint of the key the target
	// presented and interlock verified.
	UpstreamHostKey string `json:"upstream_host_key"`
	// UpstreamCert is the user certificate interlock logged in with, for
	// a target with credentials.certificate.
	UpstreamCert *SSHLoginCert `json:"upstream_cert,omitempty"`
}

// SSHLoginCert is the user certificate interlock signed for one login to
// an ssh target: what the target's sshd logs ("Accepted certificate ID
// <KeyID> (serial <Serial>)") ties the login to this record.
type SSHLoginCert struct {
	// Serial is the certificate's serial number, in decimal as sshd logs it.
	Serial     string   `json:"serial"`
	KeyID      string   `json:"key_id"`
	Principals []string `json:"principals"`
	// ValidAfterNS and ValidBeforeNS bound its validity (Unix time, ns).
	ValidAfterNS  int64    `json:"valid_after_ns"`
	ValidBeforeNS int64    `json:"valid_before_ns"`
	Extensions    []string `json:"extensions"`
	// Fingerprint is the SHA256 fingerprint of the ephemeral key it
	// certifies.
	Fingerprint string `json:"fingerprint"`
}

// SSHChannel is the data of an ssh.channel entry.
type SSHChannel struct {
	Channel uint32 `json:"channel"`
	// Type is session, direct-tcpip, forwarded-tcpip, x11,
	// auth-agent@openssh.com, ...
	Type string `json:"type"`
	// Detail holds the destination of a forwarding channel.
	Detail   string   `json:"detail,omitempty"`
	Decision Decision `json:"decision"`
	// OffsetNS is the time since the session started (monotonic), as
	// the channel's requests and data have it.
	OffsetNS int64 `json:"offset_ns"`
}

// SSHRequest is the data of an ssh.request entry.
type SSHRequest struct {
	// Channel is the channel the request is on; Global marks a
	// connection-level request (tcpip-forward, keepalive, ...).
	Channel uint32 `json:"channel"`
	Global  bool   `json:"global,omitempty"`
	Type    string `json:"type"`
	// Command is the exec command line or the subsystem name. A command
	// that is not valid UTF-8 (JSON would replace those bytes with
	// U+FFFD) is also kept whole in CommandBase64.
	// The journaled Command and Env have the values of secrets in them
	// replaced (identity/argvredact: mysql -pX, PASSWORD=x, a URL's
	// password); Redacted counts them. Policy and approvals judge the
	// command as sent.
	Command       string `json:"command,omitempty"`
	CommandBase64 string `json:"command_b64,omitempty"`
	Redacted      int    `json:"redacted,omitempty"`
	// Term, Cols and Rows describe a pty-req.
	Term string `json:"term,omitempty"`
	Cols uint32 `json:"cols,omitempty"`
	Rows uint32 `json:"rows,omitempty"`
	// Env holds an env request's name=value (and EnvBase64 its exact
	// bytes, when they are not valid UTF-8).
	Env       string   `json:"env,omitempty"`
	EnvBase64 string   `json:"env_b64,omitempty"`
	Signal    string   `json:"signal,omitempty"`
	Decision  Decision `json:"decision"`
	// OffsetNS is the time since the session started (monotonic).
	OffsetNS int64 `json:"offset_ns"`
}

// SSHExit is the data of an ssh.exit entry.
type SSHExit struct {
	Channel    uint32 `json:"channel"`
	ExitStatus *int   `json:"exit_status,omitempty"`
	ExitSignal string `json:"exit_signal,omitempty"`
	OffsetNS   int64  `json:"offset_ns"`
}

// SSHIO is the data of an ssh.io entry; the bytes themselves are the
// entry's payload (kept apart so they can be deleted on retention without
// breaking verification).
type SSHIO struct {
	Channel uint32 `json:"channel"`
	// Stream is "i" (client to target), "o" (stdout) or "e" (stderr).
	Stream string `json:"stream"`
	// OffsetNS is the time since the session started (monotonic), enough
	// to rebuild an asciicast v2 file.
	OffsetNS int64 `json:"offset_ns"`
	Bytes    int   `json:"bytes"`
}

// SSHResize is the data of an ssh.resize entry.
type SSHResize struct {
	Channel  uint32 `json:"channel"`
	Cols     uint32 `json:"cols"`
	Rows     uint32 `json:"rows"`
	OffsetNS int64  `json:"offset_ns"`
}

// SSHSFTP is the data of an ssh.sftp entry.
type SSHSFTP struct {
	Channel uint32 `json:"channel"`
	// Op is open, close, remove, rename, mkdir, rmdir, setstat, ...
	Op     string `json:"op"`
	Path   string `json:"path"`
	Target string `json:"target,omitempty"` // rename's new path
	// PathBase64 and TargetBase64 keep Path and Target whole when they
	// are not valid UTF-8.
	PathBase64   string `json:"path_b64,omitempty"`
	TargetBase64 string `json:"target_b64,omitempty"`
	// SentPath and SentTarget are Path and Target as the client sent
	// them, when the target resolves them to another name (relative to
	// the login directory, ".", "..", "//").
	SentPath   string `json:"sent_path,omitempty"`
	SentTarget string `json:"sent_target,omitempty"`
	// RealPath and RealTarget are where the target's REALPATH says Path
	// and Target lead, symbolic links followed, when that is elsewhere.
	RealPath   string `json:"real_path,omitempty"`
	RealTarget string `json:"real_target,omitempty"`
	// Flags are open's flags (read, write, create, truncate, append).
	Flags []string `json:"flags,omitempty"`
	// BytesRead and BytesWritten are totals for a handle, at its close.
	BytesRead    int64    `json:"bytes_read,omitempty"`
	BytesWritten int64    `json:"bytes_written,omitempty"`
	Status       string   `json:"status"`
	Decision     Decision `json:"decision"`
	OffsetNS     int64    `json:"offset_ns"`
}

// PGMask is the data of a pg.mask entry: the masking one rule did to one
// column (or with one detector) of a statement's result. The keyed hashes
// of the originals are the entry's payload.
type PGMask struct {
	// Statement is the sequence number of the pg.statement entry.
	Statement uint64 `json:"statement"`
	Rule      string `json:"rule"`
	Column    string `json:"column"`
	Detector  string `json:"detector,omitempty"`
	Count     int    `json:"count"`
}

// KeepBytes fills CommandBase64 and EnvBase64 for text that JSON cannot
// carry exactly.
func (q *SSHRequest) KeepBytes() {
	q.CommandBase64, q.EnvBase64 = exactBase64(q.Command), exactBase64(q.Env)
}

// KeepBytes fills PathBase64 and TargetBase64 for paths that JSON cannot
// carry exactly.
func (o *SSHSFTP) KeepBytes() {
	o.PathBase64, o.TargetBase64 = exactBase64(o.Path), exactBase64(o.Target)
}

// ExactText returns b64's bytes when it is set, else s: the exact text of
// a field kept by KeepBytes.
func ExactText(s, b64 string) string {
	if b64 == "" {
		return s
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return s
	}
	return string(b)
}

// exactBase64 is s in base64 when s is not valid UTF-8, else "".
func exactBase64(s string) string {
	if utf8.ValidString(s) {
		return ""
	}
	return base64.StdEncoding.EncodeToString([]byte(s))
}
