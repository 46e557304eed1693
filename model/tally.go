package model

// Tally counts sessions and bytes: what a run or the engine served. The
// control API sends it to `interlock run` and `interlock status`.
type Tally struct {
	Sessions  int            `json:"sessions"`
	Refused   int            `json:"refused"`
	Anomalies int            `json:"anomalies"`
	BytesUp   int64          `json:"bytes_up"`
	BytesDown int64          `json:"bytes_down"`
	ByTarget  map[string]int `json:"by_target,omitempty"`
	// FirstSeq and LastSeq bound the journal entries this tally covers.
	FirstSeq uint64 `json:"first_seq,omitempty"`
	LastSeq  uint64 `json:"last_seq,omitempty"`
}
