package rt

import "testing"

// TestCommConfigSpin: comm's busy-polling reads stay on while every rank
// can have a core, and are turned off when ranks outnumber cores.
func TestCommConfigSpin(t *testing.T) {
	addrs := []string{"127.0.0.1:1"}
	for _, tc := range []struct {
		size, cpus int
		off        bool
	}{{1, 2, false}, {2, 2, false}, {3, 2, true}, {4, 2, true}, {64, 64, false}} {
		cfg := commConfig(addrs, tc.size, tc.cpus)
		if off := cfg.SpinRead < 0; off != tc.off {
			t.Errorf("%d ranks on %d cores: SpinRead %v", tc.size, tc.cpus, cfg.SpinRead)
		}
		if len(cfg.Servers) != 1 || cfg.Servers[0] != addrs[0] {
			t.Errorf("servers %v", cfg.Servers)
		}
	}
}
