package journal

// The commit log: while one process writes a journal alone, a batch is
// committed by one write(2) of its entries, already numbered, chained and
// hashed, to an append-only file beside the database (Path + "-log"), and
// SQLite takes them in large transactions a few milliseconds later (flush,
// logmode.go). A process crash cannot lose what write returned (the bytes
// are in the page cache), exactly as with a WAL commit under
// synchronous=NORMAL; a Synced record waits for the log's fdatasync. Open,
// and a reader that finds no writer, replay into the database whatever the
// log holds beyond its head, checking that it chains on (recoverLog).
//
// The log is one writer's: its file lock (flock) is taken exclusive by the
// process in log mode, shared by every process that writes through SQLite
// (another engine, a nested `interlock run`, `journal prune-payloads`).
// Such a process first takes the want file's lock shared; the log-mode
// writer polls that lock, and when it finds it taken it flushes everything
// to SQLite and steps down to a shared lock, writing through SQLite until
// it can take the log exclusive again.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"syscall"
	"time"
	"unsafe"

	"github.com/interlock/interlock/journal/evidence"
)

// LogSuffix and WantSuffix name the commit log and its want file after the
// database's path.
const (
	LogSuffix  = "-log"
	WantSuffix = "-logwant"
)

// logFrameHeader is a frame's length and CRC-32C, little-endian.
const logFrameHeader = 8

// maxLogFrame bounds one frame: an entry's payload is at most what Post
// and Append accept, far below this.
const maxLogFrame = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type lockState int

const (
	lockNone lockState = iota
	lockShared
	lockExclusive
)

// commitLog is the log file and its locks, owned by the writer goroutine.
type commitLog struct {
	path string
	f    *os.File
	want *os.File
	lock lockState
	// off is where the next frame goes. The log is not truncated when it
	// is emptied but rewound (rewind): frames overwrite the older ones,
	// and an fdatasync of blocks already written needs no metadata
	// written with them (an append that grows the file does, on ext4 a
	// journal commit), which made a Synced record's fsync a quarter
	// slower. Replay stops where the sequence numbers go back.
	off int64
	buf []byte
	// fd is f's descriptor, for write's raw pwrite.
	fd int
}

func openCommitLog(dbPath string) (*commitLog, error) {
	f, err := os.OpenFile(dbPath+LogSuffix, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("journal: open the commit log: %w", err)
	}
	want, err := os.OpenFile(dbPath+WantSuffix, os.O_RDONLY|os.O_CREATE, 0o640)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: open the commit log's want file: %w", err)
	}
	return &commitLog{path: dbPath + LogSuffix, f: f, want: want, fd: int(f.Fd())}, nil
}

