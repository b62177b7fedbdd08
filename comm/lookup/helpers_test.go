package lookup

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sentinels in the order fmtErr lists them.
var sentinels = []struct {
	name string
	err  error
}{
	{"Illegal", ErrIllegal},
	{"NotFound", ErrNotFound},
	{"ElemType", ErrElemType},
	{"Canceled", ErrCanceled},
	{"NotWriter", ErrNotWriter},
	{"Sealed", ErrSealed},
	{"SpaceDeleted", ErrSpaceDeleted},
}

// fmtErr names the sentinels err wraps, e.g. "Illegal+NotFound", or "nil".
func fmtErr(err error) string {
	if err == nil {
		return "nil"
	}
	var names []string
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			names = append(names, s.name)
		}
	}
	if len(names) == 0 {
		return "unknown(" + err.Error() + ")"
	}
	return strings.Join(names, "+")
}

func fmtInfo(i Info) string {
	s := fmt.Sprintf("#%d %s len=%d w=%d", i.ID, i.State, i.Length, i.WriterSession)
	if i.Sealed {
		s += " sealed"
	}
	if i.Read {
		s += " read"
	}
	return s
}

// fmtAction renders an action compactly for comparisons and logs.
func fmtAction(a Action) string {
	switch a := a.(type) {
	case ReplyCreate:
		return fmt.Sprintf("ReplyCreate r%d s%d %s resumed=%t", a.Req, a.Session, fmtInfo(a.Info), a.Resumed)
	case ReplyAttach:
		return fmt.Sprintf("ReplyAttach r%d s%d %s", a.Req, a.Session, fmtInfo(a.Info))
	case ReplyClose:
		return fmt.Sprintf("ReplyClose r%d s%d %s", a.Req, a.Session, fmtInfo(a.Info))
	case ReplyOK:
		return fmt.Sprintf("ReplyOK r%d s%d", a.Req, a.Session)
	case ReplyError:
		return fmt.Sprintf("ReplyError r%d s%d %s", a.Req, a.Session, fmtErr(a.Err))
	case Wake:
		return fmt.Sprintf("Wake r%d s%d #%d len=%d sealed=%t", a.Req, a.Session, a.Instance, a.Length, a.Sealed)
	case DeleteInstance:
		return fmt.Sprintf("DeleteInstance #%d", a.Instance)
	case DeleteSpace:
		return "DeleteSpace"
	}
	return fmt.Sprintf("unknown %T", a)
}

func fmtActions(as []Action) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, fmtAction(a))
	}
	return out
}

// drain returns the pending actions rendered, and advances.
func drain(s *Space) []string {
	out := fmtActions(s.Ready())
	s.Advance()
	return out
}

// mustStep steps ev, fails on error, and returns the rendered actions.
func mustStep(t *testing.T, s *Space, ev Event) []string {
	t.Helper()
	if err := s.Step(ev); err != nil {
		t.Fatalf("Step(%#v): %v", ev, err)
	}
	return drain(s)
}

// wantActions compares rendered actions.
func wantActions(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: actions\n got: %q\nwant: %q", what, got, want)
	}
}

func instState(s *Space, id InstanceID) State {
	if i, ok := s.Instance(id); ok {
		return i.State
	}
	return StateEmpty
}

func funcPtr(f any) uintptr { return reflect.ValueOf(f).Pointer() }

var entrySteps = map[State]uintptr{
	StateEmpty:         funcPtr(stepEmpty),
	StateReaderWaiting: funcPtr(stepReaderWaiting),
}

var instSteps = map[State]uintptr{
	StateWriting:     funcPtr(stepWriting),
	StateReadWrite:   funcPtr(stepReadWrite),
	StateReaderAhead: funcPtr(stepReaderAhead),
	StateAvailable:   funcPtr(stepAvailable),
	StateDeleted:     funcPtr(stepDeleted),
}

// checkInvariants verifies the space's internal consistency.
func checkInvariants(s *Space) error {
	if err := checkUsers(s); err != nil {
		return err
	}
	nWait := 0
	for _, e := range s.names {
		if err := checkEntry(s, e); err != nil {
			return err
		}
		nWait += len(e.waiters)
	}
	if nWait != len(s.waiting) {
		return fmt.Errorf("%d waiters, index holds %d", nWait, len(s.waiting))
	}
	nPark := 0
	for n, i := range s.order {
		if i.id != InstanceID(n+1) || s.insts[i.id] != i {
			return fmt.Errorf("instance %d at position %d", i.id, n)
		}
		if err := checkInstance(s, i); err != nil {
			return fmt.Errorf("instance %d: %w", i.id, err)
		}
		nPark += len(i.parked)
	}
	if nPark != len(s.parked) {
		return fmt.Errorf("%d parked, index holds %d", nPark, len(s.parked))
	}
	return nil
}

func checkUsers(s *Space) error {
	sum := 0
	for sess, n := range s.opens {
		if n <= 0 {
			return fmt.Errorf("session %d has %d opens", sess, n)
		}
		sum += n
	}
	if sum != s.users || s.users < 0 {
		return fmt.Errorf("users %d, opens sum %d", s.users, sum)
	}
	if s.leasing && s.users != 0 {
		return fmt.Errorf("lease running with %d users", s.users)
	}
	return nil
}

func checkEntry(s *Space, e *entry) error {
	if funcPtr(e.step) != entrySteps[e.state] {
		return fmt.Errorf("entry %q: step function does not match state %s", e.name, e.state)
	}
	if (e.state == StateReaderWaiting) != (len(e.waiters) > 0) {
		return fmt.Errorf("entry %q: state %s with %d waiters", e.name, e.state, len(e.waiters))
	}
	for _, w := range e.waiters {
		if s.waiting[reqKey{w.Session, w.Req}] != e {
			return fmt.Errorf("entry %q: waiter %d/%d not indexed", e.name, w.Session, w.Req)
		}
		if e.pick(w.Any) != nil {
			return fmt.Errorf("entry %q: waiter %d/%d waits although an instance is available", e.name, w.Session, w.Req)
		}
	}
	return nil
}

func checkInstance(s *Space, i *instance) error {
	if funcPtr(i.step) != instSteps[i.state] {
		return fmt.Errorf("step function does not match state %s", i.state)
	}
	if s.deleted != (i.state == StateDeleted) {
		return fmt.Errorf("state %s in a space deleted=%t", i.state, s.deleted)
	}
	if i.read && !i.sealed {
		return fmt.Errorf("read but not sealed")
	}
	if want := wantInstState(s, i); i.state != want {
		return fmt.Errorf("state %s, want %s", i.state, want)
	}
	for _, p := range i.parked {
		if s.parked[reqKey{p.sess, p.req}] != i {
			return fmt.Errorf("parked %d/%d not indexed", p.sess, p.req)
		}
		if i.readers[p.sess] == 0 {
			return fmt.Errorf("parked session %d is not a reader", p.sess)
		}
		if p.offset < i.length || i.sealed {
			return fmt.Errorf("parked at %d although length %d sealed=%t", p.offset, i.length, i.sealed)
		}
	}
	return nil
}

func wantInstState(s *Space, i *instance) State {
	switch {
	case s.deleted:
		return StateDeleted
	case i.sealed:
		return StateAvailable
	case len(i.parked) > 0:
		return StateReaderAhead
	case len(i.readers) > 0:
		return StateReadWrite
	}
	return StateWriting
}
