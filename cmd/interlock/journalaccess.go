package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// journalReadable checks that the journal at p opens for reading, before
// SQLite turns a refusal into "unable to open database file". A refusal is
// exitNoPerm, and says what would let the user read it.
func journalReadable(p string) error {
	err := openable(p)
	if errors.Is(err, fs.ErrPermission) {
		return journalDenied(p)
	}
	return exitWith(exitIOErr, err)
}

// openable is the error opening path for reading gives, if any.
func openable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// journalDenied is the error for a journal the user may not read: the
// package gives its readers a group (interlock), so the way in is that
// group, not root, and the message names it. It looks at the nearest of
// the journal and its directories that the user can see, which is the one
// that refuses (the file, or a directory above it).
func journalDenied(p string) error {
	denied := fmt.Sprintf("cannot read the journal %s (permission denied)", p)
	for at := p; ; at = filepath.Dir(at) {
		fi, err := os.Stat(at)
		if err == nil {
			return exitWith(exitNoPerm, fmt.Errorf("%s: %s", denied, readersOf(at, fi)))
		}
		if at == filepath.Dir(at) {
			return exitWith(exitNoPerm, errors.New(denied))
		}
	}
}

// readersOf says who may read path (a directory: enter and list it) and
// what the user can do about it.
func readersOf(path string, fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	need := fs.FileMode(0o040)
	if fi.IsDir() {
		need = 0o050
	}
	if !ok || st.Gid == 0 || fi.Mode().Perm()&need != need {
		return fmt.Sprintf("%s is readable by its owner alone: run this as root", path)
	}
	gid := strconv.FormatUint(uint64(st.Gid), 10)
	group := "with gid " + gid
	name := gid
	if g, err := user.LookupGroupId(gid); err == nil {
		group, name = g.Name, g.Name
	}
	me := "$USER"
	if u, err := user.Current(); err == nil {
		me = u.Username
		// In the group's list, but not in this login's groups: the
		// membership starts with the next login.
		if ids, err := u.GroupIds(); err == nil && slices.Contains(ids, gid) {
			return fmt.Sprintf("%s is for root and the members of group %s; you are one, but this login started before you were added: log in again (or run `newgrp %s`)",
				path, group, name)
		}
	}
	return fmt.Sprintf("%s is for root and the members of group %s (the audit group); to read the journal without root, ask an administrator to add you (usermod -aG %s %s), then log in again",
		path, group, name, me)
}
