package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/interlock/interlock/journal"
)

// Ids are long (UUIDs); every command that takes a session or request id
// also takes a unique prefix of one, as `sessions list` and `approvals
// list` print them short.

// uniquePrefix returns the id of ids that is id or starts with it: exact
// first, then a single prefix match. what names the kind in errors.
func uniquePrefix(ids []string, prefix, what, listCmd string) (string, error) {
	if prefix == "" {
		return "", exitWith(exitUsage, fmt.Errorf("an empty %s id (see `%s`)", what, listCmd))
	}
	var found []string
	for _, id := range ids {
		if id == prefix {
			return id, nil
		}
		if strings.HasPrefix(id, prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", exitWith(exitNoInput, fmt.Errorf("no %s %q (see `%s`)", what, prefix, listCmd))
	case 1:
		return found[0], nil
	}
	return "", exitWith(exitUsage, fmt.Errorf("%q is the start of %d %s ids; give more of it (see `%s`)", prefix, len(found), what, listCmd))
}

// sessionByPrefix resolves a session id or prefix against the journal at
// path.
func sessionByPrefix(ctx context.Context, path, prefix string) (string, error) {
	list, err := journal.ListSessions(ctx, path, journal.SessionFilter{})
	if err != nil {
		return "", exitWith(exitIOErr, fmt.Errorf("read %s: %w", path, err))
	}
	ids := make([]string, len(list))
	for i, s := range list {
		ids[i] = s.ID
	}
	return uniquePrefix(ids, prefix, "session", "interlock sessions list")
}

// requestByPrefix resolves an approval request id or prefix among the
// pending requests the caller may see.
func requestByPrefix(list []sourced, prefix string) (string, error) {
	ids := make([]string, len(list))
	for i, p := range list {
		ids[i] = p.Request.ID
	}
	id, err := uniquePrefix(ids, prefix, "pending request", "interlock approvals list")
	var ee *exitError
	if errors.As(err, &ee) && ee.code == exitNoInput {
		// Say why it may be gone.
		return "", exitWith(exitNoInput, fmt.Errorf("no pending request %s you may see (decided already, timed out, or a wrong id; `interlock approvals list` shows the pending ones)", prefix))
	}
	return id, err
}
