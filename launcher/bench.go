package launcher

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pispace/pispace/internal/benchfmt"
)

// BenchConfig configures BenchLaunch.
type BenchConfig struct {
	Quick  bool      // a few seconds: one warm-up and 2 counted runs per case
	Runs   int       // counted runs per case; 0 means 7 (2 with Quick)
	Stdout io.Writer // one JSON object per line (BENCH.md)
	Stderr io.Writer // the human table and notes
	// ModuleDir is the pispace module root, where cmd/pirun is built; ""
	// means the current directory.
	ModuleDir string
}

// BenchResult is one line of BENCH.md's JSON output.
type BenchResult = benchfmt.Result

// benchRankSource is the rank program of the benchmark: it prints its rank
// and, given a duration argument, sleeps that long first.
const benchRankSource = `package main

import (
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		d, _ := time.ParseDuration(os.Args[1])
		time.Sleep(d)
	}
	fmt.Printf("hello from rank %s of %s\n", os.Getenv("PIRUN_RANK"), os.Getenv("PIRUN_SIZE"))
}
`

// benchMPISource is the C baseline, compiled at run time with mpicc.
const benchMPISource = `#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
	int rank, size;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	printf("hello from rank %d of %d\n", rank, size);
	MPI_Finalize();
	return 0;
}
`

// BenchLaunch measures launching: the wall time of `pirun -n N` (N = 1, 4,
// 16) of a hello program on the embedded default against `mpirun -n N` of a
// C hello when Open MPI is installed; the elastic-join latency (a node's join
// completing -> a pending rank running on it); and failover (kill -9 of the
// node running a rank -> the rank running elsewhere, tuned profile).
func BenchLaunch(ctx context.Context, cfg BenchConfig) error {
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.Runs <= 0 {
		cfg.Runs = 7
		if cfg.Quick {
			cfg.Runs = 2
		}
	}
	dir, err := os.MkdirTemp("", "pirun-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{cfg: cfg, dir: dir}
	if err := b.build(ctx); err != nil {
		return err
	}
	var results []BenchResult
	for _, n := range []int{1, 4, 16} {
		r, err := b.launch(ctx, n)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	for _, f := range []func(context.Context) (BenchResult, error){b.elastic, b.failover} {
		r, err := f(ctx)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	return b.print(results)
}

type bench struct {
	cfg   BenchConfig
	dir   string
	pirun string
	rank  string
	mpi   []string // mpirun command prefix and binary, nil without Open MPI
}

func (b *bench) build(ctx context.Context) error {
	b.pirun = filepath.Join(b.dir, "pirun")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.pirun, "github.com/pispace/pispace/cmd/pirun")
	cmd.Dir = b.cfg.ModuleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("launcher: bench: build pirun: %v\n%s", err, out)
	}
	src := filepath.Join(b.dir, "rank")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module benchrank\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(benchRankSource), 0o644)
	b.rank = filepath.Join(b.dir, "hello")
	cmd = exec.CommandContext(ctx, "go", "build", "-o", b.rank, ".")
	cmd.Dir, cmd.Env = src, append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("launcher: bench: build rank program: %v\n%s", err, out)
	}
	b.mpi = b.buildMPI(ctx)
	return nil
}

// buildMPI compiles the C baseline, or says why there is none.
func (b *bench) buildMPI(ctx context.Context) []string {
	mpirun, err1 := exec.LookPath("mpirun")
	mpicc, err2 := exec.LookPath("mpicc")
	if err1 != nil || err2 != nil {
		fmt.Fprintln(b.cfg.Stderr, "bench launch: Open MPI (mpirun, mpicc) not installed: no mpirun baseline")
		return nil
	}
	src := filepath.Join(b.dir, "hello.c")
	os.WriteFile(src, []byte(benchMPISource), 0o644)
	bin := filepath.Join(b.dir, "hello_mpi")
	if out, err := exec.CommandContext(ctx, mpicc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		fmt.Fprintf(b.cfg.Stderr, "bench launch: mpicc failed, no mpirun baseline: %v\n%s", err, out)
		return nil
	}
	args := []string{mpirun, "--oversubscribe"}
	if os.Getuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	return append(args, bin)
}

