// Package atomicfile writes files whole or not at all: the data goes to a
// synced temporary file in the same directory, which is then renamed or
// linked into place, and the directory is synced. A reader, or a crash,
// sees the old content or the new, never a part; two writers at once
// never share a temporary file.
package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data, with mode.
func Write(path string, data []byte, mode os.FileMode) error {
	return WriteFrom(path, mode, writeBytes(data))
}

func writeBytes(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// WriteFrom replaces path with what write writes, with mode, for content
// too large to hold in memory. Nothing replaces path if write fails.
func WriteFrom(path string, mode os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), write, mode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// WriteIfChanged is Write, skipped when path already holds data.
func WriteIfChanged(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return Write(path, data, mode)
}

// Create installs data at path, with mode, unless a file is there already,
// and reports whether it did. Of several processes creating path at once,
// exactly one succeeds and the others keep its file: a key made this way
// is the same for everyone who starts with none.
func Create(path string, data []byte, mode os.FileMode) (created bool, err error) {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), writeBytes(data), mode)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	syncDir(dir)
	return true, nil
}

// writeTemp writes what write writes, with mode, to a new hidden file in dir named
// after name, and syncs it. Nothing is left behind on error.
func writeTemp(dir, name string, write func(io.Writer) error, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(mode)
	if err == nil {
		err = write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes a rename or link in dir durable; best effort, as some
// filesystems refuse fsync on directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
