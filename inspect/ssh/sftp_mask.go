package ssh

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/interlock/interlock/model"
)

// Masking sftp downloads.
//
// A file opened under a mask rule that applies to it (as policy decides for
// the open, its real path and the sftp subsystem itself) is refused when a
// rule says transfers: refuse; else, when a rule is live, the DATA replies
// to its reads pass through the rules' detectors before the client sees
// them (fileScanner). Replies are held while the bytes they end with may
// begin a secret the next reply completes, and released whole, each with
// its length, when the reply that continues the file arrives, at the end of
// the file (an EOF status where the file continues), when the handle
// closes, or transferHold after they arrived.
//
// The file is masked as one stream, so its bytes must arrive in order: a
// DATA reply that does not continue where the last one ended (random
// access, a read again, a read past a gap) is refused with a permission
// denied status, journaled, and never reaches the client; so is moving a
// masked file where its rules do not follow (rename, hard link, copy-data).
// The file's contents are never journaled (the sftp relay journals
// operations and byte counts); what masking did is, as ssh.mask entries.

// transferHold bounds how long a reply waits for the one that continues
// it. OpenSSH's sftp and scp keep many reads in flight, so the next reply
// is there well before; a client that reads one request at a time waits
// this long per reply, and at that pause the bytes that may begin a secret
// are masked (riskyTail).
const transferHold = 100 * time.Millisecond

// maskFollows says whether a rule makes a file's contents masked or
// refused in transfers.
func maskFollows(r model.MaskRule) bool {
	return r.Transfers == "refuse" || r.Live && len(r.Detectors) > 0
}

// mergeMasks joins mask specs, each rule once.
func mergeMasks(specs ...*model.MaskSpec) *model.MaskSpec {
	var out *model.MaskSpec
	for _, s := range specs {
		if s == nil {
			continue
		}
		for _, r := range s.Rules {
			if out == nil {
				out = &model.MaskSpec{}
			}
			if !slices.ContainsFunc(out.Rules, func(x model.MaskRule) bool { return x.Rule == r.Rule }) {
				out.Rules = append(out.Rules, r)
			}
		}
	}
	return out
}

// maskEscape refuses moving a file's contents from where a transfer rule
// applies to where it does not: a rename's or a link's new name, a
// copy-data's destination. masks are the decisions' masks of op.path,
// op.realPath, op.target and op.realTarget.
func maskEscape(op *sftpOp, masks [4]*model.MaskSpec) (model.Decision, bool) {
	var src, dst *model.MaskSpec
	switch op.op {
	case "rename":
		src, dst = mergeMasks(masks[0], masks[1]), mergeMasks(masks[2], masks[3])
	case "link":
		src, dst = mergeMasks(masks[2], masks[3]), mergeMasks(masks[0], masks[1])
	default:
		return model.Decision{}, false
	}
	if src == nil {
		return model.Decision{}, false
	}
	for _, r := range src.Rules {
		if !maskFollows(r) {
			continue
		}
		if dst == nil || !slices.ContainsFunc(dst.Rules, func(x model.MaskRule) bool { return x.Rule == r.Rule }) {
			return model.Decision{Action: model.Deny, Rule: r.Rule,
				Reason: "mask rule " + r.Rule + " applies to " + op.path + " and not to where the " + op.op + " puts it: its contents would leave the rule"}, true
		}
	}
	return model.Decision{}, false
}

// withMask is d with the mask rules m: a mask decision naming them when
// d had none (policy's own words for one).
func withMask(d model.Decision, m *model.MaskSpec) model.Decision {
	if m == nil || d.Mask != nil && len(d.Mask.Rules) == len(m.Rules) {
		return d
	}
	if d.Mask == nil && d.Action == model.Allow {
		by := "rule " + d.Rule
		if strings.HasPrefix(d.Rule, "policy.") {
			by = d.Rule
		}
		names := make([]string, len(m.Rules))
		for i, r := range m.Rules {
			names[i] = r.Rule
		}
		d = model.Decision{Action: model.Mask, Rule: strings.Join(names, ","), Reason: "allowed by " + by + ", results masked", Request: d.Request, Grant: d.Grant}
	}
	d.Mask = m
	return d
}

