// Package benchfmt is the output format every pispace benchmark shares
// (shared/BENCH.md): one JSON object per measured case on one stream, and a
// human table row on another.
package benchfmt

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Result is one measured case.
type Result struct {
	Bench         string         `json:"bench"`
	Case          string         `json:"case"`
	Param         map[string]any `json:"param"`
	Metric        string         `json:"metric"`
	Better        string         `json:"better"` // "higher" or "lower"
	Value         float64        `json:"value"`  // median
	Min           float64        `json:"min"`
	Max           float64        `json:"max"`
	Baseline      string         `json:"baseline,omitempty"`
	BaselineValue float64        `json:"baseline_value,omitempty"`
	Ratio         float64        `json:"ratio,omitempty"` // >= 1: pispace at least as good
	Runs          int            `json:"runs"`
}

// Samples are the counted runs of one case.
type Samples []float64

// Stats returns the median, minimum and maximum (zeros when empty).
func (s Samples) Stats() (median, lo, hi float64) {
	if len(s) == 0 {
		return 0, 0, 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	n := len(c)
	median = c[n/2]
	if n%2 == 0 {
		median = (c[n/2-1] + c[n/2]) / 2
	}
	return median, c[0], c[n-1]
}

// Measure summarises s as a result of the given case.
func Measure(bench, cas string, param map[string]any, metric, better string, s Samples) Result {
	r := Result{Bench: bench, Case: cas, Param: param, Metric: metric, Better: better, Runs: len(s)}
	r.Value, r.Min, r.Max = s.Stats()
	return r
}

// Against sets the baseline measured in the same run and the ratio,
// oriented so that >= 1 means pispace is at least as good.
func (r Result) Against(name string, base Samples) Result {
	if len(base) == 0 || r.Value == 0 {
		return r
	}
	bv, _, _ := base.Stats()
	r.Baseline, r.BaselineValue = name, bv
	r.Ratio = r.Value / bv
	if r.Better == "lower" {
		r.Ratio = bv / r.Value
	}
	return r
}

// Write prints r as a JSON line on jsonOut and a table row on human.
func Write(jsonOut, human io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(jsonOut, string(b)); err != nil {
		return err
	}
	params := make([]string, 0, len(r.Param))
	for k, v := range r.Param {
		params = append(params, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(params)
	row := fmt.Sprintf("%-10s %-15s %-22s %12.4g %-5s [%.4g .. %.4g] runs %d", r.Bench, r.Case,
		strings.Join(params, ","), r.Value, r.Metric, r.Min, r.Max, r.Runs)
	if r.Baseline != "" {
		row += fmt.Sprintf("  %s %.4g  ratio %.2f", r.Baseline, r.BaselineValue, r.Ratio)
	}
	_, err = fmt.Fprintln(human, row)
	return err
}
