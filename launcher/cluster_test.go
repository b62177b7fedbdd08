package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// 1. Embedded default: four rank-tagged lines, exit 0.
func TestEmbeddedHello(t *testing.T) {
	p := start(t, nil, "-n", "4", "--min", "2", bins["hello"])
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	lines := rankLines(p.stdout.String())
	for r := range 4 {
		want := fmt.Sprintf("hello from rank %d of 4 (incarnation 0", r)
		if len(lines[r]) != 1 || !strings.HasPrefix(lines[r][0], want) || !strings.HasSuffix(lines[r][0], "min 2)") {
			t.Errorf("rank %d printed %q, want one line starting %q", r, lines[r], want)
		}
	}
	if len(lines) != 4 {
		t.Errorf("got lines of ranks %v, want 0..3\n%s", lines, p.dump())
	}
	if !strings.Contains(p.stderr.String(), "[2] to stderr 2") {
		t.Errorf("rank stderr not forwarded with prefix:\n%s", p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "all 4 ranks exited 0") {
		t.Errorf("no summary:\n%s", p.stderr)
	}
}

// 2. Three nodes; a job of 6 ranks spreads over them. Also: status, the
// locator-based failure of an impossible request (5), and --report.
func TestThreeNodes(t *testing.T) {
	a := startNode(t, "", "--slots", "2", "--label", "rack=a")
	b := startNode(t, a.addr, "--slots", "2")
	c := startNode(t, a.addr, "--slots", "2")
	report := filepath.Join(t.TempDir(), "report.json")
	p := start(t, nil, "--join", a.addr, "-n", "6", "--report", report, "-x", "HELLO_EXTRA=yes", bins["hello"])
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	rep := readReport(t, report)
	per := map[string]int{}
	for _, r := range rep.Ranks {
		per[r.Node]++
		if r.Exit != 0 || r.State != "succeeded" || r.Wall <= 0 {
			t.Errorf("rank %+v", r)
		}
	}
	for _, n := range []*testNode{a, b, c} {
		if per[n.name] != 2 {
			t.Errorf("node %s ran %d ranks, want 2 (spread %v)", n.name, per[n.name], per)
		}
	}
	if got := strings.Count(p.stdout.String(), "extra yes"); got != 6 {
		t.Errorf("-x reached %d ranks, want 6", got)
	}

	t.Run("status", func(t *testing.T) {
		s := start(t, nil, "status", "--join", b.addr)
		if code := s.wait(20 * time.Second); code != 0 {
			t.Fatalf("exit %d\n%s", code, s.dump())
		}
		for _, want := range []string{a.name, b.name, c.name, "rack=a"} {
			if !strings.Contains(s.stdout.String(), want) {
				t.Errorf("status lacks %q:\n%s", want, s.stdout)
			}
		}
	})

	// 5. --mem larger than any node: fails at once, each node's reason printed.
	t.Run("mem too large", func(t *testing.T) {
		begin := time.Now()
		p := start(t, nil, "--join", a.addr, "-n", "2", "--mem", "64T", bins["hello"])
		code := p.wait(20 * time.Second)
		if code != 1 || time.Since(begin) > 10*time.Second {
			t.Fatalf("exit %d after %s, want 1 at once\n%s", code, time.Since(begin), p.dump())
		}
		for _, n := range []*testNode{a, b, c} {
			want := n.name + ": rank needs 64 TiB of memory, node has"
			if !strings.Contains(p.stderr.String(), want) {
				t.Errorf("stderr lacks %q\n%s", want, p.stderr)
			}
		}
		if strings.Contains(p.stdout.String(), "hello") {
			t.Error("a rank ran")
		}
	})
}

// 3. Elastic join: 4 ranks on 2 slots run 2; a node started mid-run takes
// the pending ranks and the job completes.
func TestElasticJoin(t *testing.T) {
	a := startNode(t, "", "--slots", "2")
	report := filepath.Join(t.TempDir(), "report.json")
	p := start(t, nil, "--join", a.addr, "-n", "4", "--report", report, "-x", "SLEEPER_NOCHILD=1", bins["sleeper"], "1500ms")
	waitFor(t, 20*time.Second, "2 running, 2 pending", func() bool {
		return strings.Contains(p.stderr.String(), "2/4 running, 2 pending: waiting for a node with 1 free slot")
	})
	if n := sleeping(p.stdout.String()); n > 2 {
		t.Fatalf("%d ranks started on 2 slots", n)
	}
	st := start(t, nil, "status", "--join", a.addr)
	if code := st.wait(20 * time.Second); code != 0 || strings.Count(st.stdout.String(), " sleeper") != 2 {
		t.Errorf("status during the job: exit %d\n%s", code, st.dump())
	}
	b := startNode(t, a.addr, "--slots", "2")
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	rep := readReport(t, report)
	onB := 0
	for _, r := range rep.Ranks {
		if r.Node == b.name {
			onB++
		}
	}
	if onB != 2 {
		t.Fatalf("new node ran %d ranks, want 2: %+v", onB, rep.Ranks)
	}
}

// 4. kill -9 of a node mid-run: its ranks restart elsewhere, the job completes.
func TestKillNode(t *testing.T) {
	a := startNode(t, "", "--slots", "2")
	b := startNode(t, a.addr, "--slots", "2")
	c := startNode(t, a.addr, "--slots", "2")
	report := filepath.Join(t.TempDir(), "report.json")
	p := start(t, nil, "--join", a.addr, "-n", "4", "-x", "SLEEPER_NOCHILD=1", "-x", "SLEEPER_ONLY_INC0=1",
		"--max-restarts", "2", "--report", report, bins["sleeper"], "3s")
	waitFor(t, 20*time.Second, "4 ranks sleeping", func() bool { return sleeping(p.stdout.String()) == 4 })
	first := sleepingLine.FindStringSubmatch(p.stdout.String())
	rank, _ := strconv.Atoi(first[1])
	pid, _ := strconv.Atoi(first[3])
	victimPid := parentOf(pid) // the node running that rank
	var victim *testNode
	for _, n := range []*testNode{a, b, c} {
		if n.cmd.Process.Pid == victimPid {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("rank 0's parent %d is not a node", victimPid)
	}
	victim.cmd.Process.Signal(syscall.SIGKILL)
	if code := p.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	rep := readReport(t, report)
	if r := rep.Ranks[rank]; r.Restarts != 1 || r.Node == victim.name || r.Incarnation != 1 {
		t.Fatalf("rank %d after the kill: %+v (victim %s)\n%s", rank, r, victim.name, p.dump())
	}
	if want := fmt.Sprintf("rank %d incarnation 1 done", rank); !strings.Contains(p.stdout.String(), want) {
		t.Fatalf("restarted rank did not see PIRUN_INCARNATION=1\n%s", p.dump())
	}
}

// 6. --time exceeded: stopped with a message and a non-zero exit; a rank
// exiting 3 makes pirun exit 3.
func TestTimeLimitAndExitStatus(t *testing.T) {
	p := start(t, nil, "-n", "1", "--time", "300ms", bins["sleeper"])
	code := p.wait(30 * time.Second)
	if code == 0 || !strings.Contains(p.stderr.String(), "time limit 300ms exceeded: terminated") {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	p = start(t, nil, "-n", "3", bins["exit3"])
	if code := p.wait(30 * time.Second); code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, p.dump())
	}
}

// The memory limit is enforced by watching the process group when cgroup v2
// is absent (this machine); with cgroup v2 the kernel enforces it.
func TestMemoryLimit(t *testing.T) {
	p := start(t, nil, "-n", "1", "--mem", "32M", bins["memhog"], "256")
	code := p.wait(30 * time.Second)
	if code == 0 || !strings.Contains(p.stderr.String(), "memory limit 32 MiB exceeded") {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
}

// 7. Ctrl-C: every rank ends, no process remains; a second one kills ranks
// that ignore the first.
func TestInterrupt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		sigs   int
		status int
	}{
		{"once", nil, 1, 130},
		{"twice", []string{"SLEEPER_IGNORE=1"}, 2, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.env, "-n", "2", bins["sleeper"])
			var pids []int
			waitFor(t, 20*time.Second, "2 ranks sleeping", func() bool {
				pids = sleepers(p.stdout.String())
				return len(pids) == 4
			})
			for i := range tc.sigs {
				p.cmd.Process.Signal(syscall.SIGINT)
				if i == 0 && tc.sigs > 1 {
					waitFor(t, 10*time.Second, "stopping message", func() bool {
						return strings.Contains(p.stderr.String(), "stopping ranks")
					})
				}
			}
			if code := p.wait(20 * time.Second); code != tc.status {
				t.Fatalf("exit %d, want %d\n%s", code, tc.status, p.dump())
			}
			waitFor(t, 5*time.Second, "rank processes to end", func() bool {
				for _, pid := range pids {
					if alive(pid) {
						return false
					}
				}
				return true
			})
		})
	}
}

