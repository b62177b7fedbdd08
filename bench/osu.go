package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The osu benchmark takes OSU-style measurements of the rank runtime
// (latency, streaming bandwidth, Allreduce, Barrier) against Open MPI over
// TCP in the same run. Both sides run every case of one rank count in one
// launch: pirun -n N osurank CASE... (bench/osurank) and mpirun -n N osu
// CASE... (bench/osu/osu.c, compiled here with mpicc), alternately, one
// warm-up round then the counted rounds. Each program times its own loop
// after warm-up iterations and prints one line per case from rank 0.

//go:embed osu/osu.c
var osuSource []byte

// osuBaseline names the baseline in the JSON output; osuSM is the second
// reference, Open MPI with its shared-memory transport (vader), which is
// what Open MPI uses between processes of one host by default. pispace
// uses Unix sockets there (see docs/ARCHITECTURE.md), so each case is
// also reported against it, as "KIND-vs-sm".
const (
	osuBaseline = "openmpi-tcp"
	osuSM       = "openmpi-sm"
)

// osuCase is one measurement: KIND:PARAM:ITERS:WARMUP on both sides.
type osuCase struct {
	kind          string // lat, bw, allreduce, barrier
	param         int    // bytes (lat, bw) or float64 count (allreduce)
	iters, warmup int
}

func (c osuCase) arg() string {
	return fmt.Sprintf("%s:%d:%d:%d", c.kind, c.param, c.iters, c.warmup)
}

// key matches a case with its output line ("osu KIND PARAM VALUE UNIT").
func (c osuCase) key() string { return fmt.Sprintf("%s %d", c.kind, c.param) }

// osuGroup is the cases run together in one launch of ranks processes.
type osuGroup struct {
	ranks int
	cases []osuCase
}

// osuGroups returns the cases; quick divides the iteration counts by ten.
func osuGroups(quick bool) []osuGroup {
	c := func(kind string, param, iters, warmup int) osuCase {
		if quick {
			iters, warmup = max(1, iters/10), warmup/10
		}
		return osuCase{kind, param, iters, warmup}
	}
	return []osuGroup{
		{2, []osuCase{
			c("lat", 8, 2000, 200), c("lat", 1<<10, 1000, 100),
			c("lat", 64<<10, 200, 20), c("lat", 1<<20, 20, 2),
			c("bw", 64<<10, 20, 2), c("bw", 1<<20, 3, 1), c("bw", 4<<20, 1, 1),
			c("allreduce", 1, 1000, 100), c("allreduce", 1<<10, 500, 50), c("allreduce", 1<<20, 5, 1),
		}},
		{4, []osuCase{
			c("allreduce", 1, 1000, 100), c("allreduce", 1<<10, 500, 50), c("allreduce", 1<<20, 5, 1),
			c("barrier", 0, 1000, 100),
		}},
	}
}

// osuBench holds the built programs.
type osuBench struct {
	dir   string
	pirun string   // the pirun binary
	rank  string   // the osurank binary
	mpi   []string // mpirun prefix up to -n over TCP, nil without Open MPI
	mpiSM []string // the same over shared memory
	osu   string   // the compiled C program
}

