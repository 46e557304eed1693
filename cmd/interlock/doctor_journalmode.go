package main

import (
	"fmt"
	"os"
	"strings"
)

// journalWritableByOthers fails the journal check when group or others may
// write the journal's files (the database, its -wal and -shm): they could
// rewrite the evidence, or break its chain. Group-readable is the audit
// group's access (docs/install.md) and is fine.
func journalWritableByOthers(path string) (check, bool) {
	var bad, fixes []string
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			continue // -wal and -shm come and go with SQLite's connections
		}
		if m := fi.Mode().Perm(); m&0o022 != 0 {
			bad = append(bad, fmt.Sprintf("%s is mode %04o", p, m))
			fixes = append(fixes, "chmod go-w "+p)
		}
	}
	if len(bad) == 0 {
		return check{}, false
	}
	return check{Name: "journal", Status: "fail",
		Detail: "others than root can write the journal: " + strings.Join(bad, "; "),
		Fix:    strings.Join(fixes, "; ") + " (0640: the interlock group reads it, root alone writes it)"}, true
}
