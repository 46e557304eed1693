package redirector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"

	"github.com/interlock/interlock/internal/cgroupfs"
)

// Probe checks that this host lets interlock do its job: it loads the
// programs, attaches them to a scratch cgroup below this process's own, and
// detaches and removes everything again.
func Probe(root string) error {
	p, err := loadPrograms("", slog.Default())
	if err != nil {
		return err
	}
	defer p.close()
	self, err := cgroupfs.Self()
	if err != nil {
		return err
	}
	dir, err := cgroupfs.Dir(root, path.Join(self, fmt.Sprintf("interlock-probe-%d", os.Getpid())))
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create a scratch cgroup: %w", err)
	}
	a, err := p.attach(dir, "")
	if err == nil {
		err = a.detach()
	}
	return errors.Join(err, os.Remove(dir))
}