// runOSU is the osu benchmark: go run ./bench osu [--quick].
func runOSU(ctx context.Context, quick bool) error {
	header("osu")
	dir, err := os.MkdirTemp("", "pispace-osu-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &osuBench{dir: dir}
	if err := b.build(ctx); err != nil {
		return err
	}
	// A quick run has no warm-up round: each launch still runs warm-up
	// iterations before its timed loop.
	runs, first := 7, -1
	if quick {
		runs, first = 5, 0
	}
	for _, g := range osuGroups(quick) {
		if err := b.group(ctx, g, first, runs); err != nil {
			return err
		}
	}
	return nil
}

// build compiles pirun and osurank with go build, and the C baseline with
// mpicc when Open MPI is installed.
func (b *osuBench) build(ctx context.Context) error {
	mod, err := moduleDir(ctx)
	if err != nil {
		return err
	}
	pirun, rank := filepath.Join(b.dir, "pirun"), filepath.Join(b.dir, "osurank")
	for _, p := range [][2]string{{pirun, "./cmd/pirun"}, {rank, "./bench/osurank"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", p[0], p[1])
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("osu: go build %s: %w\n%s", p[1], err, out)
		}
	}
	b.pirun, b.rank = pirun, rank
	b.mpi, b.osu = b.buildMPI(ctx)
	if b.mpi != nil {
		b.mpiSM = slices.Clone(b.mpi)
		b.mpiSM[slices.Index(b.mpiSM, "tcp,self")] = "vader,self"
	}
	return nil
}

func moduleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("osu: run from inside the pispace module (go env GOMOD: %q, %v)", mod, err)
	}
	return filepath.Dir(mod), nil
}

// buildMPI returns the mpirun prefix and the compiled baseline, or nils
// after saying on stderr why there is no baseline.
func (b *osuBench) buildMPI(ctx context.Context) ([]string, string) {
	mpirun, err1 := exec.LookPath("mpirun")
	mpicc, err2 := exec.LookPath("mpicc")
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "bench osu: Open MPI (mpirun, mpicc) not installed: pispace cases alone, no baseline")
		return nil, ""
	}
	src, bin := filepath.Join(b.dir, "osu.c"), filepath.Join(b.dir, "osu")
	if err := os.WriteFile(src, osuSource, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench osu: write osu.c: %v: no baseline\n", err)
		return nil, ""
	}
	if out, err := exec.CommandContext(ctx, mpicc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "bench osu: mpicc failed, no baseline: %v: %s\n", err, bytes.TrimSpace(out))
		return nil, ""
	}
	args := []string{mpirun, "--oversubscribe", "--mca", "btl", "tcp,self", "--mca", "btl_tcp_if_include", "lo"}
	if os.Getuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	return args, bin
}

// group runs rounds first..runs-1 of g (the negative ones are warm-up,
// not counted), pispace (as pirun runs jobs by default, restartable
// ranks), pispace with --max-restarts 0 (no restarts, as Open MPI: the
// ranks trim what they consumed, see rt.Config.TrimConsumed), then Open
// MPI in each, and emits one result per case and pispace variant.
func (b *osuBench) group(ctx context.Context, g osuGroup, first, runs int) error {
	args := make([]string, len(g.cases))
	for i, c := range g.cases {
		args[i] = c.arg()
	}
	pi, pn, mpi, sm := map[string]samples{}, map[string]samples{}, map[string]samples{}, map[string]samples{}
	for r := first; r < runs; r++ {
		if err := b.launch(ctx, "pirun", b.pispaceCmd(g.ranks, false, args), g.cases, pi, r >= 0); err != nil {
			return err
		}
		if err := b.launch(ctx, "pirun --max-restarts 0", b.pispaceCmd(g.ranks, true, args), g.cases, pn, r >= 0); err != nil {
			return err
		}
		if b.mpi == nil {
			continue
		}
		err := b.launch(ctx, "mpirun", b.mpiCmd(b.mpi, g.ranks, args), g.cases, mpi, r >= 0)
		if err != nil && r == first {
			// Open MPI that cannot run here at all is a missing baseline.
			fmt.Fprintf(os.Stderr, "bench osu: mpirun does not run, no baseline: %v\n", firstLine(err))
			b.mpi, b.mpiSM = nil, nil
			continue
		}
		if err != nil {
			return err
		}
		if b.mpiSM == nil {
			continue
		}
		if err := b.launch(ctx, "mpirun (shared memory)", b.mpiCmd(b.mpiSM, g.ranks, args), g.cases, sm, r >= 0); err != nil {
			fmt.Fprintf(os.Stderr, "bench osu: Open MPI over shared memory does not run, no such reference: %v\n", firstLine(err))
			b.mpiSM = nil
		}
	}
	for _, c := range g.cases {
		emit(c.result(g.ranks), pi[c.key()], osuBaselineName(b.mpi), mpi[c.key()])
	}
	for _, c := range g.cases {
		r := c.result(g.ranks)
		r.Case += "-norestart"
		r.Param["max_restarts"] = 0
		emit(r, pn[c.key()], osuBaselineName(b.mpi), mpi[c.key()])
	}
	if b.mpiSM != nil {
		for _, c := range g.cases {
			r := c.result(g.ranks)
			r.Case += "-vs-sm"
			emit(r, pi[c.key()], osuSM, sm[c.key()])
		}
	}
	return nil
}