// timeRun returns the wall time of one command from start to exit.
func timeRun(ctx context.Context, argv ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cleanBenchEnv()
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("launcher: bench: %v: %v\n%s", argv, err, out)
	}
	return time.Since(begin), nil
}

func cleanBenchEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PIRUN_") {
			env = append(env, e)
		}
	}
	return env
}

// launch times pirun -n n against mpirun -n n, interleaved.
func (b *bench) launch(ctx context.Context, n int) (BenchResult, error) {
	var pi, mpi []float64
	for i := -1; i < b.cfg.Runs; i++ { // run -1 is the warm-up
		d, err := timeRun(ctx, b.pirun, "-n", strconv.Itoa(n), b.rank)
		if err != nil {
			return BenchResult{}, err
		}
		var md time.Duration
		if b.mpi != nil {
			argv := append(slices.Clone(b.mpi[:len(b.mpi)-1]), "-n", strconv.Itoa(n), b.mpi[len(b.mpi)-1])
			if md, err = timeRun(ctx, argv...); err != nil {
				return BenchResult{}, err
			}
		}
		if i >= 0 {
			pi = append(pi, d.Seconds())
			if b.mpi != nil {
				mpi = append(mpi, md.Seconds())
			}
		}
	}
	r := summarize("launch", "pirun", map[string]any{"ranks": n}, "s", pi)
	return r.Against("mpirun", mpi), nil
}

// elastic: a job of 2 ranks on a 1-slot node; a second node joins while
// rank 1 is pending; measured from the join completing to rank 1 running.
func (b *bench) elastic(ctx context.Context) (BenchResult, error) {
	ms, err := b.repeatMS(ctx, b.elasticOnce)
	if err != nil {
		return BenchResult{}, err
	}
	return summarize("launch", "elastic-join", map[string]any{"ranks": 2}, "ms", ms), nil
}

// repeatMS runs once for a warm-up and then cfg.Runs times, and returns the
// counted durations in milliseconds.
func (b *bench) repeatMS(ctx context.Context, once func(context.Context) (time.Duration, error)) ([]float64, error) {
	var ms []float64
	for i := -1; i < b.cfg.Runs; i++ { // run -1 is the warm-up
		d, err := once(ctx)
		if err != nil {
			return nil, err
		}
		if i >= 0 {
			ms = append(ms, float64(d)/float64(time.Millisecond))
		}
	}
	return ms, nil
}

func (b *bench) elasticOnce(ctx context.Context) (time.Duration, error) {
	a, err := StartNode(ctx, NodeConfig{Bind: "127.0.0.1:0", Slots: 1, Profile: ProfileTuned})
	if err != nil {
		return 0, err
	}
	defer a.Kill()
	running := make(chan int, 4)
	jobErr := make(chan error, 1)
	go func() {
		rep, err := Run(ctx, RunConfig{Size: 2, Join: []string{a.Addr()}, Program: b.rank, Args: []string{"300ms"},
			Hooks: Hooks{RankRunning: func(rank, _ int, _ string) { running <- rank }}})
		if err == nil && rep.Status != 0 {
			err = fmt.Errorf("launcher: bench: elastic job exited %d: %s", rep.Status, rep.Reason)
		}
		jobErr <- err
	}()
	if err := waitRank(ctx, running, jobErr, 0); err != nil {
		return 0, err
	}
	nb, err := StartNode(ctx, NodeConfig{Bind: "127.0.0.1:0", Slots: 1, Profile: ProfileTuned, Join: []string{a.Addr()}})
	if err != nil {
		return 0, err
	}
	defer nb.Kill()
	joined := time.Now()
	if err := waitRank(ctx, running, jobErr, 1); err != nil {
		return 0, err
	}
	d := time.Since(joined)
	return d, <-jobErr
}

