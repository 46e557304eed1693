package policy

import (
	"os/user"
	"strconv"
	"sync"
	"time"
)

// nameCache maps uids and gids to names, for rules written with names.
// Entries live a minute: accounts are renamed rarely, but they are.
type nameCache struct {
	mu     sync.Mutex
	users  map[uint32]cachedName
	groups map[uint32]cachedName
}

type cachedName struct {
	name    string
	expires time.Time
}

var names = &nameCache{users: map[uint32]cachedName{}, groups: map[uint32]cachedName{}}

func (c *nameCache) user(id uint32) string  { return c.lookup(c.users, id, true) }
func (c *nameCache) group(id uint32) string { return c.lookup(c.groups, id, false) }

func (c *nameCache) lookup(m map[uint32]cachedName, id uint32, isUser bool) string {
	now := time.Now()
	c.mu.Lock()
	if e, ok := m[id]; ok && now.Before(e.expires) {
		c.mu.Unlock()
		return e.name
	}
	c.mu.Unlock()
	name := ""
	if isUser {
		if u, err := user.LookupId(strconv.FormatUint(uint64(id), 10)); err == nil {
			name = u.Username
		}
	} else if g, err := user.LookupGroupId(strconv.FormatUint(uint64(id), 10)); err == nil {
		name = g.Name
	}
	c.mu.Lock()
	m[id] = cachedName{name: name, expires: now.Add(time.Minute)}
	c.mu.Unlock()
	return name
}
