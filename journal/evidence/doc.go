// Package evidence is the journal's evidence format, apart from its
// storage: what an entry's bytes are (the canonical body, its chain hash
// and payload commitment), the RFC 6962 tree over the entries, signed
// checkpoints, and the evidence bundle an auditor verifies offline.
//
// It is what a third party needs to check interlock's evidence, and it
// imports neither database/sql nor SQLite nor anything that needs cgo
// (TestEvidenceNeedsNoCgo holds it to that), so that
//
//	CGO_ENABLED=0 go build ./cmd/interlock-verify
//
// builds a bundle verifier anywhere. Package journal stores entries in
// SQLite in this format; journal/export writes bundles in it.
package evidence
