package kubernetes

import (
	"sync"
	"time"

	"github.com/interlock/interlock/model"
)

// An exec's bytes are journaled as k8s.io entries. Each entry costs the
// journal a row and a leaf of its tree whatever its size, so bytes that
// come back to back (a bulk transfer arrives in writes of 32 KiB or less)
// are joined into one entry of up to ioMax: an entry is posted when it is
// full, ioHold after its first byte (what a replay's timing may be off
// by), and before bytes of another stream, so entries keep the order the
// bytes came in.
const (
	ioMax  = 128 << 10
	ioHold = 5 * time.Millisecond
)

// ioRec joins one exec's stream bytes into entries.
type ioRec struct {
	e *streamExec

	mu     sync.Mutex
	stream string
	buf    []byte
	offset int64
	timer  *time.Timer
}

func (r *ioRec) add(stream string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) > 0 && (r.stream != stream || len(r.buf)+len(p) > ioMax) {
		r.flushLocked()
	}
	if len(r.buf) == 0 {
		r.stream, r.offset = stream, r.e.offset()
		if r.timer == nil {
			r.timer = time.AfterFunc(ioHold, r.flush)
		} else {
			r.timer.Reset(ioHold)
		}
	}
	r.buf = append(r.buf, p...)
	if len(r.buf) >= ioMax {
		r.flushLocked()
	}
}

func (r *ioRec) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
}

// flushLocked posts the pending bytes; Post keeps no reference to them,
// so the buffer starts over.
func (r *ioRec) flushLocked() {
	if len(r.buf) == 0 {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	x := r.e.x
	x.h.deps.Journal.Post(model.Record{Kind: model.KindK8sIO, Session: x.s.ID,
		Data: model.SSHIO{Channel: r.e.ch, Stream: r.stream, OffsetNS: r.offset, Bytes: len(r.buf)}, Payload: r.buf})
	r.buf = r.buf[:0]
}
