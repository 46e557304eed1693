package ssh

import (
	"fmt"
	"sync"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// outputMask applies a decision's mask rules to what a shell or exec sends
// back: content detectors redact findings in the recorded copy, and in the
// live output too for rules marked live. Each chunk is scanned on its own,
// so a secret split across two reads is not found.
type outputMask struct {
	mu       sync.Mutex
	recorded inspect.RowMasker
	live     inspect.RowMasker
	// allLive: every rule is live, so the live output is the recorded
	// copy and one scan serves both.
	allLive bool
}

// textColumn is how a channel's output looks to the masker: one text
// value per chunk (OID 25 is text).
var textColumn = []model.MaskColumn{{Name: "output", TypeOID: 25}}

// newOutputMask plans the masking a decision asks for; nil when none.
func newOutputMask(m inspect.Masker, spec *model.MaskSpec) (*outputMask, error) {
	if spec == nil {
		return nil, nil
	}
	var detect, live model.MaskSpec
	for _, r := range spec.Rules {
		if len(r.Detectors) == 0 {
			continue // column rules are for result sets
		}
		detect.Rules = append(detect.Rules, r)
		if r.Live {
			live.Rules = append(live.Rules, r)
		}
	}
	if len(detect.Rules) == 0 {
		return nil, nil
	}
	if m == nil {
		return nil, fmt.Errorf("output masking is required (rule %s) and no masker is configured", detect.Rules[0].Rule)
	}
	om := &outputMask{recorded: m.Plan(&detect, textColumn), allLive: len(live.Rules) == len(detect.Rules)}
	if len(live.Rules) > 0 && !om.allLive {
		om.live = m.Plan(&live, textColumn)
	}
	return om, nil
}

// apply returns what the client gets and what is recorded for a chunk.
func (om *outputMask) apply(p []byte) (live, recorded []byte, err error) {
	om.mu.Lock()
	defer om.mu.Unlock()
	live, recorded = p, p
	if om.recorded != nil {
		v := [][]byte{p}
		if err := om.recorded.Mask(v); err != nil {
			return nil, nil, err
		}
		recorded = v[0]
	}
	switch {
	case om.allLive:
		live = recorded
	case om.live != nil:
		v := [][]byte{p}
		if err := om.live.Mask(v); err != nil {
			return nil, nil, err
		}
		live = v[0]
	}
	return live, recorded, nil
}

// journal writes what masking did to the recorded copy, with the keyed
// hashes of the originals as payloads.
func (om *outputMask) journal(c *conn, channel uint32) {
	if om == nil || om.recorded == nil {
		return
	}
	om.mu.Lock()
	decisions := om.recorded.Decisions()
	om.mu.Unlock()
	for _, d := range decisions {
		d.Column = fmt.Sprintf("channel %d output", channel)
		rec := model.Record{Kind: model.KindSSHMask, Session: c.s.ID, Data: d}
		if len(d.Hashes) > 0 {
			rec.Payload = d.Hashes
		}
		c.h.journal.Post(rec)
	}
}
