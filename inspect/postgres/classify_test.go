package postgres

import (
	"strings"
	"testing"
)

func TestRenderValues(t *testing.T) {
	s, cut := render(23, true, []byte{0, 0, 1, 0}, 4)
	if s != "256" || cut {
		t.Errorf("int4: %q", s)
	}
	// numeric 12.3456 (base-10000 digits 12 and 0x0D80 = 3456) at dscale 2
	s, _ = render(1700, true, []byte{0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 128}, 12)
	if s != "12.35" {
		t.Errorf("numeric rendered %q, want 12.35", s)
	}
	s, cut = render(25, false, []byte(strings.Repeat("x", 2000)), 5000)
	if !cut || !strings.HasSuffix(s, "…[5000 bytes]") || len(s) > maxValue+32 {
		t.Errorf("cut value %q", s[len(s)-30:])
	}
}
