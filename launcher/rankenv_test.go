package launcher

import (
	"slices"
	"testing"
)

// TestRankEnv: the environment contract between pirun and a rank, the
// -x variables last so that they are what the rank sees.
func TestRankEnv(t *testing.T) {
	c := ctl{Job: "j", Rank: 1, Size: 4, Incarnation: 2, Min: 0, MaxRestarts: 0, Comm: "a:1", Space: "job/j",
		Env: []string{"FOO=bar"}}
	got := rankEnv([]string{"HOME=/root"}, c, 0)
	want := []string{"HOME=/root", "PIRUN_JOB=j", "PIRUN_RANK=1", "PIRUN_SIZE=4", "PIRUN_INCARNATION=2",
		"PIRUN_MIN=4", "PIRUN_MAX_RESTARTS=0", "PIRUN_COMM=a:1", "PIRUN_SPACE=job/j", "FOO=bar"}
	if !slices.Equal(got, want) {
		t.Fatalf("rankEnv =\n%q\nwant\n%q", got, want)
	}
	c.MaxRestarts = 3
	if !slices.Contains(rankEnv(nil, c, 0), "PIRUN_MAX_RESTARTS=3") {
		t.Fatal("PIRUN_MAX_RESTARTS does not follow the job's --max-restarts")
	}
	if got := rankEnv([]string{"HOME=/root"}, c, 1); !slices.Contains(got, "GOMAXPROCS=1") {
		t.Fatalf("rankEnv with one P per rank: %q lacks GOMAXPROCS=1", got)
	}
	if got := rankEnv([]string{"GOMAXPROCS=3"}, c, 1); slices.Contains(got, "GOMAXPROCS=1") {
		t.Fatalf("rankEnv overrides the GOMAXPROCS pirun was given: %q", got)
	}
}

// TestRankProcs: one P per rank only where a node has more rank slots
// than processors.
func TestRankProcs(t *testing.T) {
	for _, c := range []struct{ slots, cpus, want int }{{4, 2, 1}, {2, 2, 0}, {1, 8, 0}, {16, 8, 1}} {
		if got := rankProcs(c.slots, c.cpus); got != c.want {
			t.Errorf("rankProcs(%d slots, %d cpus) = %d, want %d", c.slots, c.cpus, got, c.want)
		}
	}
}
