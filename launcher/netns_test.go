package launcher

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"
)

// 9. The multi-node scenarios with every node in its own network namespace
// (testdata/netns.sh). Runs when root and `ip netns` works; skipped otherwise.
func TestNetns(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("netns scenarios need root")
	}
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("netns scenarios need ip netns: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "testdata/netns.sh", bins["pirun"], bins["hello"], bins["sleeper"])
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 77 {
		t.Skip("netns.sh skipped itself")
	}
	if err != nil {
		t.Fatalf("netns.sh: %v", err)
	}
}
