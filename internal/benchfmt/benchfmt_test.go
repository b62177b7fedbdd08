package benchfmt

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestStatsAndRatio(t *testing.T) {
	m, lo, hi := Samples{5, 1, 3, 2}.Stats()
	if m != 2.5 || lo != 1 || hi != 5 {
		t.Fatalf("stats %v %v %v", m, lo, hi)
	}
	up := Measure("b", "c", nil, "MB/s", "higher", Samples{90}).Against("tcp", Samples{100})
	down := Measure("b", "c", nil, "us", "lower", Samples{20}).Against("tcp", Samples{10})
	if up.Ratio != 0.9 || down.Ratio != 0.5 {
		t.Fatalf("ratios %v %v", up.Ratio, down.Ratio)
	}
}

func TestWrite(t *testing.T) {
	var j, h bytes.Buffer
	r := Measure("pingpong", "direct", map[string]any{"size": 8}, "us", "lower", Samples{2, 4, 3}).Against("tcp", Samples{1})
	if err := Write(&j, &h, r); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(j.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bench", "case", "param", "metric", "better", "value", "min", "max", "baseline", "baseline_value", "ratio", "runs"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, j.String())
		}
	}
	if !strings.Contains(h.String(), "ratio 0.33") {
		t.Fatalf("table row %q", h.String())
	}
	j.Reset()
	Write(&j, &h, Measure("b", "c", nil, "s", "lower", Samples{1}))
	if strings.Contains(j.String(), "baseline") {
		t.Fatalf("a case without baseline prints baseline fields: %s", j.String())
	}
}
