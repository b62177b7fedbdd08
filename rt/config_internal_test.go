package rt

import (
	"errors"
	"slices"
	"testing"
)

// TestEnvConfig: the environment pirun gives a rank becomes its Config;
// only PIRUN_MAX_RESTARTS=0 lets the rank trim what it consumed (a rank
// that may be restarted, or whose launcher says nothing, keeps every byte).
func TestEnvConfig(t *testing.T) {
	base := map[string]string{
		"PIRUN_JOB": "j1", "PIRUN_RANK": "2", "PIRUN_SIZE": "4", "PIRUN_INCARNATION": "1",
		"PIRUN_MIN": "3", "PIRUN_COMM": "10.0.0.1:7000, 10.0.0.2:7000", "PIRUN_SPACE": "job/j1",
	}
	for _, c := range []struct {
		restarts string
		trim     bool
	}{{"", false}, {"3", false}, {"0", true}} {
		env := func(k string) string {
			if k == "PIRUN_MAX_RESTARTS" {
				return c.restarts
			}
			return base[k]
		}
		cfg, addrs, space, err := envConfig(env)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Rank != 2 || cfg.Size != 4 || cfg.Incarnation != 1 || cfg.Min != 3 || cfg.Job != "j1" ||
			cfg.TrimConsumed != c.trim || space != "job/j1" ||
			!slices.Equal(addrs, []string{"10.0.0.1:7000", "10.0.0.2:7000"}) {
			t.Fatalf("PIRUN_MAX_RESTARTS=%q: %+v %v %q", c.restarts, cfg, addrs, space)
		}
	}
	bad := func(k string) string {
		if k == "PIRUN_RANK" {
			return "two"
		}
		return base[k]
	}
	if _, _, _, err := envConfig(bad); !errors.Is(err, ErrEnv) {
		t.Fatalf("PIRUN_RANK=two: %v", err)
	}
}
