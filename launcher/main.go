package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pispace/pispace/sched"
)

const usage = `usage:
  pirun -n N [flags] PROGRAM [ARGS...]   run a job (PROGRAM: executable or Go main package dir)
  pirun node [flags]                     run a node of a cluster
  pirun status [--join ADDR]             show a cluster's nodes and jobs
Run 'pirun -h', 'pirun node -h' or 'pirun status -h' for flags.`

// Main is pirun's command line: it returns the process exit status. It
// handles SIGINT and SIGTERM itself (forwarded to ranks; a second one
// kills) while a job or node runs.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	status := 0
	switch args[0] {
	case "node":
		err = mainNode(ctx, args[1:], stdout, stderr)
	case "status":
		err = mainStatus(ctx, args[1:], stdout, stderr)
	case "help":
		fmt.Fprintln(stdout, usage)
	default:
		status, err = mainRun(ctx, args, stdin, stdout, stderr)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "pirun: %v\n", err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "pirun: %v\n", err)
		return 1
	}
	return status
}

// cliFlags is a flag set that prints nothing itself: parse reports errors
// in one line and prints the flags only for -h.
type cliFlags struct {
	*flag.FlagSet
	stderr io.Writer
	help   bool
}

func newFlagSet(name string, stderr io.Writer) *cliFlags {
	fs := &cliFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), stderr: stderr}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.BoolVar(&fs.help, "h", false, "show this help")
	fs.BoolVar(&fs.help, "help", false, "show this help")
	return fs
}

// parse wraps flag errors as ErrUsage; -h prints the flags and returns flag.ErrHelp.
func parse(fs *cliFlags, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v (pirun -h for help)", ErrUsage, err)
	}
	if fs.help {
		fmt.Fprintln(fs.stderr, usage)
		fs.SetOutput(fs.stderr)
		fs.PrintDefaults()
		return flag.ErrHelp
	}
	return nil
}

// clusterFlags are shared by every subcommand that talks to a cluster.
type clusterFlags struct {
	join    []string
	keyFile string
	profile string
	bind    string
}

func (c *clusterFlags) register(fs *flag.FlagSet, bindDefault string) {
	fs.Var(listFlag{&c.join, true}, "join", "gossip address(es) of cluster nodes, comma-separated (default $PIRUN_JOIN)")
	fs.StringVar(&c.keyFile, "key-file", "", "file holding the cluster key, base64 or hex of 16/24/32 bytes (default $PIRUN_KEY)")
	fs.StringVar(&c.profile, "profile", ProfileAuto, "membership timing: auto (tuned on loopback, else lan), lan or tuned")
	fs.StringVar(&c.bind, "bind", bindDefault, "gossip bind address host:port")
}

func (c *clusterFlags) resolve() ([]byte, error) {
	if len(c.join) == 0 {
		if j := os.Getenv("PIRUN_JOIN"); j != "" {
			listFlag{&c.join, true}.Set(j)
		}
	}
	return keyFromEnv(c.keyFile, os.Getenv)
}