// 8. A node without the cluster's key cannot join, and says so; a job with
// the key runs.
func TestClusterKey(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	otherKey := filepath.Join(dir, "other")
	os.WriteFile(otherKey, []byte("00112233445566778899aabbccddeeff\n"), 0o600)
	a := startNode(t, "", "--slots", "2", "--key-file", keyFile)
	for _, args := range [][]string{nil, {"--key-file", otherKey}} {
		p := start(t, nil, append([]string{"node", "--bind", "127.0.0.1:0", "--profile", "tuned", "--join", a.addr}, args...)...)
		if code := p.wait(20 * time.Second); code == 0 {
			t.Fatalf("node with key args %v joined an encrypted cluster", args)
		}
		if !strings.Contains(p.stderr.String(), "cluster is encrypted and this process has no key or the wrong key") {
			t.Errorf("unclear error:\n%s", p.dump())
		}
	}
	p := start(t, nil, "--join", a.addr, "-n", "1", bins["hello"])
	if code := p.wait(20 * time.Second); code != 1 || !strings.Contains(p.stderr.String(), "no key or the wrong key") {
		t.Fatalf("initiator without key: exit %d\n%s", code, p.dump())
	}
	p = start(t, []string{"PIRUN_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}, "--join", a.addr, "-n", "2", bins["hello"])
	if code := p.wait(20 * time.Second); code != 0 || len(rankLines(p.stdout.String())) != 2 {
		t.Fatalf("job with the key: exit %d\n%s", code, p.dump())
	}
}

// A directory holding a Go main package is built first; stdin reaches rank 0.
func TestProgramDirAndStdin(t *testing.T) {
	p := start(t, nil, "-n", "2", "./testdata/hello")
	if code := p.wait(120 * time.Second); code != 0 || len(rankLines(p.stdout.String())) != 2 {
		t.Fatalf("exit %d\n%s", code, p.dump())
	}
	p = &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = execPirun(t, "-n", "2", bins["echo"])
	p.cmd.Stdin = strings.NewReader("alpha\nbeta\n")
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, p.dump())
	}
	lines := rankLines(p.stdout.String())
	if strings.Join(lines[0], "|") != "echo: alpha|echo: beta" || len(lines[1]) != 0 {
		t.Fatalf("stdin forwarding: %v\n%s", lines, p.dump())
	}
}

