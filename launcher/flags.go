package launcher

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize parses a memory size: a number of bytes, or a number with a
// unit K, M, G, T (powers of 1024; KiB/KB/k spellings accepted), e.g. "512M",
// "1.5GiB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: size %q", ErrUsage, s)
	}
	unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	if !ok {
		return 0, fmt.Errorf("%w: size %q: unknown unit", ErrUsage, s)
	}
	b := v * float64(uint64(1)<<sh)
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w: size %q too large", ErrUsage, s)
	}
	return int64(b), nil
}

// listFlag collects a repeatable flag; commas split values too when split is set.
type listFlag struct {
	vals  *[]string
	split bool
}

func (f listFlag) String() string {
	if f.vals == nil {
		return ""
	}
	return strings.Join(*f.vals, ",")
}

func (f listFlag) Set(s string) error {
	if !f.split {
		*f.vals = append(*f.vals, s)
		return nil
	}
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*f.vals = append(*f.vals, p)
		}
	}
	return nil
}

// sizeFlag is a flag.Value for ParseSize.
type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil {
		return "0"
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f sizeFlag) Set(s string) error {
	n, err := ParseSize(s)
	if err != nil {
		return fmt.Errorf("bad size %q (want bytes or e.g. 512M, 2G)", s)
	}
	*f.v = n
	return nil
}

// exportEnv resolves -x NAME[=VALUE] into NAME=VALUE, taking VALUE from the
// initiator's environment when absent (unset names are skipped).
func exportEnv(xs []string, getenv func(string) (string, bool)) []string {
	var env []string
	for _, x := range xs {
		if strings.Contains(x, "=") {
			env = append(env, x)
		} else if v, ok := getenv(x); ok {
			env = append(env, x+"="+v)
		}
	}
	return env
}

// parseLabels turns k=v strings into a map.
func parseLabels(ls []string) (map[string]string, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, l := range ls {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: label %q, want k=v", ErrUsage, l)
		}
		m[k] = v
	}
	return m, nil
}