func (c *commitLog) close() {
	c.fd = -1   // a write after close fails (EBADF), never reaching a reused number
	c.f.Close() // closing the last descriptor releases the flock
	c.want.Close()
	c.lock = lockNone
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// tryExclusive takes the log for this process alone, if nobody holds it.
// Converting a shared lock releases it first, so on failure the caller
// holds nothing.
func (c *commitLog) tryExclusive() bool {
	if err := flock(c.f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		c.lock = lockNone
		return false
	}
	c.lock = lockExclusive
	return true
}

// acquireShared takes the log's lock shared, for a process that writes
// through SQLite: it raises its want first, so that a log-mode writer
// flushes and steps down, and waits for that at most timeout.
func (c *commitLog) acquireShared(timeout time.Duration) error {
	if err := flock(c.want, syscall.LOCK_SH); err != nil {
		return fmt.Errorf("journal: lock %s: %w", c.want.Name(), err)
	}
	defer flock(c.want, syscall.LOCK_UN)
	deadline := time.Now().Add(timeout)
	for {
		err := flock(c.f, syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			c.lock = lockShared
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("journal: lock %s: %w", c.path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("journal: another process writes %s through its commit log and did not hand it over within %s; "+
				"is that process stopped? (raise journal.busy_timeout, or stop it)", c.path, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// wanted reports whether a process waits to write through SQLite.
func (c *commitLog) wanted() bool {
	if err := flock(c.want, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	_ = flock(c.want, syscall.LOCK_UN)
	return false
}

// logRow is one entry as the log holds it: what the writer needs to insert
// it again (its body is rebuilt from seq, time and tail) and the chain hash
// it was given, which the rebuilt one must equal.
type logRow struct {
	seq           int64
	timeNS        int64
	kind, session string
	tail          []byte
	salt, payload []byte
	hash          []byte
}

// appendFrame encodes row as one frame onto dst.
func appendFrame(dst []byte, row *logRow) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, logFrameHeader)...)
	dst = binary.AppendUvarint(dst, uint64(row.seq))
	dst = binary.AppendVarint(dst, row.timeNS)
	dst = appendString(dst, row.kind)
	dst = appendString(dst, row.session)
	dst = appendString(dst, row.tail)
	dst = appendOptional(dst, row.salt)
	dst = appendOptional(dst, row.payload)
	dst = append(dst, row.hash...)
	body := dst[start+logFrameHeader:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// appendString writes s length-first; a session id is longer than what a
// []byte conversion would keep off the heap.
func appendString[S string | []byte](dst []byte, s S) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

// appendOptional keeps nil apart from empty: a NULL payload column is not
// an empty one.
func appendOptional(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendUvarint(dst, 0)
	}
	return append(binary.AppendUvarint(dst, uint64(len(b))+1), b...)
}

// parseLog decodes the frames of a log file's contents. It stops at the
// end marker, at a frame whose number does not follow (left from an
// earlier pass), and at the first frame that is cut short or fails its
// CRC: the tail of a write that a crash or power loss interrupted, whose
// records nobody was told were committed. good is the length of the
// frames before it.
func parseLog(b []byte) (rows []logRow, good int, err error) {
	for len(b)-good >= logFrameHeader {
		n := int(binary.LittleEndian.Uint32(b[good:]))
		sum := binary.LittleEndian.Uint32(b[good+4:])
		if n == 0 || n > maxLogFrame || len(b)-good-logFrameHeader < n {
			// A zero length is the end a rewind marks.
			break
		}
		body := b[good+logFrameHeader : good+logFrameHeader+n]
		if crc32.Checksum(body, castagnoli) != sum {
			break
		}
		row, err := decodeFrame(body)
		if err != nil {
			return rows, good, fmt.Errorf("commit log frame at byte %d: %w", good, err)
		}
		if len(rows) > 0 && row.seq <= rows[len(rows)-1].seq {
			// Frames of an earlier pass over the file. (Numbers may
			// skip: batches heavy with payloads go to SQLite only.)
			break
		}
		rows = append(rows, row)
		good += logFrameHeader + n
	}
	return rows, good, nil
}

func decodeFrame(b []byte) (logRow, error) {
	var r logRow
	d := frameDecoder{b: b}
	r.seq = int64(d.uvarint())
	r.timeNS = d.varint()
	r.kind = string(d.bytes())
	r.session = string(d.bytes())
	r.tail = d.bytes()
	r.salt = d.optional()
	r.payload = d.optional()
	r.hash = d.take(evidence.HashSize)
	switch {
	case d.err != nil:
		return r, d.err
	case len(d.b) != 0:
		return r, fmt.Errorf("%d bytes after the entry", len(d.b))
	case r.seq < 1:
		return r, fmt.Errorf("entry number %d", r.seq)
	}
	return r, nil
}

type frameDecoder struct {
	b   []byte
	err error
}

func (d *frameDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// take returns the next n bytes.
func (d *frameDecoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errors.New("field cut short")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) bytes() []byte { return d.take(d.uvarint()) }

// optional reads what appendOptional wrote: nil for none, a non-nil
// (perhaps empty) slice otherwise.
func (d *frameDecoder) optional() []byte {
	n := d.uvarint()
	if d.err != nil || n == 0 {
		return nil
	}
	v := d.take(n - 1)
	if v == nil && d.err == nil {
		v = []byte{}
	}
	return v
}

// write puts buf at the log's end in one pwrite(2), followed by the
// end marker. A failed write leaves off where it was: the next batch
// overwrites whatever part of it landed.
//
// The pwrite is a raw system call, outside the runtime's system-call
// accounting: a session's goroutine makes one per statement it commits,
// and each entry into a system call may wake the runtime's sysmon thread
// from its sleep, which on a VM cost about a tenth of the PostgreSQL
// path's CPU at one client (docs/benchmarks.md, "Raw socket I/O"). A
// write of a few KiB into pages the log reuses (it is rewound at
// logTrimAt) returns at page-cache speed; what it gives up is the hand-off
// of this goroutine's P to another thread if the kernel makes it wait
// (dirty-page throttling), while the other Ps run on.
func (c *commitLog) write(buf []byte) error {
	buf = append(buf, make([]byte, logFrameHeader)...)
	err := rawPwrite(c.fd, buf, c.off) // c holds f, so fd stays open
	if err != nil {
		return fmt.Errorf("write the commit log: %w", err)
	}
	c.off += int64(len(buf) - logFrameHeader)
	return nil
}

// rewind empties the log: its start gets the end marker, and the next
// frame goes there. Only once every entry it holds is in the database and
// the database's WAL is synced. A log grown far past logTrimAt (one huge
// batch) is cut back.
func (c *commitLog) rewind() error {
	if _, err := c.f.WriteAt(make([]byte, logFrameHeader), 0); err != nil {
		return fmt.Errorf("journal: empty the commit log: %w", err)
	}
	c.off = 0
	if fi, err := c.f.Stat(); err == nil && fi.Size() > 4*logTrimAt {
		if err := c.f.Truncate(logTrimAt); err != nil {
			return fmt.Errorf("journal: cut back the commit log: %w", err)
		}
	}
	return nil
}

// empty reports whether the log holds no frame, from its first header.
func (c *commitLog) empty() (bool, error) {
	var h [logFrameHeader]byte
	n, err := c.f.ReadAt(h[:], 0)
	if n < logFrameHeader {
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, fmt.Errorf("journal: read the commit log: %w", err)
	}
	return binary.LittleEndian.Uint32(h[:]) == 0, nil
}

// fdatasync makes what was written to f durable (the log, or the WAL).
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				return fmt.Errorf("fdatasync %s: %w", f.Name(), err)
			}
			return nil
		}
	}
}

// rawPwrite writes all of b at off with raw pwrite(2) calls.
func rawPwrite(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_PWRITE64, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
		switch e {
		case 0:
			if n == 0 {
				return io.ErrShortWrite
			}
			b = b[n:]
			off += int64(n)
		case syscall.EINTR:
			// Not in a system call to the runtime, the goroutine can be
			// interrupted by its preemption signal.
		default:
			return os.NewSyscallError("pwrite", e)
		}
	}
	return nil
}
