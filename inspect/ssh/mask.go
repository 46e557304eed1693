package ssh

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/model"
)

// Masking a channel's output.
//
// A decision's mask rules with content detectors apply to what a shell or
// exec sends back (stdout and stderr): always to the recorded copy, and to
// what the client sees when the rule says live. Output arrives in reads of
// any size, so a secret can be split across two of them. Each output stream
// therefore keeps a carry-over window (see carry): the tail of what arrived
// that could still be the start of a secret is held back and scanned again
// with the next read. Held bytes are released when the next read moves the
// window on, when the stream ends, or releaseAfter after they arrived,
// whichever comes first, so a prompt never waits longer than that. Without
// live rules the client gets each read at once and only the recorded copy
// waits; the recorded copy is masked either way.
//
// What masking did is journaled as ssh.mask entries (rule, detector,
// count, and the keyed hashes of the originals as payload): when the
// channel's output ends, and earlier whenever one rule and detector has
// maskHashesPerRecord hashes, so that no entry outgrows the journal's
// payload limit.
const (
	// releaseAfter bounds how long output is held back: a prompt or a
	// keystroke's echo reaches the client (and the journal) at most this
	// late. Parts of one write that the target's pipe, pty or SSH packets
	// split arrive microseconds apart; a human does not notice 50 ms.
	releaseAfter = 50 * time.Millisecond
	// lineWindow is the longest secret on one line that is found whatever
	// the reads it is split across: the trailing partial line is held back,
	// up to this many bytes. Emails (64+1+253 at most), cards, national
	// ids, cloud keys and tokens (github_pat_ and 255 characters at most)
	// fit with room; JWTs up to this length too.
	lineWindow = 4 << 10
	// keyWindow is the longest private key block (PEM, from its BEGIN
	// line) held back whole until its END line arrives. An RSA 8192-bit
	// key in PKCS#1 PEM is about 6.4 KiB. A longer block, or one whose END
	// line has not come when releaseAfter is up, is masked as it goes (see
	// carry.keySpans). Nothing is ever held longer than this.
	keyWindow = 16 << 10
	// contextLen is how much of what was released is kept to scan with
	// what comes next, so that detectors see what stood before the held
	// bytes (a keyword), and a secret released early (by the timer) is
	// masked from where it resumes.
	contextLen = 256
	// maskHashesPerRecord bounds the keyed hashes (16 bytes each) in one
	// ssh.mask entry: 1 MiB of payload, far below the journal's per-entry
	// limit (16 MiB) and its post queue (64 MiB).
	maskHashesPerRecord = 64 << 10
)

// liveMode says what the client sees.
type liveMode int

const (
	liveNone liveMode = iota // the original output, at once
	liveAll                  // the recorded copy: every detector is live
	liveSome                 // masked by the live rules' detectors only
)

// outputMask is the masking a shell's or exec's output gets. It is shared
// by the channel's output streams.
type outputMask struct {
	hash func([]byte) []byte
	// recNames are the detectors of every rule (the recorded copy),
	// liveNames those of the live rules; keys and liveKeys say whether
	// private_key is among them, recOther and liveOther are the others
	// (private keys are found apart: see carry.keySpans).
	recNames, liveNames []string
	recOther, liveOther []string
	keys, liveKeys      bool
	live                liveMode
	// ruleOf names the rule each detector is journaled under: the first
	// that names it.
	ruleOf map[string]string
	// delay and perRecord are releaseAfter and maskHashesPerRecord
	// (tests shorten them).
	delay     time.Duration
	perRecord int
	// sameLength masks a secret with as many bytes as it had (fill), for
	// output whose framing counts bytes: scp's source side.
	sameLength bool

	mu    sync.Mutex
	stats []*model.MaskDecision // Hashes accumulate; first-seen order
	// post journals one ssh.mask entry; nil drops them (tests).
	post func(model.MaskDecision)
	// detect runs detectors (the masker's).
	detect func(names []string, v []byte) []model.Finding
}

// newOutputMask plans the masking a decision asks for; nil when none.
func newOutputMask(m inspect.Masker, spec *model.MaskSpec) (*outputMask, error) {
	if spec == nil {
		return nil, nil
	}
	om := &outputMask{ruleOf: map[string]string{}, delay: releaseAfter, perRecord: maskHashesPerRecord}
	var first string
	for _, r := range spec.Rules {
		if len(r.Detectors) == 0 {
			continue // column rules are for result sets
		}
		if first == "" {
			first = r.Rule
		}
		for _, d := range r.Detectors {
			if _, ok := om.ruleOf[d]; !ok {
				om.ruleOf[d] = r.Rule
				om.recNames = append(om.recNames, d)
			}
			if r.Live && !slices.Contains(om.liveNames, d) {
				om.liveNames = append(om.liveNames, d)
			}
		}
	}
	if first == "" {
		return nil, nil
	}
	if m == nil {
		return nil, fmt.Errorf("output masking is required (rule %s) and no masker is configured", first)
	}
	om.hash = m.Hash
	om.detect = m.Detect
	om.keys = slices.Contains(om.recNames, "private_key")
	om.liveKeys = slices.Contains(om.liveNames, "private_key")
	isKey := func(d string) bool { return d == "private_key" }
	om.recOther = slices.DeleteFunc(slices.Clone(om.recNames), isKey)
	om.liveOther = slices.DeleteFunc(slices.Clone(om.liveNames), isKey)
	switch {
	case len(om.liveNames) == 0:
		om.live = liveNone
	case len(om.liveNames) == len(om.recNames):
		om.live = liveAll
	default:
		om.live = liveSome
	}
	return om, nil
}

