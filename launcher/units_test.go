package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "1K": 1024, "512M": 512 << 20, "512MiB": 512 << 20,
		"1.5G": 3 << 29, "2gb": 2 << 30, "1T": 1 << 40} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1M", "5Q", "1e400"} {
		if _, err := ParseSize(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseSize(%q) = %v, want ErrUsage", bad, err)
		}
	}
}

func TestExportEnvAndLabels(t *testing.T) {
	env := exportEnv([]string{"A=1", "B", "MISSING"}, func(k string) (string, bool) {
		if k == "B" {
			return "two", true
		}
		return "", false
	})
	if strings.Join(env, " ") != "A=1 B=two" {
		t.Fatalf("exportEnv = %v", env)
	}
	m, err := parseLabels([]string{"rack=a", "gpu="})
	if err != nil || m["rack"] != "a" || m["gpu"] != "" {
		t.Fatalf("parseLabels = %v, %v", m, err)
	}
	if _, err := parseLabels([]string{"novalue"}); !errors.Is(err, ErrUsage) {
		t.Fatalf("bad label accepted: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	for _, in := range []string{"MDEyMzQ1Njc4OWFiY2RlZg==\n", "00112233445566778899aabbccddeeff"} {
		if k, err := ParseKey(in); err != nil || len(k) != 16 {
			t.Errorf("ParseKey(%q) = %d bytes, %v", in, len(k), err)
		}
	}
	for _, bad := range []string{"short", "0011"} {
		if _, err := ParseKey(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseKey(%q) = %v, want ErrUsage", bad, err)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	info := NodeInfo{Role: roleNode, Slots: 4, FreeSlots: 3, Mem: 8 << 30, FreeMem: 7 << 30, MaxTime: time.Minute,
		Seq: 9, Servent: "0.0.0.0:4000", Comm: "0.0.0.0:4001", Labels: map[string]string{"rack": "a"}}
	b, err := encodeMeta(info)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := decodeMember(&memberlist.Node{Name: "n1", Addr: []byte{10, 0, 0, 7}, Port: 7946, Meta: b})
	if !ok || got.Servent != "10.0.0.7:4000" || got.Comm != "10.0.0.7:4001" || got.Addr != "10.0.0.7:7946" ||
		got.FreeSlots != 3 || got.MaxTime != time.Minute || got.Seq != 9 || got.Labels["rack"] != "a" {
		t.Fatalf("decoded %+v", got)
	}
	info.Labels = map[string]string{"big": strings.Repeat("x", 600)}
	if _, err := encodeMeta(info); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversized metadata: %v", err)
	}
	if _, ok := decodeMember(&memberlist.Node{Meta: []byte("junk")}); ok {
		t.Fatal("decoded foreign metadata")
	}
}

func runSpec(t *testing.T, spec rankSpec) (RankResult, string) {
	t.Helper()
	spec.Env = append(os.Environ(), spec.Env...)
	spec.Grace = cmpOr(spec.Grace, time.Second)
	spec.Poll = cmpOr(spec.Poll, 20*time.Millisecond)
	p, err := startRank(spec)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	emit := func(b []byte) error { out.Write(b); return nil }
	return p.wait(context.Background(), emit, emit), out.String()
}

func TestRankExitStatusAndLines(t *testing.T) {
	res, out := runSpec(t, rankSpec{Path: bins["exit3"], Args: []string{"exit3"}, Env: []string{"PIRUN_RANK=1"}})
	if res.Kind != kindExit || res.Status != 3 || !strings.Contains(out, "rank 1 exits 3") {
		t.Fatalf("result %+v output %q", res, out)
	}
	if _, err := startRank(rankSpec{Path: "/nonexistent", Args: []string{"x"}}); err == nil {
		t.Fatal("started a missing program")
	}
}

func TestRankTimeLimitKillsGroup(t *testing.T) {
	res, out := runSpec(t, rankSpec{Path: bins["sleeper"], Args: []string{"sleeper"}, Env: []string{"SLEEPER_IGNORE=1", "PIRUN_RANK=0", "PIRUN_INCARNATION=0"},
		TimeLimit: 200 * time.Millisecond, Grace: 200 * time.Millisecond})
	if res.Kind != kindTime || res.Status != 137 || !strings.Contains(res.Reason, "killed 200ms after SIGTERM") {
		t.Fatalf("result %+v", res)
	}
	pids := sleepers(out)
	if len(pids) != 2 {
		t.Fatalf("output %q", out)
	}
	waitFor(t, 5*time.Second, "the rank's child to die with its group", func() bool { return !alive(pids[1]) })
}

func TestRankMemoryWatchFallback(t *testing.T) {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		t.Log("cgroup v2 present: the kernel may enforce instead of the watch")
	}
	res, _ := runSpec(t, rankSpec{Path: bins["memhog"], Args: []string{"memhog", "200"}, MemLimit: 50 << 20})
	if res.Kind != kindMemory || !strings.Contains(res.Reason, "memory limit 50 MiB exceeded") || res.PeakMem < 50<<20 {
		t.Fatalf("result %+v", res)
	}
	if vmField(os.Getpid(), "VmRSS:") <= 0 {
		t.Fatal("VmRSS of this process not read")
	}
}

// The cgroup v2 path against a fake hierarchy (this machine has no cgroup
// v2): a leaf is made only where the memory controller is delegated, gets
// memory.max, and reports memory.peak and OOM kills.
func TestCgroupFake(t *testing.T) {
	root := t.TempDir()
	oldRoot, oldSelf := cgroupRoot, selfCgroup
	t.Cleanup(func() { cgroupRoot, selfCgroup = oldRoot, oldSelf })
	cgroupRoot, selfCgroup = root, filepath.Join(root, "self")
	if newCgroup("x", 1<<20) != nil {
		t.Fatal("cgroup made without cgroup.controllers")
	}
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory"), 0o644)
	os.WriteFile(selfCgroup, []byte("0::/svc\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "svc"), 0o755)
	os.WriteFile(filepath.Join(root, "svc", "cgroup.subtree_control"), []byte("cpu"), 0o644)
	if newCgroup("x", 1<<20) != nil {
		t.Fatal("cgroup made without the memory controller delegated")
	}
	os.WriteFile(filepath.Join(root, "svc", "cgroup.subtree_control"), []byte("cpu memory"), 0o644)
	cg := newCgroup("job-0-0", 64<<20)
	if !cg.active() {
		t.Fatal("no cgroup with memory delegated")
	}
	dir := filepath.Join(root, "svc", "pirun-job-0-0")
	if b, _ := os.ReadFile(filepath.Join(dir, "memory.max")); string(b) != "67108864" {
		t.Fatalf("memory.max = %q", b)
	}
	var attr syscall.SysProcAttr
	cg.apply(&attr)
	if !attr.UseCgroupFD || attr.CgroupFD <= 0 {
		t.Fatalf("SysProcAttr not set: %+v", attr)
	}
	os.WriteFile(filepath.Join(dir, "memory.peak"), []byte("12345\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\noom 1\noom_kill 1\n"), 0o644)
	if cg.peak() != 12345 || !cg.oomKilled() {
		t.Fatalf("peak %d oom %v", cg.peak(), cg.oomKilled())
	}
	os.Remove(filepath.Join(dir, "memory.peak"))
	os.Remove(filepath.Join(dir, "memory.events"))
	os.Remove(filepath.Join(dir, "memory.max"))
	cg.remove()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("leaf not removed: %v", err)
	}
	var none *cgroup
	if none.active() || none.peak() != 0 || none.oomKilled() {
		t.Fatal("nil cgroup is not inactive")
	}
	none.remove()
}
