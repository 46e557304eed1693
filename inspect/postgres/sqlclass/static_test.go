package sqlclass

import "testing"

// TestEveryImpureBuiltinHasAKind: a built-in with effects either adds the
// kind of statement that does the same, so that an allow rule for select
// does not cover it, or is listed with a reason in noEffectKind. A name
// added to one list and not the other fails here.
func TestEveryImpureBuiltinHasAKind(t *testing.T) {
	for name := range impureBuiltins {
		_, kinded := effectKinds[name]
		if kinded == noEffectKind[name] {
			t.Errorf("%s: effect kind %v, listed as having none %v: want exactly one", name, kinded, noEffectKind[name])
		}
	}
	for name := range effectKinds {
		if !impureBuiltins[name] {
			t.Errorf("%s has an effect kind but is not an impure built-in", name)
		}
	}
	for name := range noEffectKind {
		if !impureBuiltins[name] {
			t.Errorf("%s is listed as having no effect kind but is not an impure built-in", name)
		}
	}
}
