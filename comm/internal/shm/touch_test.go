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