// waitRank waits until rank reports running, the job ends, or 30 s pass.
func waitRank(ctx context.Context, running <-chan int, jobErr <-chan error, rank int) error {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case r := <-running:
			if r == rank {
				return nil
			}
		case err := <-jobErr:
			return fmt.Errorf("launcher: bench: job ended before rank %d ran: %v", rank, err)
		case <-timeout:
			return fmt.Errorf("launcher: bench: rank %d did not run within 30 s", rank)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// failover: three node processes (tuned profile); kill -9 of the one running
// the rank; measured from the kill to the rank's next incarnation running.
func (b *bench) failover(ctx context.Context) (BenchResult, error) {
	ms, err := b.repeatMS(ctx, b.failoverOnce)
	if err != nil {
		return BenchResult{}, err
	}
	return summarize("launch", "failover", map[string]any{"ranks": 1}, "ms", ms), nil
}

type benchNode struct {
	cmd  *exec.Cmd
	name string
	addr string
}

var benchNodeLine = regexp.MustCompile(`pirun node (\S+): gossip (\S+) servent`)

func (b *bench) startNodeProc(ctx context.Context, join string) (*benchNode, error) {
	data, err := os.MkdirTemp(b.dir, "node-")
	if err != nil {
		return nil, err
	}
	args := []string{"node", "--bind", "127.0.0.1:0", "--profile", "tuned", "--slots", "1", "--data", data}
	if join != "" {
		args = append(args, "--join", join)
	}
	cmd := exec.CommandContext(ctx, b.pirun, args...)
	cmd.Env = cleanBenchEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make([]byte, 512)
	n, _ := io.ReadAtLeast(out, line, 1)
	m := benchNodeLine.FindStringSubmatch(string(line[:n]))
	if m == nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("launcher: bench: node did not start: %q", line[:n])
	}
	return &benchNode{cmd: cmd, name: m[1], addr: m[2]}, nil
}

func (b *bench) failoverOnce(ctx context.Context) (time.Duration, error) {
	var nodes []*benchNode
	defer func() {
		for _, n := range nodes {
			n.cmd.Process.Kill()
			n.cmd.Wait()
		}
	}()
	for i := range 3 {
		join := ""
		if i > 0 {
			join = nodes[0].addr
		}
		n, err := b.startNodeProc(ctx, join)
		if err != nil {
			return 0, err
		}
		nodes = append(nodes, n)
	}
	type up struct {
		inc  int
		node string
	}
	running := make(chan up, 4)
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Run(jctx, RunConfig{Size: 1, MaxRestarts: 1, Join: []string{nodes[0].addr, nodes[1].addr},
			Program: b.rank, Args: []string{"1h"},
			Hooks: Hooks{RankRunning: func(_, inc int, node string) { running <- up{inc, node} }}})
		done <- err
	}()
	var first up
	select {
	case first = <-running:
	case err := <-done:
		return 0, fmt.Errorf("launcher: bench: failover job ended early: %v", err)
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("launcher: bench: failover rank did not start")
	}
	var killed time.Time
	for _, n := range nodes {
		if n.name == first.node {
			killed = time.Now()
			n.cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	var d time.Duration
	select {
	case <-running:
		d = time.Since(killed)
	case err := <-done:
		return 0, fmt.Errorf("launcher: bench: failover job ended before the restart: %v", err)
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("launcher: bench: rank not restarted within 30 s")
	}
	cancel()
	<-done
	return d, nil
}

func summarize(benchName, c string, param map[string]any, metric string, xs []float64) BenchResult {
	return benchfmt.Measure(benchName, c, param, metric, "lower", xs)
}

func (b *bench) print(rs []BenchResult) error {
	for _, r := range rs {
		if err := benchfmt.Write(b.cfg.Stdout, b.cfg.Stderr, r); err != nil {
			return err
		}
	}
	return nil
}