// withSignals delivers SIGINT and SIGTERM on the returned channel until stop.
func withSignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func mainRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	fs := newFlagSet("pirun", stderr)
	var cf clusterFlags
	cf.register(fs.FlagSet, "")
	cfg := RunConfig{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	var exports []string
	var report string
	fs.IntVar(&cfg.Size, "n", 0, "number of ranks")
	fs.IntVar(&cfg.Min, "min", 0, "ranks needed before collective work (PIRUN_MIN; default all)")
	fs.Var(sizeFlag{&cfg.Mem}, "mem", "memory per rank, reserved and enforced (e.g. 512M, 2G)")
	fs.DurationVar(&cfg.Time, "time", 0, "time limit per rank (e.g. 30s, 10m)")
	fs.Var(listFlag{&exports, false}, "x", "export NAME[=VALUE] to the ranks (repeatable)")
	fs.IntVar(&cfg.MaxRestarts, "max-restarts", 3, "restarts per rank after a node loss or a foreign signal")
	fs.BoolVar(&cfg.Oversubscribe, "oversubscribe", false, "place ranks on nodes whose slots are full")
	fs.StringVar(&report, "report", "", "write the per-rank metrics as JSON to this file")
	fs.IntVar(&cfg.Embedded.Nodes, "embedded-nodes", 0, "nodes of the embedded cluster (default: CPUs, at most 4)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if fs.NArg() == 0 {
		return 0, fmt.Errorf("%w: no program given", ErrUsage)
	}
	key, err := cf.resolve()
	if err != nil {
		return 0, err
	}
	cfg.Program, cfg.Args = fs.Arg(0), fs.Args()[1:]
	cfg.Join, cfg.Key, cfg.Profile, cfg.Bind = cf.join, key, cf.profile, cf.bind
	cfg.Env = exportEnv(exports, os.LookupEnv)
	cfg.Terminal = isTerminal(stderr)
	if os.Getenv("PIRUN_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sigs, stop := withSignals()
	defer stop()
	cfg.Signals = sigs
	rep, err := Run(ctx, cfg)
	if err != nil {
		return 0, err
	}
	printTable(stderr, rep)
	if report != "" {
		if err := writeReport(report, rep); err != nil {
			return 0, err
		}
	}
	return rep.Status, nil
}

func writeReport(path string, rep JobReport) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("launcher: report: %w", err)
	}
	return nil
}

// printTable writes the per-rank metrics table and the job's outcome.
func printTable(w io.Writer, rep JobReport) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "rank\tnode\twall\tcpu\tpeak mem\texit\trestarts\tstate")
	for _, r := range rep.Ranks {
		node := r.Node
		if node == "" {
			node = "-"
		}
		peak := "-" // not sampled: the rank ended before the first sample
		if r.PeakMem > 0 {
			peak = sched.FormatBytes(r.PeakMem)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", r.Rank, node, round(r.Wall), round(r.CPU),
			peak, r.Exit, r.Restarts, r.State)
	}
	tw.Flush()
	if rep.Status == 0 {
		fmt.Fprintf(w, "pirun: job %s: all %d ranks exited 0 in %s\n", rep.Job, len(rep.Ranks), round(rep.Wall))
		return
	}
	fmt.Fprintf(w, "pirun: job %s: exit status %d: %s\n", rep.Job, rep.Status, firstLine(rep.Reason))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(100 * time.Microsecond)
	}
	return d
}

func mainNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pirun node", stderr)
	var cf clusterFlags
	cf.register(fs.FlagSet, "0.0.0.0:7946")
	var cfg NodeConfig
	var labels []string
	var verbose bool
	fs.IntVar(&cfg.Slots, "slots", 0, "rank slots (default: number of CPUs)")
	fs.Var(sizeFlag{&cfg.Mem}, "mem", "memory offered to ranks (default: the machine's total)")
	fs.Var(sizeFlag{&cfg.CacheMem}, "cache-mem", "memory for channel data before it spills to --data (default: --mem/8, at least 256MiB)")
	fs.DurationVar(&cfg.MaxTime, "max-time", 0, "longest time limit granted to a rank (default: none)")
	fs.StringVar(&cfg.DataDir, "data", "", "data directory: binary cache, rank dirs (default: a temporary dir)")
	fs.Var(listFlag{&labels, false}, "label", "label k=v advertised to locators (repeatable)")
	fs.BoolVar(&verbose, "v", false, "log rank starts and ends")
	if err := parse(fs, args); err != nil {
		return err
	}
	key, err := cf.resolve()
	if err != nil {
		return err
	}
	if cfg.Labels, err = parseLabels(labels); err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Bind, cfg.Join, cfg.Key, cfg.Profile = cf.bind, cf.join, key, cf.profile
	sigs, stop := withSignals()
	defer stop()
	jctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { // a signal ends the node, or aborts a join in progress
		select {
		case <-sigs:
			cancel()
		case <-jctx.Done():
		}
	})
	n, err := StartNode(jctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pirun node %s: gossip %s servent %s comm %s\n", n.Name(), n.Addr(), n.ServentAddr(), n.CommAddr())
	<-jctx.Done()
	fmt.Fprintf(stderr, "pirun node %s: leaving\n", n.Name())
	return n.Close()
}