// note counts one masked original under its detector's rule.
func (om *outputMask) note(det string, original []byte) {
	h := om.hash(original)
	om.mu.Lock()
	defer om.mu.Unlock()
	var st *model.MaskDecision
	for _, s := range om.stats {
		if s.Detector == det {
			st = s
			break
		}
	}
	if st == nil {
		st = &model.MaskDecision{Rule: om.ruleOf[det], Detector: det}
		om.stats = append(om.stats, st)
	}
	st.Count++
	st.Hashes = append(st.Hashes, h...)
	if st.Count >= om.perRecord {
		om.flushStat(st)
	}
}

// flushStat journals what st holds and empties it.
func (om *outputMask) flushStat(st *model.MaskDecision) {
	if st.Count == 0 {
		return
	}
	if om.post != nil {
		om.post(*st)
	}
	st.Count, st.Hashes = 0, nil
}

// finish journals what masking did and has not been journaled yet. Several
// ssh.mask entries of one rule and detector add up.
func (om *outputMask) finish() {
	if om == nil {
		return
	}
	om.mu.Lock()
	defer om.mu.Unlock()
	for _, st := range om.stats {
		om.flushStat(st)
	}
}

// postMask journals one ssh.mask entry of a channel.
func (c *conn) postMask(channel uint32, d model.MaskDecision) {
	d.Column = fmt.Sprintf("channel %d output", channel)
	rec := model.Record{Kind: model.KindSSHMask, Session: c.s.ID, Time: time.Now(), Data: d}
	if len(d.Hashes) > 0 {
		rec.Payload = d.Hashes
	}
	c.h.journal.Post(rec)
}

// maskedOutput relays one output stream (stdout or stderr) of a masked
// channel: send writes to the client, record journals the recorded copy.
type maskedOutput struct {
	om     *outputMask
	send   func([]byte) error
	record func([]byte)
	// guard is deferred by the timer's goroutine (it recovers a panic).
	guard func()

	mu    sync.Mutex
	c     carry
	timer *time.Timer // releases the held bytes; nil when none are held
	gen   uint64      // tells a stale timer from the current one
	done  bool
	err   error // the client's side failed: nothing more is sent
}

func (om *outputMask) stream(send func([]byte) error, record func([]byte), guard func()) *maskedOutput {
	return &maskedOutput{om: om, send: send, record: record, guard: guard, c: carry{om: om}}
}

// write takes the next read of the stream. An error says the client's side
// is gone.
func (mo *maskedOutput) write(p []byte) error {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.done {
		return mo.err
	}
	rec, live, fresh := mo.c.next(p, releaseMore)
	if mo.om.live == liveNone {
		live = p
	}
	mo.emit(rec, live)
	mo.schedule(fresh)
	return mo.err
}

// close releases what is held: the stream ended.
func (mo *maskedOutput) close() {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.done {
		return
	}
	mo.done = true
	mo.stopTimer()
	rec, live, _ := mo.c.next(nil, releaseFinal)
	if mo.om.live == liveNone {
		live = nil
	}
	mo.emit(rec, live)
	mo.c = carry{om: mo.om}
}

func (mo *maskedOutput) emit(rec, live []byte) {
	if len(rec) > 0 {
		mo.record(rec)
	}
	if len(live) > 0 && mo.err == nil {
		mo.err = mo.send(live)
	}
}

// schedule keeps the timer running while bytes are held: it is set when the
// oldest held byte arrived (fresh), and left alone while older bytes are
// still held, so that no byte waits longer than delay.
func (mo *maskedOutput) schedule(fresh bool) {
	if len(mo.c.held) == 0 {
		mo.stopTimer()
		return
	}
	if !fresh && mo.timer != nil {
		return
	}
	mo.stopTimer()
	g := mo.gen
	mo.timer = time.AfterFunc(mo.om.delay, func() { mo.fire(g) })
}

func (mo *maskedOutput) stopTimer() {
	if mo.timer != nil {
		mo.timer.Stop()
		mo.timer = nil
	}
	mo.gen++
}

// fire releases the held bytes when nothing moved them on in time.
func (mo *maskedOutput) fire(gen uint64) {
	if mo.guard != nil {
		defer mo.guard()
	}
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.done || gen != mo.gen {
		return
	}
	mo.timer = nil
	mo.gen++
	rec, live, _ := mo.c.next(nil, releaseTimeout)
	if mo.om.live == liveNone {
		live = nil
	}
	mo.emit(rec, live)
}
