package runner

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInheritedFDs: a descriptor without close-on-exec counts as
// inherited, one Go opened does not; after CloseOnExecAbove none does, and
// a child started with PassFDs gets exactly the descriptors passed, at
// their own numbers.
func TestInheritedFDs(t *testing.T) {
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// dup3 to a high number without O_CLOEXEC: what a launcher leaves open.
	a, b := 200, 201
	for _, fd := range []int{a, b} {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	got, err := InheritedFDs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, a) || !slices.Contains(got, b) || slices.Contains(got, int(f.Fd())) {
		t.Errorf("inherited %v: want %d and %d, not Go's own %d", got, a, b, f.Fd())
	}
	if Inherited(int(f.Fd())) == nil || Inherited(999) == nil || Inherited(a) != nil {
		t.Errorf("Inherited: Go's own %v, closed %v, left open %v", Inherited(int(f.Fd())), Inherited(999), Inherited(a))
	}

	if err := CloseOnExecAbove(); err != nil {
		t.Fatal(err)
	}
	if got, _ := InheritedFDs(); len(got) != 0 {
		t.Errorf("after CloseOnExecAbove, still not close-on-exec: %v", got)
	}

	cmd := exec.Command("sh", "-c", "ls /proc/self/fd")
	cmd.ExtraFiles = PassFDs([]int{b})
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, s := range strings.Fields(string(out)) {
		n, _ := strconv.Atoi(s)
		if n > 3 { // 3 is ls's own directory
			fds = append(fds, n)
		}
	}
	if !slices.Equal(fds, []int{b}) {
		t.Errorf("the child has %v above 3, want [%d]", fds, b)
	}
}
