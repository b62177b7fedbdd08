package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// BenchLaunch --quick works and prints BENCH.md's JSON lines.
func TestBenchLaunchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters")
	}
	var out, errOut syncBuffer
	err := BenchLaunch(context.Background(), BenchConfig{Quick: true, Runs: 1, Stdout: &out, Stderr: &errOut, ModuleDir: ".."})
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	t.Logf("\n%s", errOut.String())
	cases := map[string]BenchResult{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r BenchResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.Bench != "launch" || r.Value <= 0 || r.Runs != 1 || r.Better != "lower" {
			t.Errorf("result %+v", r)
		}
		cases[r.Case+"/"+strings.Trim(strings.ReplaceAll(sc.Text()[strings.Index(sc.Text(), "param"):strings.Index(sc.Text(), "metric")], "\"", ""), ":{},")] = r
	}
	if len(cases) != 5 {
		t.Fatalf("got %d results, want 5:\n%s", len(cases), out.String())
	}
	if r := cases["elastic-join/ranks:2"]; r.Value > 1000 {
		t.Errorf("elastic join took %.0f ms, target < 1000", r.Value)
	}
}
