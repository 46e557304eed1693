package server

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/interlock/interlock/control/controlapi"
	"github.com/interlock/interlock/engine"
)

// TestLiveSessionsCarryEveryField ties the engine's LiveSession to the
// wire's: liveSessions copies field by field (the engine's has private
// state, so no struct conversion), and a field added on one side only
// would silently vanish from `status`.
func TestLiveSessionsCarryEveryField(t *testing.T) {
	et, wt := reflect.TypeOf(engine.LiveSession{}), reflect.TypeOf(controlapi.LiveSession{})
	var exported int
	for i := range et.NumField() {
		f := et.Field(i)
		if !f.IsExported() {
			continue
		}
		exported++
		w, ok := wt.FieldByName(f.Name)
		if !ok {
			t.Errorf("controlapi.LiveSession has no %s", f.Name)
			continue
		}
		if w.Type != f.Type || w.Tag.Get("json") != f.Tag.Get("json") {
			t.Errorf("%s: engine has %s `%s`, the wire %s `%s`", f.Name, f.Type, f.Tag, w.Type, w.Tag)
		}
	}
	if exported != wt.NumField() {
		t.Errorf("engine.LiveSession has %d exported fields, controlapi.LiveSession %d", exported, wt.NumField())
	}

	in := engine.LiveSession{
		ID: "s1", Target: "db", OrigDst: netip.MustParseAddrPort("10.0.0.1:5432"), PID: 42, UID: 1000,
		Exe: "/usr/bin/psql", Cgroup: "/ci/job", Started: time.Unix(1700000000, 0).UTC(),
	}
	got := liveSessions([]engine.LiveSession{in})
	want, _ := json.Marshal([]engine.LiveSession{in})
	if b, _ := json.Marshal(got); string(b) != string(want) {
		t.Errorf("converted session:\n got %s\nwant %s", b, want)
	}
}

// TestEmptyListsAreArrays: no live sessions and no pending requests are []
// in the JSON, as they were before the wire types had their own package;
// a script doing `.live | length` must not meet null.
func TestEmptyListsAreArrays(t *testing.T) {
	for name, v := range map[string]any{"live": liveSessions(nil), "pending": pendingList(nil)} {
		if b, _ := json.Marshal(v); string(b) != "[]" {
			t.Errorf("%s: empty list is %s, want []", name, b)
		}
	}
}
