// Package accounts names uids and gids. The lookups go through NSS (files,
// maybe LDAP), so the names are cached, misses included, for a while:
// accounts are renamed rarely, but they are.
package accounts

import (
	"os/user"
	"strconv"
	"sync"
	"time"
)

const (
	// ttl is how long a name is trusted.
	ttl = 5 * time.Minute
	// maxEntries bounds each map: a flood of distinct ids cannot grow it.
	maxEntries = 4096
)

// Names caches uid and gid to name lookups. It is safe for concurrent use.
type Names struct {
	mu     sync.Mutex
	users  map[uint32]entry
	groups map[uint32]entry
}

type entry struct {
	name    string
	expires time.Time
}

// NewNames returns an empty cache.
func NewNames() *Names {
	return &Names{users: make(map[uint32]entry), groups: make(map[uint32]entry)}
}

// User is the name of uid; "" when it has none.
func (n *Names) User(uid uint32) string { return n.lookup(n.users, uid, true) }

// Group is the name of gid; "" when it has none.
func (n *Names) Group(gid uint32) string { return n.lookup(n.groups, gid, false) }

func (n *Names) lookup(m map[uint32]entry, id uint32, isUser bool) string {
	now := time.Now()
	n.mu.Lock()
	e, ok := m[id]
	n.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.name
	}
	// Looked up without the lock: NSS may be slow, and other ids need not
	// wait for it.
	var name string
	sid := strconv.FormatUint(uint64(id), 10)
	if isUser {
		if u, err := user.LookupId(sid); err == nil {
			name = u.Username
		}
	} else if g, err := user.LookupGroupId(sid); err == nil {
		name = g.Name
	}
	n.mu.Lock()
	if len(m) >= maxEntries {
		clear(m)
	}
	m[id] = entry{name: name, expires: now.Add(ttl)}
	n.mu.Unlock()
	return name
}
