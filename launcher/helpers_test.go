package launcher

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bins holds the programs TestMain builds: pirun and the rank programs.
var bins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pirun-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		targets := map[string]string{"pirun": "../cmd/pirun"}
		for _, p := range []string{"hello", "sleeper", "exit3", "memhog", "echo"} {
			targets[p] = "./testdata/" + p
		}
		for name, pkg := range targets {
			out := filepath.Join(dir, name)
			cmd := exec.Command("go", "build", "-o", out, pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
				return 1
			}
			bins[name] = out
		}
		return m.Run()
	}()
	os.Exit(code)
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a pirun process started by a test.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// start runs pirun with args; env entries are added to the environment.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bins["pirun"], args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
	})
	return p
}

func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PIRUN_") {
			env = append(env, e)
		}
	}
	return env
}

// wait waits for the process to exit and returns its status.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("pirun did not exit within %s\nstdout:\n%s\nstderr:\n%s", d, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) dump() string {
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
}

// testNode is a `pirun node` process.
type testNode struct {
	*proc
	name, addr string
}

var nodeLine = regexp.MustCompile(`pirun node (\S+): gossip (\S+) servent`)

// startNode starts a node on loopback with the tuned profile and waits for
// its address line.
func startNode(t testing.TB, join string, args ...string) *testNode {
	t.Helper()
	a := []string{"node", "--bind", "127.0.0.1:0", "--profile", "tuned", "--data", t.TempDir()}
	if join != "" {
		a = append(a, "--join", join)
	}
	p := start(t, nil, append(a, args...)...)
	var m []string
	waitFor(t, 15*time.Second, "node address", func() bool {
		select {
		case <-p.done:
			t.Fatalf("node exited: %v\n%s", p.err, p.dump())
		default:
		}
		m = nodeLine.FindStringSubmatch(p.stdout.String())
		return m != nil
	})
	return &testNode{proc: p, name: m[1], addr: m[2]}
}

// readReport loads a --report file.
func readReport(t testing.TB, path string) JobReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep JobReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// rankLines returns the "[r] ..." lines of out per rank.
func rankLines(out string) map[int][]string {
	m := map[int][]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		end := strings.IndexByte(line, ']')
		r, err := strconv.Atoi(line[1:max(end, 1)])
		if end < 0 || err != nil {
			continue
		}
		m[r] = append(m[r], line[end+2:])
	}
	return m
}

var sleepingLine = regexp.MustCompile(`sleeping rank (\d+) inc (\d+) pid (\d+) child (\d+)`)

// sleeping returns how many sleeper ranks reported they sleep.
func sleeping(out string) int { return len(sleepingLine.FindAllString(out, -1)) }

// sleepers returns the pids (rank and child) printed by sleeper ranks.
func sleepers(out string) (pids []int) {
	for _, m := range sleepingLine.FindAllStringSubmatch(out, -1) {
		for _, s := range m[3:] {
			if n, _ := strconv.Atoi(s); n > 0 {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// parentOf returns pid's parent from /proc.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

func execPirun(t testing.TB, args ...string) *exec.Cmd {
	cmd := exec.Command(bins["pirun"], args...)
	cmd.Env = cleanEnv()
	return cmd
}
