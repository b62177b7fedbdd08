package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/pispace/pispace/internal/benchfmt"
)

// result, samples and emit are the benchmarks' view of the shared format
// (internal/benchfmt).
type (
	result  = benchfmt.Result
	samples = benchfmt.Samples
)

// emit summarises s as the case described by r (bench, case, param,
// metric, better), against base when baseName is given, and prints it.
func emit(r result, s samples, baseName string, base samples) {
	r = benchfmt.Measure(r.Bench, r.Case, r.Param, r.Metric, r.Better, s)
	if baseName != "" {
		r = r.Against(baseName, base)
	}
	benchfmt.Write(os.Stdout, os.Stderr, r)
}

func header(bench string) {
	host, _ := os.Hostname()
	fmt.Fprintf(os.Stderr, "# %s on %s: %s, %d cores, %s, %s\n", bench, host, cpuModel(), runtime.NumCPU(),
		runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}