func osuBaselineName(mpi []string) string {
	if mpi == nil {
		return ""
	}
	return osuBaseline
}

// pispaceCmd is pirun running the osurank program on n ranks, with no
// restarts (--max-restarts 0) when norestart is set.
func (b *osuBench) pispaceCmd(n int, norestart bool, args []string) []string {
	cmd := []string{b.pirun, "-n", strconv.Itoa(n)}
	if norestart {
		cmd = append(cmd, "--max-restarts", "0")
	}
	return append(append(cmd, b.rank), args...)
}

func (b *osuBench) mpiCmd(prefix []string, n int, args []string) []string {
	return append(append(slices.Clone(prefix), "-n", strconv.Itoa(n), b.osu), args...)
}

// launch runs argv, checks that it measured every case and, when count is
// set, adds its measurements to into.
func (b *osuBench) launch(ctx context.Context, who string, argv []string, cases []osuCase, into map[string]samples, count bool) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = cleanBenchEnvOSU()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("osu: %s: %w\nstdout:\n%s\nstderr:\n%s", who, err, stdout.Bytes(), stderr.Bytes())
	}
	got, err := parseOSU(stdout.Bytes())
	if err != nil {
		return fmt.Errorf("osu: %s: %w\nstdout:\n%s", who, err, stdout.Bytes())
	}
	for _, c := range cases {
		if _, ok := got[c.key()]; !ok {
			return fmt.Errorf("osu: %s: no measurement of %s\nstdout:\n%s", who, c.key(), stdout.Bytes())
		}
	}
	if count {
		for k, v := range got {
			into[k] = append(into[k], v)
		}
	}
	return nil
}

var errOSUOutput = errors.New("osu: no measurements in the output")

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// parseOSU reads the "osu KIND PARAM VALUE UNIT" lines (pirun prefixes
// each with the rank, "[0] ").
func parseOSU(out []byte) (map[string]float64, error) {
	got := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		i := 0
		for i < len(f) && f[i] != "osu" {
			i++
		}
		if len(f)-i < 5 {
			continue
		}
		v, err := strconv.ParseFloat(f[i+3], 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("osu: bad measurement %q", sc.Text())
		}
		got[f[i+1]+" "+f[i+2]] = v
	}
	if len(got) == 0 {
		return nil, errOSUOutput
	}
	return got, nil
}

// result describes c run on ranks processes, without the values.
func (c osuCase) result(ranks int) result {
	r := result{Bench: "osu", Case: c.kind, Metric: "us", Better: "lower", Param: map[string]any{"ranks": ranks}}
	switch c.kind {
	case "lat", "bw":
		r.Param["size"] = c.param
	case "allreduce":
		r.Param["count"] = c.param
	}
	if c.kind == "bw" {
		r.Metric, r.Better = "MB/s", "higher"
	}
	return r
}

// cleanBenchEnvOSU is the environment without pirun's variables, so that
// a bench run from inside a rank does not confuse the ranks it starts.
func cleanBenchEnvOSU() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PIRUN_") {
			env = append(env, e)
		}
	}
	return env
}