// planTransfer decides what an open gets under the mask rules that apply
// to it: false refuses it (op.decision says why); op.mask is set when its
// reads are masked.
func (r *sftpRelay) planTransfer(op *sftpOp) bool {
	spec := mergeMasks(r.s.transferSpec, op.decision.Mask)
	if spec == nil || !slices.Contains(op.flags, "read") {
		// An upload sends the client's bytes: input, which masking
		// does not touch (the target refuses reads of a handle not
		// opened for reading).
		return true
	}
	var live []model.MaskRule
	for _, rule := range spec.Rules {
		if rule.Transfers == "refuse" {
			op.decision = model.Decision{Action: model.Deny, Rule: rule.Rule,
				Reason: "mask rule " + rule.Rule + " refuses file transfers (transfers: refuse)"}
			return false
		}
		if rule.Live && len(rule.Detectors) > 0 {
			live = append(live, rule)
		}
	}
	if len(live) == 0 {
		// Nothing of the file is journaled, and the client sees it as
		// it is: a rule that is not live has nothing to mask here.
		return true
	}
	om, err := newOutputMask(r.s.c.h.masker, &model.MaskSpec{Rules: live})
	if err != nil {
		op.decision = model.Decision{Action: model.Deny, Rule: "masking", Reason: err.Error()}
		return false
	}
	om.ruleOf[boundaryDetector] = live[0].Rule
	op.mask = om
	// The open's record names every rule its reads are masked by, the
	// sftp server's own included.
	op.decision = withMask(op.decision, spec)
	return true
}

// fileMask masks the reads of one handle.
type fileMask struct {
	r    *sftpRelay
	path string
	om   *outputMask
	hold time.Duration

	mu sync.Mutex
	sc fileScanner
	// pos is the file offset the next DATA reply must start at; short
	// says the last one brought less than its read asked for.
	pos   int64
	short bool
	// queue holds the replies not sent yet; done bytes of queue[0]'s
	// data are masked already.
	queue []heldReply
	done  int
	timer *time.Timer
	gen   uint64
	ended bool
}

// heldReply is a DATA reply whose data is masked in place: pkt[at:at+n].
type heldReply struct {
	pkt   []byte
	at, n int
}

func (r *sftpRelay) newFileMask(path string, om *outputMask) *fileMask {
	fm := &fileMask{r: r, path: path, om: om, hold: transferHold, sc: fileScanner{om: om}}
	if d := r.s.c.h.maskRelease; d > 0 {
		fm.hold = d
	}
	om.post = func(d model.MaskDecision) { r.s.c.postTransferMask(r.s.id, path, d) }
	return fm
}

// postTransferMask journals one ssh.mask entry of a masked download.
func (c *conn) postTransferMask(channel uint32, path string, d model.MaskDecision) {
	d.Column = fmt.Sprintf("channel %d sftp %s", channel, path)
	rec := model.Record{Kind: model.KindSSHMask, Session: c.s.ID, Time: time.Now(), Data: d}
	if len(d.Hashes) > 0 {
		rec.Payload = d.Hashes
	}
	c.h.journal.Post(rec)
}

// data takes a DATA reply (pkt, whole) to a read of the handle; it is
// sent when masked, or refused. It returns false: the relay does not send
// the packet itself.
func (fm *fileMask) data(op *sftpOp, id uint32, pkt []byte, sendBefore func() error) bool {
	const at = 4 + 1 + 4 + 4 // length, type, id, data length
	n := int(binary.BigEndian.Uint32(pkt[9:13]))
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.ended || op.off != fm.pos {
		// Out of order, or after the handle's masking ended (the
		// session is ending): refused, never sent unmasked.
		fm.refuse(op, id, sendBefore)
		return false
	}
	fm.pos += int64(n)
	fm.short = int64(n) < op.n
	fm.queue = append(fm.queue, heldReply{pkt: slices.Clone(pkt), at: at, n: n})
	fm.place(fm.sc.next(pkt[at:at+n], releaseMore), sendBefore)
	fm.schedule()
	return false
}

// refuse answers a read that does not continue the file with permission
// denied: masked, its bytes could complete a secret whose rest the client
// got masked.
func (fm *fileMask) refuse(op *sftpOp, id uint32, sendBefore func() error) {
	r := fm.r
	rules := make([]string, 0, len(fm.om.ruleOf))
	for _, d := range fm.om.recNames {
		if !slices.Contains(rules, fm.om.ruleOf[d]) {
			rules = append(rules, fm.om.ruleOf[d])
		}
	}
	d := model.Decision{Action: model.Deny, Rule: strings.Join(rules, ","),
		Reason: fmt.Sprintf("a masked file is read in order: this read starts at offset %d, the file goes on at %d", op.off, fm.pos)}
	r.s.c.record(model.KindSSHSFTP, model.SSHSFTP{Channel: r.s.id, Op: "read", Path: fm.path,
		Status: "denied", Decision: d, OffsetNS: r.s.c.offset()}, model.Synced)
	if sendBefore != nil {
		sendBefore()
	}
	r.refuse(id, fxPermissionDenied, d)
}

