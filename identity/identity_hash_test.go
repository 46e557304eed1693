package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hashTestFile is a file and how the cache would key it now.
type hashTestFile struct {
	t    *testing.T
	path string
}

func (f hashTestFile) key() identFileKey {
	f.t.Helper()
	var st unix.Statx_t
	if err := identStatx(unix.AT_FDCWD, f.path, &st); err != nil {
		f.t.Fatal(err)
	}
	return identFileKeyOf(&st)
}

func (f hashTestFile) open() (int, error) {
	return unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// want is the SHA-256 of the file as read from start to end.
func (f hashTestFile) want() string {
	f.t.Helper()
	r, err := os.Open(f.path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		f.t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// touch makes a new version of the file with the same bytes, as touch(1)
// does: the mtime and ctime change.
func (f hashTestFile) touch() {
	f.t.Helper()
	now := time.Now().Add(time.Duration(len(f.path)) * time.Millisecond)
	if err := os.Chtimes(f.path, now, now); err != nil {
		f.t.Fatal(err)
	}
}

// writeAt changes the file's bytes at off.
func (f hashTestFile) writeAt(off int64, b []byte) {
	f.t.Helper()
	w, err := os.OpenFile(f.path, os.O_WRONLY, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteAt(b, off); err != nil {
		f.t.Fatal(err)
	}
}

// sparseFile writes data, then leaves holes up to size, with a few bytes of
// data in the middle of the holes.
func sparseFile(t *testing.T, name string, data []byte, size int64) hashTestFile {
	t.Helper()
	f := hashTestFile{t: t, path: filepath.Join(t.TempDir(), name)}
	if err := os.WriteFile(f.path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f.writeAt(size/2, []byte("island of data in the middle of the holes"))
	if err := os.Truncate(f.path, size); err != nil {
		t.Fatal(err)
	}
	return f
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHashSparse: holes hash as the zeros they read as, without reading
// them; a touched file (a new version, the same bytes) is hashed again
// but its long zero runs come from memory.
func TestHashSparse(t *testing.T) {
	const size = 256 << 20
	f := sparseFile(t, "sparse", randomBytes(t, 1<<20), size)
	var st unix.Stat_t
	if err := unix.Stat(f.path, &st); err != nil || st.Blocks*512 > 16<<20 {
		t.Fatalf("the file system did not keep the file sparse (%d blocks): %v", st.Blocks, err)
	}
	want := f.want()
	c := newIdentHashCache(16)
	got, err := c.sum(context.Background(), f.key(), f.key().owner, f.open)
	if err != nil || got != want {
		t.Fatalf("sum = %q, %v; want %s", got, err, want)
	}
	first := c.hashed.Load()
	if first < size {
		t.Fatalf("first hash fed %d bytes, want the whole %d (nothing is in memory yet)", first, size)
	}
	for i := 0; i < 3; i++ {
		f.touch()
		got, err := c.sum(context.Background(), f.key(), f.key().owner, f.open)
		if err != nil || got != want {
			t.Fatalf("after touch %d: sum = %q, %v; want %s", i, got, err, want)
		}
	}
	if n := c.computed.Load(); n != 4 {
		t.Errorf("computed %d hashes, want 4 (each touch is a new version)", n)
	}
	if again := c.hashed.Load() - first; again > 3*(8<<20) {
		t.Errorf("three touched re-hashes fed %d bytes to SHA-256, want little more than the data (the zero runs are known)", again)
	}

	// Changed bytes before a hole give another state: the zeros are
	// hashed again, and the sum is still right.
	f.writeAt(10, []byte("changed"))
	got, err = c.sum(context.Background(), f.key(), f.key().owner, f.open)
	if want := f.want(); err != nil || got != want {
		t.Fatalf("after a change: sum = %q, %v; want %s", got, err, want)
	}
}

// TestHashDense: a file with no holes, and one that ends in a hole, hash
// as sha256 of their bytes.
func TestHashDense(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		size int64
	}{
		{"empty", nil, 0},
		{"small", []byte("#!/bin/sh\necho hi\n"), 18},
		{"chunks", randomBytes(t, 3*identHashChunk+17), 3*identHashChunk + 17},
		{"trailing hole", randomBytes(t, 5000), 9 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := hashTestFile{t: t, path: filepath.Join(t.TempDir(), "f")}
			if err := os.WriteFile(f.path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(f.path, tc.size); err != nil {
				t.Fatal(err)
			}
			c := newIdentHashCache(4)
			if got, err := c.sum(context.Background(), f.key(), f.key().owner, f.open); err != nil || got != f.want() {
				t.Fatalf("sum = %q, %v; want %s", got, err, f.want())
			}
		})
	}
}

// TestHashBudget: the file's owner has a budget of bytes per interval; an
// executable over it is not hashed (and Refused hears of it), others'
// budgets are untouched, what a hash did not cost is given back, and the
// budget refills.
func TestHashBudget(t *testing.T) {
	type refusal struct {
		owner uint32
		size  int64
		limit string
	}
	var mu sync.Mutex
	var refused []refusal
	c := newIdentHashCache(16)
	lim := HashLimits{BudgetBytes: 100 << 20, Interval: time.Hour, MaxBytes: 64 << 20,
		Refused: func(owner uint32, size int64, limit string) {
			mu.Lock()
			refused = append(refused, refusal{owner, size, limit})
			mu.Unlock()
		}}
	c.setLimits(lim)
	ctx := context.Background()

	dense := hashTestFile{t: t, path: filepath.Join(t.TempDir(), "dense")}
	if err := os.WriteFile(dense.path, randomBytes(t, 40<<20), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dense.path, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := c.sum(ctx, dense.key(), dense.key().owner, dense.open); err != nil {
		t.Fatalf("first version: %v", err)
	}
	dense.writeAt(0, []byte("v2"))
	if _, err := c.sum(ctx, dense.key(), dense.key().owner, dense.open); err != nil {
		t.Fatalf("second version (80 of 100 MiB): %v", err)
	}
	dense.writeAt(0, []byte("v3"))
	s, err := c.sum(ctx, dense.key(), dense.key().owner, dense.open)
	if err == nil || s != "" || !strings.Contains(err.Error(), "budget of uid 4242") {
		t.Fatalf("third version over the budget: %q, %v", s, err)
	}
	if len(refused) != 1 || refused[0] != (refusal{4242, 40 << 20, "hash_budget"}) {
		t.Fatalf("Refused heard %+v", refused)
	}
	// A refusal is not cached: with the budget back, the same version is
	// hashed.
	c.budget.mu.Lock()
	c.budget.buckets[4242].last = c.budget.buckets[4242].last.Add(-time.Hour)
	c.budget.mu.Unlock()
	if s, err := c.sum(ctx, dense.key(), dense.key().owner, dense.open); err != nil || s != dense.want() {
		t.Fatalf("after the budget refilled: %q, %v", s, err)
	}

	// Another owner's budget is untouched.
	other := sparseFile(t, "other", randomBytes(t, 1<<20), 48<<20)
	if err := os.Chown(other.path, 4343, 4343); err != nil {
		t.Fatal(err)
	}
	if _, err := c.sum(ctx, other.key(), other.key().owner, other.open); err != nil {
		t.Fatalf("another owner: %v", err)
	}
	// Its zero runs come from memory after a touch: the refund leaves
	// budget for many touches (48 MiB taken each time, ~1 MiB spent).
	for i := 0; i < 4; i++ {
		other.touch()
		if _, err := c.sum(ctx, other.key(), other.key().owner, other.open); err != nil {
			t.Fatalf("touch %d of a sparse file: %v (the unused budget was not given back)", i, err)
		}
	}

	// Over the size limit: refused without being opened.
	big := other.key()
	big.size = 65 << 20
	big.ino++
	if _, err := c.sum(ctx, big, 4343, func() (int, error) { t.Fatal("opened"); return -1, nil }); err == nil {
		t.Fatal("hashed a file over max")
	}
	if last := refused[len(refused)-1]; last != (refusal{4343, 65 << 20, "hash_max_size"}) {
		t.Fatalf("Refused heard %+v", last)
	}
}

// TestHashBudgetBounded: the table of owners' buckets stays bounded.
func TestHashBudgetBounded(t *testing.T) {
	var b identBudget
	lim := &HashLimits{BudgetBytes: 10, Interval: time.Hour}
	now := time.Now()
	for o := uint32(0); o < 3*identBudgetOwners; o++ {
		b.take(o, 5, lim, now)
	}
	if n := len(b.buckets); n > identBudgetOwners {
		t.Fatalf("%d buckets kept", n)
	}
}

// TestHashBudgetSparse: when the owner's bucket no longer holds a sparse
// file's size, the file is still hashed for the price of its data while
// its zero runs come from memory; a rewrite that makes them miss is
// stopped at the first run the budget cannot pay.
func TestHashBudgetSparse(t *testing.T) {
	const size = 48 << 20
	c := newIdentHashCache(16)
	var refusals int
	c.setLimits(HashLimits{BudgetBytes: 64 << 20, Interval: time.Hour,
		Refused: func(uint32, int64, string) { refusals++ }})
	ctx := context.Background()
	f := sparseFile(t, "sparse", randomBytes(t, 1<<20), size)
	want := f.want()
	if s, err := c.sum(ctx, f.key(), f.key().owner, f.open); err != nil || s != want {
		t.Fatalf("first: %q, %v", s, err)
	}
	// 16 MiB left: less than the file, more than its data.
	for i := 0; i < 10; i++ {
		f.touch()
		if s, err := c.sum(ctx, f.key(), f.key().owner, f.open); err != nil || s != want {
			t.Fatalf("touch %d with the bucket below the file's size: %q, %v", i, s, err)
		}
	}
	before := c.hashed.Load()
	f.writeAt(100, []byte("new bytes before the holes"))
	if s, err := c.sum(ctx, f.key(), f.key().owner, f.open); err == nil || s != "" || refusals != 1 {
		t.Fatalf("a rewrite whose zero runs the budget cannot pay: %q, %v (%d refusals)", s, err, refusals)
	}
	if spent := c.hashed.Load() - before; spent > 4<<20 {
		t.Errorf("the refused rewrite hashed %d bytes before stopping, want about its data", spent)
	}
}
