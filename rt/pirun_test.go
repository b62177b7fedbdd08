package rt_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// These tests run rank programs under the real pirun (embedded cluster,
// real processes, the comm layer over loopback).

func buildTool(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build %s: %v", pkg, err)
	}
	return out
}

func pirun(t *testing.T, pirunBin string, env []string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(pirunBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("pirun %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, o.String(), e.String())
	}
	return o.String(), e.String()
}

var finalLine = regexp.MustCompile(`rank \d+ final \S+`)

func finals(out string) []string {
	lines := finalLine.FindAllString(out, -1)
	slices.Sort(lines)
	return lines
}

// TestPirunHello: an rt program started by pirun -n 4 on the embedded default.
func TestPirunHello(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pirun")
	}
	dir := t.TempDir()
	bin := buildTool(t, dir, "github.com/pispace/pispace/cmd/pirun")
	hello := buildTool(t, dir, "github.com/pispace/pispace/examples/hello")
	out, _ := pirun(t, bin, nil, "-n", "4", hello)
	for r := range 4 {
		if !strings.Contains(out, "rank "+string(rune('0'+r))+": sum of ranks = 6") {
			t.Fatalf("rank %d did not report the allreduce:\n%s", r, out)
		}
	}
}

// TestPirunKilledRankRestores is the test 4: a rank killed with
// SIGKILL in the middle of a loop of Allreduce and checkpointed steps is
// restarted by pirun, restores, and every rank's final result is identical
// to a run with no fault.
func TestPirunKilledRankRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs pirun")
	}
	dir := t.TempDir()
	bin := buildTool(t, dir, "github.com/pispace/pispace/cmd/pirun")
	prog := buildTool(t, dir, "github.com/pispace/pispace/rt/testdata/ckptloop")
	clean, _ := pirun(t, bin, nil, "-n", "4", prog)
	want := finals(clean)
	if len(want) != 4 {
		t.Fatalf("fault-free run printed %d final lines:\n%s", len(want), clean)
	}
	faulty, stderr := pirun(t, bin, []string{"CKPTLOOP_KILL=2:13"}, "-n", "4", "--max-restarts", "2", prog)
	if !strings.Contains(stderr, "rank 2 incarnation 1 restored step 12") {
		t.Fatalf("rank 2 was not restarted from its checkpoint:\n%s", stderr)
	}
	if got := finals(faulty); !slices.Equal(got, want) {
		t.Fatalf("results after the fault differ:\n got %v\nwant %v", got, want)
	}
}