// status takes the status reply to a read of the handle. An EOF where
// the file goes on ends the file, and so does an EOF further on after a
// short read (OpenSSH's clients read past the end before they learn where
// it is); any other status where the file goes on releases what is held
// as at a pause.
func (fm *fileMask) status(op *sftpOp, code uint32, sendBefore func() error) {
	const eof = 1
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.ended || len(fm.queue) == 0 && len(fm.sc.held) == 0 {
		return
	}
	switch {
	case op.off == fm.pos && code == eof, op.off > fm.pos && code == eof && fm.short:
		fm.releaseAll(releaseFinal, sendBefore)
	case op.off == fm.pos:
		fm.releaseAll(releaseTimeout, sendBefore)
	}
}

// closed releases what is held when the handle closes, and journals what
// masking did.
func (fm *fileMask) closed(sendBefore func() error) {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	fm.end(sendBefore)
}

func (fm *fileMask) end(sendBefore func() error) {
	if fm.ended {
		return
	}
	fm.releaseAll(releaseTimeout, sendBefore)
	fm.ended = true
	fm.sc.finish()
	fm.om.finish()
}

func (fm *fileMask) releaseAll(mode releaseMode, sendBefore func() error) {
	fm.stopTimer()
	fm.place(fm.sc.next(nil, mode), sendBefore)
	if mode != releaseMore && len(fm.queue) > 0 {
		// The scanner released all it held: nothing is left to wait
		// for. (A reply of no bytes is the only one that can remain.)
		fm.flushEmpty(sendBefore)
	}
}

// place writes masked bytes into the held replies, in order, and sends
// each that is whole.
func (fm *fileMask) place(out []byte, sendBefore func() error) {
	var ready [][]byte
	for len(fm.queue) > 0 {
		h := &fm.queue[0]
		k := copy(h.pkt[h.at+fm.done:h.at+h.n], out)
		out = out[k:]
		fm.done += k
		if fm.done < h.n {
			break
		}
		ready = append(ready, h.pkt)
		fm.queue = fm.queue[1:]
		fm.done = 0
	}
	if len(ready) > 0 {
		// The oldest held reply went: the next one's wait starts now.
		fm.stopTimer()
	}
	if len(out) > 0 {
		// The scanner released bytes no reply holds: its bookkeeping and
		// the relay's disagree. Nothing more of the file is sent, and the
		// session ends (a reply kept from the client would leave it
		// waiting).
		fm.ended = true
		fm.r.violation(ownID, "masking", fmt.Sprintf("masking %s released %d bytes beyond the replies it held", fm.path, len(out)))
		return
	}
	fm.send(ready, sendBefore)
}

func (fm *fileMask) flushEmpty(sendBefore func() error) {
	var ready [][]byte
	for len(fm.queue) > 0 && fm.queue[0].n == 0 {
		ready = append(ready, fm.queue[0].pkt)
		fm.queue = fm.queue[1:]
	}
	fm.send(ready, sendBefore)
}

func (fm *fileMask) send(ready [][]byte, sendBefore func() error) {
	if len(ready) == 0 {
		return
	}
	if sendBefore != nil && sendBefore() != nil {
		return
	}
	r := fm.r
	r.clientMu.Lock()
	defer r.clientMu.Unlock()
	for _, p := range ready {
		if _, err := r.s.cch.Write(p); err != nil {
			return
		}
	}
}

// schedule runs the timer while replies are held.
func (fm *fileMask) schedule() {
	if len(fm.queue) == 0 {
		fm.stopTimer()
		return
	}
	if fm.timer != nil {
		return
	}
	g := fm.gen
	fm.timer = time.AfterFunc(fm.hold, func() { fm.fire(g) })
}

func (fm *fileMask) stopTimer() {
	if fm.timer != nil {
		fm.timer.Stop()
		fm.timer = nil
	}
	fm.gen++
}

func (fm *fileMask) fire(gen uint64) {
	defer fm.r.s.c.recoverGoroutine()
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.ended || gen != fm.gen {
		return
	}
	fm.timer = nil
	fm.releaseAll(releaseTimeout, nil)
}
