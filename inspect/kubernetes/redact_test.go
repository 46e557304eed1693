package kubernetes

import "testing"

func TestRedactCommandQuery(t *testing.T) {
	for _, c := range []struct {
		in, want string
		n        int
	}{
		{"command=psql&command=postgresql%3A%2F%2Fu%3Apw%40db%2Fapp&container=c&stdout=true",
			"command=psql&command=postgresql%3A%2F%2Fu%3A%5Bredacted%5D%40db%2Fapp&container=c&stdout=true", 1},
		{"command=mysql&command=-pS&command=app", "command=mysql&command=-p%5Bredacted%5D&command=app", 1},
		{"command=sh&command=-c&command=PGPASSWORD%3Dx+psql", "command=sh&command=-c&command=PGPASSWORD%3D%5Bredacted%5D+psql", 1},
		{"command=ls&command=-la&stdout=1", "command=ls&command=-la&stdout=1", 0},
		{"command=kubectl&command=--token&command=%zz", "command=kubectl&command=--token&command=%5Bredacted%5D", 1},
		{"", "", 0},
		{"watch=true&resourceVersion=1", "watch=true&resourceVersion=1", 0},
	} {
		got, n := redactCommandQuery(c.in)
		if got != c.want || n != c.n {
			t.Errorf("redactCommandQuery(%q)\n got %q, %d\nwant %q, %d", c.in, got, n, c.want, c.n)
		}
	}
}
