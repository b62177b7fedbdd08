package lookup

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Golden scripts in testdata/*.txt, in the style of cockroachdb/datadriven
// as used by etcd-io/raft's interaction tests. Each case is a command line,
// a "----" line and the expected output up to a blank line. The output is
// the Step error (if any), the actions, and every state change.
// `go test -run Script -rewrite` regenerates the expected outputs.

var rewrite = flag.Bool("rewrite", false, "rewrite golden script outputs in testdata")

type scriptCase struct {
	cmd, want string
}

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

func runScript(t *testing.T, path string) {
	cases, header := readScript(t, path)
	r := &scriptRunner{s: NewSpace("script", Config{})}
	var out strings.Builder
	out.WriteString(header)
	for _, c := range cases {
		got := r.run(c.cmd)
		if !*rewrite && got != c.want {
			t.Errorf("%s: %s\n got:\n%s\nwant:\n%s", path, c.cmd, got, c.want)
		}
		fmt.Fprintf(&out, "%s\n----\n%s\n", c.cmd, got)
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readScript returns the cases and any leading comment lines.
func readScript(t *testing.T, path string) ([]scriptCase, string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []scriptCase
	var header strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "#"):
			if len(cases) > 0 {
				t.Fatalf("%s: comments only at the top", path)
			}
			header.WriteString(line + "\n")
			continue
		}
		c := scriptCase{cmd: line}
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s: %q: missing ----", path, line)
		}
		var want []string
		for sc.Scan() && sc.Text() != "" {
			want = append(want, sc.Text())
		}
		c.want = strings.Join(want, "\n") + "\n"
		cases = append(cases, c)
	}
	if header.Len() > 0 {
		header.WriteString("\n")
	}
	return cases, header.String()
}

type scriptRunner struct {
	s *Space
}

// run executes one command and renders what happened.
func (r *scriptRunner) run(line string) string {
	fields := strings.Fields(line)
	args := parseArgs(fields[1:])
	if fields[0] == "new" {
		r.s = NewSpace("script", Config{Lease: args.int("lease")})
		return "ok\n"
	}
	ev, err := args.event(fields[0])
	if err != nil {
		return "bad command: " + err.Error() + "\n"
	}
	before := snapshot(r.s)
	var out strings.Builder
	if err := r.s.Step(ev); err != nil {
		fmt.Fprintf(&out, "error: %s\n", fmtErr(err))
	}
	for _, a := range drain(r.s) {
		out.WriteString(a + "\n")
	}
	for _, ch := range diffSnapshots(before, snapshot(r.s)) {
		out.WriteString(ch + "\n")
	}
	if err := checkInvariants(r.s); err != nil {
		fmt.Fprintf(&out, "INVARIANT: %v\n", err)
	}
	if out.Len() == 0 {
		return "ok\n"
	}
	return out.String()
}

type scriptArgs map[string]string

func parseArgs(fields []string) scriptArgs {
	a := scriptArgs{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		a[k] = v
	}
	return a
}

func (a scriptArgs) int(k string) int64 {
	n, _ := strconv.ParseInt(a[k], 10, 64)
	return n
}

func (a scriptArgs) flag(k string) bool { _, ok := a[k]; return ok }

func (a scriptArgs) req() ReqID       { return ReqID(a.int("req")) }
func (a scriptArgs) sess() SessionID  { return SessionID(a.int("s")) }
func (a scriptArgs) inst() InstanceID { return InstanceID(a.int("id")) }
func (a scriptArgs) elem() uint8 {
	if a["elem"] == "any" {
		return ElemAny
	}
	return uint8(a.int("elem"))
}

func (a scriptArgs) event(cmd string) (Event, error) {
	switch cmd {
	case "open":
		return OpenSpace{Session: a.sess()}, nil
	case "close-space":
		return CloseSpace{Session: a.sess()}, nil
	case "tick":
		return Tick{Now: a.int("now")}, nil
	case "create":
		return Create{Req: a.req(), Session: a.sess(), Name: a["name"], Elem: a.elem(),
			WriterKey: a["key"], DirectAddr: a["addr"]}, nil
	case "attach":
		return Attach{Req: a.req(), Session: a.sess(), Name: a["name"], Elem: a.elem(),
			Any: a.flag("any"), Wait: a.flag("wait"), Instance: a.inst()}, nil
	case "cancel":
		return CancelAttach{Req: a.req(), Session: a.sess()}, nil
	case "appended":
		return Appended{Instance: a.inst(), Length: a.int("len")}, nil
	case "wait":
		return ReaderWait{Req: a.req(), Session: a.sess(), Instance: a.inst(), Offset: a.int("off")}, nil
	case "close":
		return Close{Req: a.req(), Session: a.sess(), Instance: a.inst(), Length: a.int("len")}, nil
	case "read-done":
		return ReadDone{Session: a.sess(), Instance: a.inst()}, nil
	case "detach":
		return Detach{Session: a.sess(), Instance: a.inst()}, nil
	case "set-attr":
		return SetAttr{Req: a.req(), Session: a.sess(), Instance: a.inst(), Key: a["key"], Value: a["val"]}, nil
	case "lost":
		return SessionLost{Session: a.sess()}, nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

// snapshot renders the observable state: name entries, instances, users.
func snapshot(s *Space) map[string]string {
	m := map[string]string{}
	for _, e := range s.names {
		m["name "+e.name] = e.state.String()
	}
	for _, i := range s.Instances() {
		id := fmt.Sprintf("#%d", i.ID)
		m[id] = strings.TrimPrefix(fmtInfo(i), id+" ")
	}
	m["space"] = fmt.Sprintf("users=%d deleted=%t", s.Users(), s.Deleted())
	return m
}

// diffSnapshots lists what changed, in a stable order.
func diffSnapshots(before, after map[string]string) []string {
	var keys []string
	for k := range after {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if before[k] == after[k] {
			continue
		}
		was := before[k]
		if was == "" {
			was = "-"
		}
		out = append(out, fmt.Sprintf("  %s: %s -> %s", k, was, after[k]))
	}
	return out
}
