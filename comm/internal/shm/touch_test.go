package shm

import "testing"

// withTouch makes touchSlow report the given slow for the rest of the test.
func withTouch(t *testing.T, slow bool) {
	t.Helper()
	touchSlow() // measured once, before the override
	old := touch.slow.Load()
	touch.slow.Store(slow)
	t.Cleanup(func() { touch.slow.Store(old) })
}

// TestTouchPolicy: PISPACE_SHM_TOUCH decides without measuring when it
// names a way, and the measurement decides otherwise.
func TestTouchPolicy(t *testing.T) {
	for _, c := range []struct {
		env      string
		measured bool
		want     bool
		measures bool
	}{
		{"map", true, false, false},
		{"syscall", false, true, false},
		{"", true, true, true},
		{"", false, false, true},
		{"bogus", true, true, true},
	} {
		measured := false
		got := touchPolicy(c.env, func() bool { measured = true; return c.measured })
		if got != c.want || measured != c.measures {
			t.Errorf("touchPolicy(%q) with a measurement saying %v = %v (measured %v), want %v (measured %v)",
				c.env, c.measured, got, measured, c.want, c.measures)
		}
	}
}
