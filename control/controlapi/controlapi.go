// Package controlapi is the wire vocabulary of interlock's local API: the
// JSON bodies that cross the control socket and the approvals socket. The
// client (package control) and the server (control/server) both speak
// it, so the client links nothing of the server's: no engine, kernel side
// or journal storage. It imports only the standard library and model.
//
// The JSON names are a contract: scripts read them, and a daemon and an
// `interlock run` of different builds talk through them
// (testdata/wire.golden pins them).
//
// The control socket (root only):
//
//	GET  /v1/status           → Status
//	POST /v1/runs             RunRequest → RunInfo (201)
//	POST /v1/runs/{id}/end    model.RunEnd → Tally
//
// The approvals socket (any local user; the kernel says who):
//
//	GET  /v1/approvals[?wait=DURATION] → []Pending
//	POST /v1/approvals/{id}   DecideRequest → model.ApprovalDecision
//
// A refusal is a non-2xx status with a plain-text message.
package controlapi

import (
	"net/netip"
	"time"

	"github.com/interlock/interlock/model"
)

// Status is what GET /v1/status returns.
type Status struct {
	Version  string                      `json:"version"`
	PID      int                         `json:"pid"`
	Config   string                      `json:"config"`
	Journal  string                      `json:"journal"`
	Targets  map[string][]netip.AddrPort `json:"targets"`
	Cgroups  []string                    `json:"cgroups"`
	Runs     []RunInfo                   `json:"runs"`
	Hooks    HookStats                   `json:"hooks"`
	Live     []LiveSession               `json:"live"`
	Total    Tally                       `json:"total"`
	Listener []string                    `json:"listeners"`
}

// HookStats are the connect hooks' counters, summed over CPUs. The server
// converts the redirector's counters to it by a struct conversion, so a
// counter added there and not here fails the build.
type HookStats struct {
	Redirected        uint64 `json:"redirected"`
	RefusedNoListener uint64 `json:"refused_no_listener"`
	PassedFailOpen    uint64 `json:"passed_fail_open"`
	RefusedOtherNetns uint64 `json:"refused_other_netns"`
	Rekeyed           uint64 `json:"rekeyed"`
	PendingMapFull    uint64 `json:"pending_map_full"`
	OriginsMapFull    uint64 `json:"origins_map_full"`
	// RefusedNotTCP counts UDP (and other non-TCP) connects and
	// datagrams to a target's address, refused.
	RefusedNotTCP uint64 `json:"refused_not_tcp"`
	// RefusedForeignSocket counts connects to a target by a task in an
	// intercepted cgroup on a socket made outside it, refused.
	RefusedForeignSocket uint64 `json:"refused_foreign_socket"`
	// RefusedUnplacedCgroup counts connects to a target from a cgroup
	// that appeared where a configured one may, before interlock placed
	// it, refused.
	RefusedUnplacedCgroup uint64 `json:"refused_unplaced_cgroup"`
	// StaleRecords counts connect records dropped because the connection
	// that reached the listener was not the one that made them.
	StaleRecords uint64 `json:"stale_records"`
	// NetnsAsked counts connects from a network namespace interlock did
	// not serve yet (refused), reported to the daemon to serve it.
	NetnsAsked uint64 `json:"netns_asked"`
}

// LiveSession is an open session.
type LiveSession struct {
	ID      string         `json:"id"`
	Target  string         `json:"target"`
	OrigDst netip.AddrPort `json:"orig_dst"`
	PID     uint32         `json:"pid"`
	UID     uint32         `json:"uid"`
	Exe     string         `json:"exe,omitempty"`
	Cgroup  string         `json:"cgroup,omitempty"`
	Started time.Time      `json:"started"`
}

// Tally counts sessions and bytes, in total and per target. It is model's
// type because the engine keeps its tallies in it and the journal's
// run.end carries the same counts.
type Tally = model.Tally

// RunInfo describes one cgroup the daemon intercepts for an
// `interlock run`.
type RunInfo struct {
	ID       string    `json:"id"`
	Cgroup   string    `json:"cgroup"`
	OwnerPID int32     `json:"owner_pid"`
	Started  time.Time `json:"started"`
	Journal  string    `json:"journal"`
}

// RunRequest is the body of POST /v1/runs.
type RunRequest struct {
	// Cgroup is the path, relative to the cgroup2 root, of the cgroup the
	// caller created for its command.
	Cgroup string `json:"cgroup"`
	// Argv is the command, its secrets' values already replaced by the
	// client (so that they never leave it); ArgvRedacted counts them.
	// The server redacts again: a client may not have.
	Argv         []string `json:"argv"`
	ArgvRedacted int      `json:"argv_redacted,omitempty"`
}

// Pending is a held operation as the approvals socket lists it. The
// server converts the broker's list to it by a struct conversion, so the
// two cannot drift apart unnoticed.
type Pending struct {
	Request  model.ApprovalRequest `json:"request"`
	Created  time.Time             `json:"created"`
	Deadline time.Time             `json:"deadline"`
	// Approvals so far, and whether the caller may decide.
	Approvals int  `json:"approvals"`
	MayDecide bool `json:"may_decide"`
}

// DecideRequest is the body of POST /v1/approvals/{id}.
type DecideRequest struct {
	Approve bool   `json:"approve"`
	Reason  string `json:"reason"`
	// Expect, when set, is the SHA-256 (hex) of the operation text the
	// approver read; the approval is refused (409) if the held text's
	// differs.
	Expect string `json:"expect,omitempty"`
}
