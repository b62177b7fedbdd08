package launcher

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Run in-process on the embedded cluster: the report, the output, and no
// goroutine left behind once it returns.
func TestRunInProcess(t *testing.T) {
	before := runtime.NumGoroutine()
	var out, errOut syncBuffer
	var running []int
	rep, err := Run(context.Background(), RunConfig{Size: 3, Program: bins["hello"], Stdout: &out, Stderr: &errOut,
		Embedded: EmbeddedConfig{Nodes: 2},
		Hooks:    Hooks{RankRunning: func(rank, _ int, _ string) { running = append(running, rank) }}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != 0 || len(rep.Ranks) != 3 || len(running) != 3 {
		t.Fatalf("report %+v, running hooks %v", rep, running)
	}
	nodes := map[string]bool{}
	for _, r := range rep.Ranks {
		nodes[r.Node] = true
		if r.State != "succeeded" || r.Wall <= 0 {
			t.Errorf("rank %+v", r)
		}
	}
	if len(nodes) != 2 {
		t.Errorf("3 ranks on an embedded cluster of 2 nodes used %d nodes", len(nodes))
	}
	if got := len(rankLines(out.String())); got != 3 {
		t.Fatalf("%d ranks printed\n%s", got, out.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines before Run, %d after:\n%s", before, n, firstStacks(string(buf), 40))
	}
}

func firstStacks(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[:min(lines, len(l))], "\n")
}
