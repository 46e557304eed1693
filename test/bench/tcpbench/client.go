package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock/interlock/test/bench/benchutil"
)

// clientResult is what one client process prints on stdout, as one JSON
// line: the latencies it measured, already summarised, or the transfer
// rate. A client that fails sets Error and exits non-zero.
type clientResult struct {
	Mode string `json:"mode"`
	// N is the number of measured operations (connections or round
	// trips); Conns the TCP connections the process opened, warm-up
	// included, which is how many sessions interlock must report.
	N     int `json:"n"`
	Conns int `json:"conns"`

	P50US  float64 `json:"p50_us,omitempty"`
	P90US  float64 `json:"p90_us,omitempty"`
	P99US  float64 `json:"p99_us,omitempty"`
	P999US float64 `json:"p999_us,omitempty"`
	MeanUS float64 `json:"mean_us,omitempty"`
	MinUS  float64 `json:"min_us,omitempty"`
	MaxUS  float64 `json:"max_us,omitempty"`

	Bytes   int64   `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	MiBps   float64 `json:"mib_per_s,omitempty"`

	// ParentCPUMS is the CPU time (user + system, all threads) the
	// client's parent process used during the measured part: under
	// `interlock run` that is interlock's own cost, which the load of a
	// shared machine disturbs less than the latencies. -1 when unread.
	ParentCPUMS float64 `json:"parent_cpu_ms"`
	// ParentSwitches is how many context switches (voluntary and not, all
	// threads) the parent made meanwhile; -1 when unread. They vary less
	// between runs than its CPU time on a VM.
	ParentSwitches float64 `json:"parent_switches"`

	// Local and Peer are the last connection's addresses as the client
	// saw them (getsockname, getpeername).
	Local string `json:"local,omitempty"`
	Peer  string `json:"peer,omitempty"`

	Error string `json:"error,omitempty"`
}

const (
	modeConnect  = "connect"
	modeEcho     = "echo"
	modeBulkUp   = "bulk-up"
	modeBulkDown = "bulk-down"

	// Bulk protocol: the first byte says the direction; the server
	// answers bulkReady before the timed transfer starts, so the session
	// setup (measured by the connect metric) stays out of the throughput.
	bulkUp    = 'U'
	bulkDown  = 'D'
	bulkReady = 'R'

	ioChunk = 256 << 10 // client write size in bulk transfers
)

// clientMain is `tcpbench client ...`: the code measured, run directly or
// under `interlock run`. It knows nothing of interlock.
func clientMain(args []string) int {
	fs := flag.NewFlagSet("tcpbench client", flag.ContinueOnError)
	mode := fs.String("mode", "", "connect, echo, bulk-up or bulk-down")
	addr := fs.String("addr", "", "server host:port")
	n := fs.Int("n", 0, "connections (connect) or round trips (echo) to measure")
	warmup := fs.Int("warmup", 0, "unmeasured connections or round trips first")
	size := fs.Int("size", 64, "echo message size in bytes")
	nbytes := fs.Int64("bytes", 0, "bulk transfer size in bytes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	res := clientResult{Mode: *mode, ParentCPUMS: -1, ParentSwitches: -1}
	var err error
	switch *mode {
	case modeConnect:
		err = runConnect(*addr, *n, *warmup, &res)
	case modeEcho:
		err = runEcho(*addr, *n, *warmup, *size, &res)
	case modeBulkUp, modeBulkDown:
		err = runBulk(*addr, *mode == modeBulkUp, *nbytes, &res)
	default:
		err = fmt.Errorf("unknown -mode %q", *mode)
	}
	if err != nil {
		res.Error = err.Error()
	}
	if eerr := json.NewEncoder(os.Stdout).Encode(res); eerr != nil && err == nil {
		err = eerr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpbench client:", err)
		return 1
	}
	return 0
}

func dial(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// dialOnce opens the one connection an echo or bulk measurement uses,
// records it in res and gives it the deadline d from now.
func dialOnce(addr string, res *clientResult, d time.Duration) (*net.TCPConn, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	res.Conns = 1
	res.Local, res.Peer = c.LocalAddr().String(), c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(d))
	return c, nil
}

// runConnect opens a fresh connection per measurement: connect, write one
// byte, read one byte back. The time runs from before connect() until the
// byte is back; the close that follows is not timed.
func runConnect(addr string, n, warmup int, res *clientResult) error {
	if n <= 0 {
		return errors.New("-n must be positive")
	}
	lat := make([]time.Duration, 0, n)
	one := []byte{'x'}
	back := make([]byte, 1)
	cpu := parentCPU{}
	for i := range warmup + n {
		if i == warmup {
			cpu.start()
		}
		t0 := time.Now()
		c, err := dial(addr)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i+1, err)
		}
		res.Conns++
		c.SetDeadline(t0.Add(30 * time.Second))
		if _, err := c.Write(one); err != nil {
			c.Close()
			return fmt.Errorf("connection %d: write: %w", i+1, err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			c.Close()
			return fmt.Errorf("connection %d: read: %w", i+1, err)
		}
		d := time.Since(t0)
		if back[0] != one[0] {
			c.Close()
			return fmt.Errorf("connection %d: server answered %q, want %q", i+1, back, one)
		}
		res.Local, res.Peer = c.LocalAddr().String(), c.RemoteAddr().String()
		c.Close()
		if i >= warmup {
			lat = append(lat, d)
		}
	}
	res.ParentCPUMS, res.ParentSwitches = cpu.stop()
	summarise(res, lat)
	return nil
}

// runEcho times request/response round trips on one open connection.
func runEcho(addr string, n, warmup, size int, res *clientResult) error {
	if n <= 0 || size <= 0 {
		return errors.New("-n and -size must be positive")
	}
	c, err := dialOnce(addr, res, 5*time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	back := make([]byte, size)
	lat := make([]time.Duration, 0, n)
	cpu := parentCPU{}
	for i := range warmup + n {
		if i == warmup {
			cpu.start()
		}
		msg[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("round trip %d: write: %w", i+1, err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			return fmt.Errorf("round trip %d: read: %w", i+1, err)
		}
		d := time.Since(t0)
		if back[0] != msg[0] || back[size-1] != msg[size-1] {
			return fmt.Errorf("round trip %d: the echo does not match the request", i+1)
		}
		if i >= warmup {
			lat = append(lat, d)
		}
	}
	res.ParentCPUMS, res.ParentSwitches = cpu.stop()
	summarise(res, lat)
	return nil
}

// runBulk moves total bytes client→server (up) or server→client (down).
// Up: the time runs from the first write until the server's byte count
// arrives, after it read to EOF. Down: from the request until EOF.
func runBulk(addr string, up bool, total int64, res *clientResult) error {
	if total <= 0 {
		return errors.New("-bytes must be positive")
	}
	c, err := dialOnce(addr, res, 10*time.Minute)
	if err != nil {
		return err
	}
	defer c.Close()
	dir := byte(bulkDown)
	if up {
		dir = bulkUp
	}
	if _, err := c.Write([]byte{dir}); err != nil {
		return fmt.Errorf("bulk request: %w", err)
	}
	ready := make([]byte, 1)
	if _, err := io.ReadFull(c, ready); err != nil || ready[0] != bulkReady {
		return fmt.Errorf("bulk: server not ready (%q): %v", ready, err)
	}
	var moved int64
	var t0 time.Time
	var elapsed time.Duration
	cpu := parentCPU{}
	cpu.start()
	if up {
		buf := make([]byte, ioChunk)
		for i := range buf {
			buf[i] = byte(i)
		}
		t0 = time.Now()
		for moved < total {
			k := int(min(int64(len(buf)), total-moved))
			w, err := c.Write(buf[:k])
			moved += int64(w)
			if err != nil {
				return fmt.Errorf("bulk write after %d bytes: %w", moved, err)
			}
		}
		if err := c.CloseWrite(); err != nil {
			return fmt.Errorf("bulk: half-close: %w", err)
		}
		var got [8]byte
		if _, err := io.ReadFull(c, got[:]); err != nil {
			return fmt.Errorf("bulk: read the server's byte count: %w", err)
		}
		elapsed = time.Since(t0)
		if n := int64(binary.BigEndian.Uint64(got[:])); n != total {
			return fmt.Errorf("bulk: server received %d bytes, sent %d", n, total)
		}
	} else {
		var req [8]byte
		binary.BigEndian.PutUint64(req[:], uint64(total))
		buf := make([]byte, 1<<20)
		t0 = time.Now()
		if _, err := c.Write(req[:]); err != nil {
			return fmt.Errorf("bulk: request: %w", err)
		}
		for {
			k, err := c.Read(buf)
			moved += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("bulk read after %d bytes: %w", moved, err)
			}
		}
		elapsed = time.Since(t0)
		if moved != total {
			return fmt.Errorf("bulk: received %d bytes, asked for %d", moved, total)
		}
	}
	res.ParentCPUMS, res.ParentSwitches = cpu.stop()
	res.N = 1
	res.Bytes = moved
	res.Seconds = elapsed.Seconds()
	res.MiBps = float64(moved) / (1 << 20) / elapsed.Seconds()
	return nil
}

func summarise(res *clientResult, lat []time.Duration) {
	slices.Sort(lat)
	res.N = len(lat)
	if len(lat) == 0 {
		return
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	res.P50US = us(percentile(lat, 0.50))
	res.P90US = us(percentile(lat, 0.90))
	res.P99US = us(percentile(lat, 0.99))
	res.P999US = us(percentile(lat, 0.999))
	res.MeanUS = us(sum / time.Duration(len(lat)))
	res.MinUS = us(lat[0])
	res.MaxUS = us(lat[len(lat)-1])
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func us(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)*10) / 10
}

// parentCPU measures the CPU time of the client's parent process between
// start and stop, from /proc/PPID/stat (utime + stime of all its threads,
// in clock ticks: 10 ms at the usual 100 Hz, fine over a round).
type parentCPU struct {
	ticks, switches uint64
	ok, swOK        bool
}

func (p *parentCPU) start() {
	p.ticks, p.ok = readCPUTicks(os.Getppid())
	p.switches, p.swOK = benchutil.ContextSwitches(os.Getppid())
}

// stop is the CPU time in ms and the context switches since start, each
// -1 when it could not be read.
func (p *parentCPU) stop() (ms, switches float64) {
	ms, switches = -1, -1
	if t, ok := readCPUTicks(os.Getppid()); p.ok && ok && t >= p.ticks {
		ms = float64(t-p.ticks) * 1000 / clockTicks
	}
	if n, ok := benchutil.ContextSwitches(os.Getppid()); p.swOK && ok && n >= p.switches {
		switches = float64(n - p.switches)
	}
	return ms, switches
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// readCPUTicks is utime + stime of pid (fields 14 and 15 of its stat,
// counted after the parenthesised comm, which may hold spaces).
func readCPUTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + s, true
}
