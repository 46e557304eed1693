package kubernetes

import (
	"net/url"
	"testing"
)

// The ports policy judged come from the query alone: a port named twice
// or in both forms is one port, and a query that names a bad port is not
// taken as naming none (which would admit any port).
func TestJudgedPorts(t *testing.T) {
	for _, c := range []struct {
		query, text string
		ports       []int32
		bad         bool
	}{
		{query: "", text: "ports: any"},
		{query: "ports=8080", text: "ports: 8080", ports: []int32{8080}},
		{query: "ports=443,80&ports=80", text: "ports: 80,443", ports: []int32{80, 443}},
		{query: "ports=0", text: "ports: invalid", bad: true},
		{query: "ports=", text: "ports: invalid", bad: true},
		{query: "ports=70000", text: "ports: invalid", bad: true},
		{query: "ports=80,x", text: "ports: invalid", bad: true},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := judgedPorts(q)
		if (err != nil) != c.bad {
			t.Errorf("%q: err %v", c.query, err)
		}
		if len(got) != len(c.ports) {
			t.Errorf("%q: ports %v, want %v", c.query, got, c.ports)
		}
		for _, p := range c.ports {
			if !got[p] {
				t.Errorf("%q: ports %v lack %d", c.query, got, p)
			}
		}
		if s := portsText(q); s != c.text {
			t.Errorf("%q: text %q, want %q", c.query, s, c.text)
		}
	}
}
