package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// result is one line of the JSON output (shared/BENCH.md).
type result struct {
	Bench         string         `json:"bench"`
	Case          string         `json:"case"`
	Param         map[string]any `json:"param"`
	Metric        string         `json:"metric"`
	Better        string         `json:"better"`
	Value         float64        `json:"value"`
	Min           float64        `json:"min"`
	Max           float64        `json:"max"`
	Baseline      string         `json:"baseline,omitempty"`
	BaselineValue *float64       `json:"baseline_value,omitempty"`
	Ratio         *float64       `json:"ratio,omitempty"`
	Runs          int            `json:"runs"`
}

// samples are repeated measurements of one case.
type samples []float64

func (s samples) stats() (median, lo, hi float64) {
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	if n == 0 {
		return 0, 0, 0
	}
	median = c[n/2]
	if n%2 == 0 {
		median = (c[n/2-1] + c[n/2]) / 2
	}
	return median, c[0], c[n-1]
}

// emit prints r as JSON on stdout and as a table row on stderr. When base
// is given, the ratio is oriented so that >= 1 means pispace is at least as
// good.
func emit(r result, s samples, baseName string, base samples) {
	r.Value, r.Min, r.Max = s.stats()
	r.Runs = len(s)
	if baseName != "" && len(base) > 0 {
		bv, _, _ := base.stats()
		ratio := r.Value / bv
		if r.Better == "lower" {
			ratio = bv / r.Value
		}
		r.Baseline, r.BaselineValue, r.Ratio = baseName, &bv, &ratio
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	params := make([]string, 0, len(r.Param))
	for k, v := range r.Param {
		params = append(params, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(params)
	row := fmt.Sprintf("%-10s %-8s %-22s %12.2f %-6s [%.2f .. %.2f]", r.Bench, r.Case, strings.Join(params, ","), r.Value, r.Metric, r.Min, r.Max)
	if r.Ratio != nil {
		row += fmt.Sprintf("  %s %.2f  ratio %.2f", r.Baseline, *r.BaselineValue, *r.Ratio)
	}
	fmt.Fprintln(os.Stderr, row)
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
