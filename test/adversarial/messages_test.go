package adversarial

import (
	"fmt"

	"github.com/interlock/interlock/test/adversarial/rawpg"
)

// Protocol messages the cases send, and reading the replies.

func q(sql string) rawpg.Msg           { return rawpg.Msg{T: "Q", SQL: sql} }
func qraw(b []byte) rawpg.Msg          { return rawpg.Msg{T: "Q", Raw: b} }
func parse(name, sql string) rawpg.Msg { return rawpg.Msg{T: "P", Name: name, SQL: sql} }
func parseRaw(name string, b []byte) rawpg.Msg {
	return rawpg.Msg{T: "P", Name: name, Raw: b}
}
func bind(portal, stmt string, params ...string) rawpg.Msg {
	m := rawpg.Msg{T: "B", Portal: portal, Name: stmt}
	for i := range params {
		p := params[i]
		m.Params = append(m.Params, &p)
	}
	return m
}
func execute(portal string, maxRows uint32) rawpg.Msg {
	return rawpg.Msg{T: "E", Portal: portal, MaxRows: maxRows}
}
func describeS(name string) rawpg.Msg   { return rawpg.Msg{T: "D", Kind: "S", Name: name} }
func describeP(portal string) rawpg.Msg { return rawpg.Msg{T: "D", Kind: "P", Portal: portal} }
func closeS(name string) rawpg.Msg      { return rawpg.Msg{T: "C", Kind: "S", Name: name} }
func closeP(portal string) rawpg.Msg    { return rawpg.Msg{T: "C", Kind: "P", Portal: portal} }
func syncMsg() rawpg.Msg                { return rawpg.Msg{T: "S"} }
func flush() rawpg.Msg                  { return rawpg.Msg{T: "H"} }

func withResultFormats(m rawpg.Msg, formats ...int16) rawpg.Msg {
	m.ResultFormat = formats
	return m
}

// extQuery is Parse/Bind/Describe/Execute of the unnamed statement.
func extQuery(sql string, params ...string) []rawpg.Msg {
	return []rawpg.Msg{parse("", sql), bind("", "", params...), describeP(""), execute("", 0)}
}

func join(parts ...any) []rawpg.Msg {
	var out []rawpg.Msg
	for _, p := range parts {
		switch v := p.(type) {
		case rawpg.Msg:
			out = append(out, v)
		case []rawpg.Msg:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("join: %T", p))
		}
	}
	return out
}

func rows(r rawpg.Reply) []string {
	var out []string
	for _, m := range r.Msgs {
		if m.T == "D" && len(m.Values) > 0 {
			if m.Values[0] == nil {
				out = append(out, "NULL")
			} else {
				out = append(out, *m.Values[0])
			}
		}
	}
	return out
}

// allValues returns every DataRow value of a reply.
func allValues(r rawpg.Reply) []string {
	var out []string
	for _, m := range r.Msgs {
		if m.T == "D" {
			for _, v := range m.Values {
				if v != nil {
					out = append(out, *v)
				}
			}
		}
	}
	return out
}

func tags(r rawpg.Reply) []string {
	var out []string
	for _, m := range r.Msgs {
		if m.T == "C" {
			out = append(out, m.Tag)
		}
	}
	return out
}
