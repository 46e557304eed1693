package accounts

import (
	"os/user"
	"strconv"
	"testing"
)

func TestNames(t *testing.T) {
	n := NewNames()
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second answer comes from the cache
		if got := n.User(0); got != root.Username {
			t.Errorf("User(0) = %q, want %q", got, root.Username)
		}
	}
	g, err := user.LookupGroupId("0")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Group(0); got != g.Name {
		t.Errorf("Group(0) = %q, want %q", got, g.Name)
	}
	// An id nobody has: no name, and the miss is cached too.
	const none = 4_000_000_000
	if _, err := user.LookupId(strconv.Itoa(none)); err == nil {
		t.Fatalf("uid %d exists here", none)
	}
	if got := n.User(none); got != "" || len(n.users) != 2 {
		t.Errorf("User(%d) = %q, cache %v", none, got, n.users)
	}
}

func TestNamesBounded(t *testing.T) {
	n := NewNames()
	for id := range uint32(maxEntries + 10) {
		n.Group(4_000_000_000 + id)
	}
	if len(n.groups) > maxEntries {
		t.Errorf("%d cached groups, bound %d", len(n.groups), maxEntries)
	}
}