// A node stopped gracefully (SIGTERM) leaves: its rank is restarted on
// another node and the node process exits 0.
func TestGracefulLeave(t *testing.T) {
	a := startNode(t, "", "--slots", "1")
	b := startNode(t, a.addr, "--slots", "1")
	p := start(t, nil, "--join", a.addr, "-n", "1", "-x", "SLEEPER_NOCHILD=1", "-x", "SLEEPER_ONLY_INC0=1", bins["sleeper"], "1h")
	waitFor(t, 20*time.Second, "the rank sleeping", func() bool { return sleeping(p.stdout.String()) == 1 })
	m := sleepingLine.FindStringSubmatch(p.stdout.String())
	pid, _ := strconv.Atoi(m[3])
	leaver := a
	if parentOf(pid) == b.cmd.Process.Pid {
		leaver = b
	}
	leaver.cmd.Process.Signal(syscall.SIGTERM)
	if code := leaver.wait(20 * time.Second); code != 0 || !strings.Contains(leaver.stderr.String(), "leaving") {
		t.Fatalf("node exit %d\n%s", code, leaver.dump())
	}
	if code := p.wait(30 * time.Second); code != 0 || !strings.Contains(p.stdout.String(), "rank 0 incarnation 1 done") {
		t.Fatalf("job exit %d\n%s", code, p.dump())
	}
}
