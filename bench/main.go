// Command bench runs pispace's benchmarks, each against its baseline in the
// same run (see shared/BENCH.md): go run ./bench NAME [--quick].
//
//	go run ./bench list
//	go run ./bench pingpong [--quick]
//	go run ./bench launch [--quick]
//
// Human tables go to stderr; one JSON object per measured case goes to
// stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
)

type benchmark struct {
	about string
	run   func(ctx context.Context, quick bool) error
}

var benchmarks = map[string]benchmark{
	"pingpong": {"π-channel ping-pong (direct and cache paths) against raw TCP", runPingpong},
	"launch":   {"pirun launch-to-exit, elastic join and failover, against mpirun", runLaunch},
	"osu":      {"OSU-style latency, bandwidth, Allreduce and Barrier against Open MPI over TCP", runOSU},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == peerCommand {
		os.Exit(peerMain(os.Args[2:]))
	}
	if len(os.Args) == 2 && os.Args[1] == "names" {
		for _, n := range sortedNames() {
			fmt.Println(n)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] == "list" || os.Args[1] == "-h" || os.Args[1] == "--help" {
		list()
		return
	}
	name := os.Args[1]
	b, ok := benchmarks[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q\n", name)
		list()
		os.Exit(2)
	}
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	quick := fs.Bool("quick", false, "a run of a few seconds, to prove the benchmark works")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := b.run(ctx, *quick); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
		os.Exit(1)
	}
}

func sortedNames() []string {
	names := make([]string, 0, len(benchmarks))
	for n := range benchmarks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func list() {
	fmt.Fprintln(os.Stderr, "usage: go run ./bench NAME [--quick]   (names: one per line, for scripts)")
	for _, n := range sortedNames() {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, benchmarks[n].about)
	}
}
