package lookup

import (
	"fmt"
	"reflect"
	"testing"
)

// Sessions in the table: 1 writer (the only user), 2 reader, 3 and 4 others.
// The subject is the name entry "ch" and its first instance #1.

// setups build a space whose subject is in the given state, with no
// pending actions.
var setups = map[State][]Event{
	StateEmpty: {OpenSpace{Session: 1}},
	StateReaderWaiting: {OpenSpace{Session: 1},
		Attach{Req: 100, Session: 2, Name: "ch", Elem: ElemAny, Wait: true}},
	StateWriting: writingSetup,
	StateReadWrite: append(writingSetup[:len(writingSetup):len(writingSetup)],
		Attach{Req: 101, Session: 2, Name: "ch", Elem: 2}),
	StateReaderAhead: append(writingSetup[:len(writingSetup):len(writingSetup)],
		Attach{Req: 101, Session: 2, Name: "ch", Elem: 2},
		ReaderWait{Req: 102, Session: 2, Instance: 1, Offset: 0}),
	StateAvailable: availableSetup,
	StateDeleted: append(availableSetup[:len(availableSetup):len(availableSetup)],
		ReadDone{Session: 2, Instance: 1}, CloseSpace{Session: 1}),
}

var writingSetup = []Event{
	OpenSpace{Session: 1},
	Create{Req: 1, Session: 1, Name: "ch", Elem: 2, WriterKey: "k", DirectAddr: "w:1"},
}

var availableSetup = append(writingSetup[:len(writingSetup):len(writingSetup)],
	Appended{Instance: 1, Length: 10},
	Close{Req: 2, Session: 1, Instance: 1, Length: 10})

// tableEvents are the events applied to every state, by label.
var tableEvents = map[string]Event{
	"open":        OpenSpace{Session: 3},
	"closeLast":   CloseSpace{Session: 1},
	"tick":        Tick{Now: 1 << 40},
	"create":      Create{Req: 200, Session: 3, Name: "ch", Elem: 2},
	"resume":      Create{Req: 201, Session: 4, Name: "ch", Elem: 2, WriterKey: "k", DirectAddr: "w:2"},
	"resumeElem":  Create{Req: 201, Session: 4, Name: "ch", Elem: 7, WriterKey: "k"},
	"attach":      Attach{Req: 202, Session: 3, Name: "ch", Elem: ElemAny},
	"attachElem":  Attach{Req: 202, Session: 3, Name: "ch", Elem: 5},
	"attachWait":  Attach{Req: 203, Session: 3, Name: "ch", Elem: ElemAny, Wait: true},
	"attachID":    Attach{Req: 207, Session: 3, Instance: 1, Elem: ElemAny},
	"cancel":      CancelAttach{Req: 100, Session: 2},
	"cancelWait":  CancelAttach{Req: 102, Session: 2},
	"appended":    Appended{Instance: 1, Length: 20},
	"appendedLow": Appended{Instance: 1, Length: 5},
	"readerWait":  ReaderWait{Req: 204, Session: 3, Instance: 1, Offset: 0},
	"waitDup":     ReaderWait{Req: 102, Session: 2, Instance: 1, Offset: 0},
	"waitNeg":     ReaderWait{Req: 204, Session: 3, Instance: 1, Offset: -1},
	"close":       Close{Req: 205, Session: 1, Instance: 1, Length: 10},
	"closeOther":  Close{Req: 205, Session: 3, Instance: 1, Length: 10},
	"closeDiff":   Close{Req: 205, Session: 1, Instance: 1, Length: 11},
	"readDone":    ReadDone{Session: 3, Instance: 1},
	"detach":      Detach{Session: 2, Instance: 1},
	"detachW":     Detach{Session: 1, Instance: 1},
	"setAttr":     SetAttr{Req: 206, Session: 3, Instance: 1, Key: "k", Value: "v"},
	"lostReader":  SessionLost{Session: 2},
	"lostWriter":  SessionLost{Session: 1},
}

type tableRow struct {
	state State  // subject's state before
	ev    string // label in tableEvents
	err   string // fmtErr of Step's result
	name  State  // NameState("ch") after
	inst  State  // state of #1 after (Empty if none)
	want  []string
}

const (
	sE  = StateEmpty
	sRW = StateReaderWaiting
	sW  = StateWriting
	sX  = StateReadWrite
	sA  = StateReaderAhead
	sV  = StateAvailable
	sD  = StateDeleted
	ok  = "nil"
	ill = "Illegal"
	inf = "Illegal+NotFound"
	iwr = "Illegal+NotWriter"
	isd = "Illegal+SpaceDeleted"
	isl = "Illegal+Sealed"
)

var tableRows = []tableRow{
	// Empty: no instance, nobody waiting.
	{sE, "open", ok, sE, sE, nil},
	{sE, "closeLast", ok, sE, sE, []string{"DeleteSpace"}},
	{sE, "tick", ok, sE, sE, nil},
	{sE, "create", ok, sE, sW, []string{"ReplyCreate r200 s3 #1 Writing len=0 w=3 resumed=false"}},
	{sE, "resume", ok, sE, sW, []string{"ReplyCreate r201 s4 #1 Writing len=0 w=4 resumed=false"}},
	{sE, "attach", ok, sE, sE, []string{"ReplyError r202 s3 NotFound"}},
	{sE, "attachWait", ok, sRW, sE, nil},
	{sE, "attachID", ok, sE, sE, []string{"ReplyError r207 s3 NotFound"}},
	{sE, "cancel", ill, sE, sE, nil},
	{sE, "appended", inf, sE, sE, nil},
	{sE, "readerWait", inf, sE, sE, []string{"ReplyError r204 s3 Illegal+NotFound"}},
	{sE, "close", inf, sE, sE, []string{"ReplyError r205 s1 Illegal+NotFound"}},
	{sE, "readDone", inf, sE, sE, nil},
	{sE, "detach", inf, sE, sE, nil},
	{sE, "setAttr", inf, sE, sE, []string{"ReplyError r206 s3 Illegal+NotFound"}},
	{sE, "lostReader", ok, sE, sE, nil},
	{sE, "lostWriter", ok, sE, sE, []string{"DeleteSpace"}},

	// ReaderWaiting: attach r100 of session 2 waits on "ch".
	{sRW, "open", ok, sRW, sE, nil},
	{sRW, "closeLast", ok, sE, sE, []string{"ReplyError r100 s2 SpaceDeleted", "DeleteSpace"}},
	{sRW, "tick", ok, sRW, sE, nil},
	{sRW, "create", ok, sE, sX, []string{
		"ReplyCreate r200 s3 #1 Writing len=0 w=3 resumed=false",
		"ReplyAttach r100 s2 #1 ReadWrite len=0 w=3"}},
	{sRW, "resume", ok, sE, sX, []string{
		"ReplyCreate r201 s4 #1 Writing len=0 w=4 resumed=false",
		"ReplyAttach r100 s2 #1 ReadWrite len=0 w=4"}},
	{sRW, "attach", ok, sRW, sE, []string{"ReplyError r202 s3 NotFound"}},
	{sRW, "attachWait", ok, sRW, sE, nil},
	{sRW, "attachID", ok, sRW, sE, []string{"ReplyError r207 s3 NotFound"}},
	{sRW, "cancel", ok, sE, sE, []string{"ReplyError r100 s2 Canceled"}},
	{sRW, "appended", inf, sRW, sE, nil},
	{sRW, "readerWait", inf, sRW, sE, []string{"ReplyError r204 s3 Illegal+NotFound"}},
	{sRW, "close", inf, sRW, sE, []string{"ReplyError r205 s1 Illegal+NotFound"}},
	{sRW, "readDone", inf, sRW, sE, nil},
	{sRW, "detach", inf, sRW, sE, nil},
	{sRW, "setAttr", inf, sRW, sE, []string{"ReplyError r206 s3 Illegal+NotFound"}},
	{sRW, "lostReader", ok, sE, sE, nil},
	{sRW, "lostWriter", ok, sE, sE, []string{"ReplyError r100 s2 SpaceDeleted", "DeleteSpace"}},

	// Writing: #1 written by session 1, length 0, no reader.
	{sW, "open", ok, sE, sW, nil},
	{sW, "closeLast", ok, sE, sW, nil},
	{sW, "tick", ok, sE, sW, nil},
	{sW, "create", ok, sE, sW, []string{"ReplyCreate r200 s3 #2 Writing len=0 w=3 resumed=false"}},
	{sW, "resume", ok, sE, sW, []string{"ReplyCreate r201 s4 #1 Writing len=0 w=4 resumed=true"}},
	{sW, "resumeElem", ok, sE, sW, []string{"ReplyError r201 s4 ElemType"}},
	{sW, "attach", ok, sE, sX, []string{"ReplyAttach r202 s3 #1 ReadWrite len=0 w=1"}},
	{sW, "attachElem", ok, sE, sW, []string{"ReplyError r202 s3 ElemType"}},
	{sW, "attachWait", ok, sE, sX, []string{"ReplyAttach r203 s3 #1 ReadWrite len=0 w=1"}},
	{sW, "attachID", ok, sE, sX, []string{"ReplyAttach r207 s3 #1 ReadWrite len=0 w=1"}},
	{sW, "cancel", ill, sE, sW, nil},
	{sW, "appended", ok, sE, sW, nil},
	{sW, "readerWait", ok, sE, sA, nil},
	{sW, "waitNeg", ill, sE, sW, []string{"ReplyError r204 s3 Illegal"}},
	{sW, "close", ok, sE, sV, []string{"ReplyClose r205 s1 #1 Available len=10 w=1 sealed"}},
	{sW, "closeOther", iwr, sE, sW, []string{"ReplyError r205 s3 Illegal+NotWriter"}},
	{sW, "readDone", ill, sE, sW, nil},
	{sW, "detach", ill, sE, sW, nil},
	{sW, "detachW", ok, sE, sW, nil},
	{sW, "setAttr", ok, sE, sW, []string{"ReplyOK r206 s3"}},
	{sW, "lostReader", ok, sE, sW, nil},
	{sW, "lostWriter", ok, sE, sW, nil},

	// ReadWrite: session 2 attached to #1.
	{sX, "open", ok, sE, sX, nil},
	{sX, "closeLast", ok, sE, sX, nil},
	{sX, "tick", ok, sE, sX, nil},
	{sX, "create", ok, sE, sX, []string{"ReplyCreate r200 s3 #2 Writing len=0 w=3 resumed=false"}},
	{sX, "resume", ok, sE, sX, []string{"ReplyCreate r201 s4 #1 ReadWrite len=0 w=4 resumed=true"}},
	{sX, "attach", ok, sE, sX, []string{"ReplyAttach r202 s3 #1 ReadWrite len=0 w=1"}},
	{sX, "attachWait", ok, sE, sX, []string{"ReplyAttach r203 s3 #1 ReadWrite len=0 w=1"}},
	{sX, "attachID", ok, sE, sX, []string{"ReplyAttach r207 s3 #1 ReadWrite len=0 w=1"}},
	{sX, "cancel", ill, sE, sX, nil},
	{sX, "appended", ok, sE, sX, nil},
	{sX, "readerWait", ok, sE, sA, nil},
	{sX, "close", ok, sE, sV, []string{"ReplyClose r205 s1 #1 Available len=10 w=1 sealed"}},
	{sX, "closeOther", iwr, sE, sX, []string{"ReplyError r205 s3 Illegal+NotWriter"}},
	{sX, "readDone", ill, sE, sX, nil},
	{sX, "detach", ok, sE, sW, nil},
	{sX, "setAttr", ok, sE, sX, []string{"ReplyOK r206 s3"}},
	{sX, "lostReader", ok, sE, sW, nil},
	{sX, "lostWriter", ok, sE, sX, nil},

	// ReaderAhead: session 2's ReaderWait r102 is parked at offset 0.
	{sA, "open", ok, sE, sA, nil},
	{sA, "closeLast", ok, sE, sA, nil},
	{sA, "tick", ok, sE, sA, nil},
	{sA, "create", ok, sE, sA, []string{"ReplyCreate r200 s3 #2 Writing len=0 w=3 resumed=false"}},
	{sA, "resume", ok, sE, sA, []string{"ReplyCreate r201 s4 #1 ReaderAhead len=0 w=4 resumed=true"}},
	{sA, "attach", ok, sE, sA, []string{"ReplyAttach r202 s3 #1 ReaderAhead len=0 w=1"}},
	{sA, "attachWait", ok, sE, sA, []string{"ReplyAttach r203 s3 #1 ReaderAhead len=0 w=1"}},
	{sA, "attachID", ok, sE, sA, []string{"ReplyAttach r207 s3 #1 ReaderAhead len=0 w=1"}},
	{sA, "cancel", ill, sE, sA, nil},
	{sA, "cancelWait", ok, sE, sX, []string{"ReplyError r102 s2 Canceled"}},
	{sA, "appended", ok, sE, sX, []string{"Wake r102 s2 #1 len=20 sealed=false"}},
	{sA, "readerWait", ok, sE, sA, nil},
	{sA, "waitDup", ill, sE, sA, nil},
	{sA, "close", ok, sE, sV, []string{
		"Wake r102 s2 #1 len=10 sealed=true",
		"ReplyClose r205 s1 #1 Available len=10 w=1 sealed"}},
	{sA, "closeOther", iwr, sE, sA, []string{"ReplyError r205 s3 Illegal+NotWriter"}},
	{sA, "readDone", ill, sE, sA, nil},
	{sA, "detach", ok, sE, sW, []string{"ReplyError r102 s2 Canceled"}},
	{sA, "setAttr", ok, sE, sA, []string{"ReplyOK r206 s3"}},
	{sA, "lostReader", ok, sE, sW, nil},
	{sA, "lostWriter", ok, sE, sA, nil},

	// Available: #1 sealed at 10, not read, no reader.
	{sV, "open", ok, sE, sV, nil},
	{sV, "closeLast", ok, sE, sV, nil},
	{sV, "tick", ok, sE, sV, nil},
	{sV, "create", ok, sE, sV, []string{"ReplyCreate r200 s3 #2 Writing len=0 w=3 resumed=false"}},
	{sV, "resume", ok, sE, sV, []string{"ReplyCreate r201 s4 #1 Available len=10 w=4 sealed resumed=true"}},
	{sV, "attach", ok, sE, sV, []string{"ReplyAttach r202 s3 #1 Available len=10 w=1 sealed"}},
	{sV, "attachWait", ok, sE, sV, []string{"ReplyAttach r203 s3 #1 Available len=10 w=1 sealed"}},
	{sV, "attachID", ok, sE, sV, []string{"ReplyAttach r207 s3 #1 Available len=10 w=1 sealed"}},
	{sV, "cancel", ill, sE, sV, nil},
	{sV, "appended", isl, sE, sV, nil},
	{sV, "appendedLow", ok, sE, sV, nil},
	{sV, "readerWait", ok, sE, sV, []string{"Wake r204 s3 #1 len=10 sealed=true"}},
	{sV, "close", ok, sE, sV, []string{"ReplyClose r205 s1 #1 Available len=10 w=1 sealed"}},
	{sV, "closeOther", iwr, sE, sV, []string{"ReplyError r205 s3 Illegal+NotWriter"}},
	{sV, "closeDiff", isl, sE, sV, []string{"ReplyError r205 s1 Illegal+Sealed"}},
	{sV, "readDone", ok, sE, sV, nil},
	{sV, "detach", ill, sE, sV, nil},
	{sV, "setAttr", ok, sE, sV, []string{"ReplyOK r206 s3"}},
	{sV, "lostReader", ok, sE, sV, nil},
	{sV, "lostWriter", ok, sE, sV, nil},

	// Deleted: the space is gone; only Tick and SessionLost pass.
	{sD, "open", isd, sE, sD, nil},
	{sD, "closeLast", isd, sE, sD, nil},
	{sD, "tick", ok, sE, sD, nil},
	{sD, "create", isd, sE, sD, []string{"ReplyError r200 s3 Illegal+SpaceDeleted"}},
	{sD, "resume", isd, sE, sD, []string{"ReplyError r201 s4 Illegal+SpaceDeleted"}},
	{sD, "attach", isd, sE, sD, []string{"ReplyError r202 s3 Illegal+SpaceDeleted"}},
	{sD, "attachWait", isd, sE, sD, []string{"ReplyError r203 s3 Illegal+SpaceDeleted"}},
	{sD, "attachID", isd, sE, sD, []string{"ReplyError r207 s3 Illegal+SpaceDeleted"}},
	{sD, "cancel", isd, sE, sD, nil},
	{sD, "appended", isd, sE, sD, nil},
	{sD, "readerWait", isd, sE, sD, []string{"ReplyError r204 s3 Illegal+SpaceDeleted"}},
	{sD, "close", isd, sE, sD, []string{"ReplyError r205 s1 Illegal+SpaceDeleted"}},
	{sD, "readDone", isd, sE, sD, nil},
	{sD, "detach", isd, sE, sD, nil},
	{sD, "setAttr", isd, sE, sD, []string{"ReplyError r206 s3 Illegal+SpaceDeleted"}},
	{sD, "lostReader", ok, sE, sD, nil},
	{sD, "lostWriter", ok, sE, sD, nil},
}

// newInState builds a space from setups[st] and checks the setup reached st.
func newInState(t *testing.T, st State) *Space {
	t.Helper()
	s := NewSpace("job/1", Config{Lease: 100})
	for _, ev := range setups[st] {
		if err := s.Step(ev); err != nil {
			t.Fatalf("setup %s: Step(%#v): %v", st, ev, err)
		}
	}
	s.Advance()
	s.Ready()
	s.Advance()
	got := instState(s, 1)
	if st == StateEmpty || st == StateReaderWaiting {
		got = s.NameState("ch")
	}
	if got != st {
		t.Fatalf("setup %s reached %s", st, got)
	}
	return s
}

func TestTableEveryStateEveryEvent(t *testing.T) {
	for _, r := range tableRows {
		t.Run(fmt.Sprintf("%s/%s", r.state, r.ev), func(t *testing.T) {
			ev, found := tableEvents[r.ev]
			if !found {
				t.Fatalf("unknown event label %q", r.ev)
			}
			s := newInState(t, r.state)
			err := s.Step(ev)
			if got := fmtErr(err); got != r.err {
				t.Fatalf("Step error = %s (%v), want %s", got, err, r.err)
			}
			wantActions(t, "after "+r.ev, drain(s), r.want...)
			if got := s.NameState("ch"); got != r.name {
				t.Errorf("name state = %s, want %s", got, r.name)
			}
			if got := instState(s, 1); got != r.inst {
				t.Errorf("instance state = %s, want %s", got, r.inst)
			}
			if err := checkInvariants(s); err != nil {
				t.Errorf("invariants: %v", err)
			}
		})
	}
}

// TestTableCoversEveryPair checks the table drives every state with every
// event type.
func TestTableCoversEveryPair(t *testing.T) {
	types := []Event{OpenSpace{}, CloseSpace{}, Tick{}, Create{}, Attach{}, CancelAttach{},
		Appended{}, ReaderWait{}, Close{}, ReadDone{}, Detach{}, SetAttr{}, SessionLost{}}
	seen := map[State]map[reflect.Type]bool{}
	for _, r := range tableRows {
		if seen[r.state] == nil {
			seen[r.state] = map[reflect.Type]bool{}
		}
		seen[r.state][reflect.TypeOf(tableEvents[r.ev])] = true
	}
	for st := StateEmpty; st <= StateDeleted; st++ {
		for _, ev := range types {
			if !seen[st][reflect.TypeOf(ev)] {
				t.Errorf("no row for (%s, %s)", st, eventName(ev))
			}
		}
	}
}

// TestTableSideEffects checks the effects the rendered actions do not show.
func TestTableSideEffects(t *testing.T) {
	s := newInState(t, StateAvailable)
	mustStep(t, s, ReadDone{Session: 3, Instance: 1})
	if i, _ := s.Instance(1); !i.Read {
		t.Errorf("ReadDone did not mark #1 read")
	}
	s = newInState(t, StateWriting)
	mustStep(t, s, Detach{Session: 1, Instance: 1})
	if i, _ := s.Instance(1); i.WriterSession != NoSession {
		t.Errorf("writer detach left writer %d", i.WriterSession)
	}
	s = newInState(t, StateWriting)
	mustStep(t, s, Appended{Instance: 1, Length: 20})
	mustStep(t, s, Appended{Instance: 1, Length: 5})
	if i, _ := s.Instance(1); i.Length != 20 {
		t.Errorf("length = %d after smaller report, want 20", i.Length)
	}
	s = newInState(t, StateWriting)
	mustStep(t, s, SetAttr{Req: 9, Session: 3, Instance: 1, Key: "k", Value: "v"})
	if i, _ := s.Instance(1); i.Attrs["k"] != "v" {
		t.Errorf("attrs = %v", i.Attrs)
	}
	s = newInState(t, StateWriting)
	mustStep(t, s, Create{Req: 9, Session: 4, Name: "ch", Elem: 2, WriterKey: "k", DirectAddr: "w:2"})
	if i, _ := s.Instance(1); i.DirectAddr != "w:2" || i.WriterSession != 4 {
		t.Errorf("resume: direct %q writer %d", i.DirectAddr, i.WriterSession)
	}
	if len(s.Instances()) != 1 {
		t.Errorf("resume made a new instance")
	}
}

// TestStepDeletedInstance drives the Deleted instance step function
// directly: a deleted Space rejects events before they reach instances.
func TestStepDeletedInstance(t *testing.T) {
	s := newInState(t, StateDeleted)
	i := s.insts[1]
	for label, ev := range tableEvents {
		err := i.step(s, i, ev)
		switch ev.(type) {
		case SessionLost:
			if err != nil {
				t.Errorf("%s: %v", label, err)
			}
		default:
			if got := fmtErr(err); got != isd {
				t.Errorf("%s: error %s, want %s", label, got, isd)
			}
		}
		if i.state != StateDeleted {
			t.Errorf("%s: left Deleted for %s", label, i.state)
		}
	}
}

// TestStepRejectsBadInput covers input no state accepts.
func TestStepRejectsBadInput(t *testing.T) {
	for st := range setups {
		s := newInState(t, st)
		var nilCreate *Create
		for _, ev := range []Event{nil, nilCreate} {
			if got := fmtErr(s.Step(ev)); got != ill {
				t.Errorf("%s: Step(%v) = %s, want %s", st, ev, got, ill)
			}
		}
		if st == StateDeleted {
			continue
		}
		err := s.Step(Create{Req: 5, Session: NoSession, Name: "ch"})
		if got := fmtErr(err); got != ill {
			t.Errorf("%s: session 0: %s", st, got)
		}
		wantActions(t, "session 0", drain(s), "ReplyError r5 s0 Illegal")
		err = s.Step(Create{Req: 6, Session: 3, Name: ""})
		if got := fmtErr(err); got != ill {
			t.Errorf("%s: empty name: %s", st, got)
		}
		wantActions(t, "empty name", drain(s), "ReplyError r6 s3 Illegal")
		if got := fmtErr(s.Step(CloseSpace{Session: 3})); got != ill {
			t.Errorf("%s: close by non-user: %s", st, got)
		}
		if err := checkInvariants(s); err != nil {
			t.Errorf("%s: %v", st, err)
		}
	}
}

// TestStepAcceptsPointers checks that pointer events behave as values.
func TestStepAcceptsPointers(t *testing.T) {
	s := NewSpace("p", Config{})
	mustStep(t, s, &OpenSpace{Session: 1})
	got := mustStep(t, s, &Create{Req: 1, Session: 1, Name: "x"})
	wantActions(t, "create", got, "ReplyCreate r1 s1 #1 Writing len=0 w=1 resumed=false")
	if s.Users() != 1 {
		t.Errorf("users = %d", s.Users())
	}
}

func TestStateString(t *testing.T) {
	want := []string{"Empty", "Writing", "Available", "ReaderWaiting", "ReadWrite", "ReaderAhead", "Deleted"}
	for i, w := range want {
		if got := State(i).String(); got != w {
			t.Errorf("State(%d) = %q, want %q", i, got, w)
		}
	}
	if got := State(99).String(); got != "State(99)" {
		t.Errorf("State(99) = %q", got)
	}
}

// TestStepFunctionsRejectForeignEvents calls each state's step function
// directly with the events Space.Step never routes to it (space-level
// events to instances, instance events to name entries): each is rejected
// explicitly and leaves the state alone.
func TestStepFunctionsRejectForeignEvents(t *testing.T) {
	entryLegal := map[reflect.Type]bool{
		reflect.TypeOf(Create{}): true, reflect.TypeOf(Attach{}): true,
		reflect.TypeOf(CancelAttach{}): true, reflect.TypeOf(SessionLost{}): true,
	}
	for _, st := range []State{StateEmpty, StateReaderWaiting} {
		for label, ev := range tableEvents {
			if entryLegal[reflect.TypeOf(ev)] {
				continue
			}
			s := newInState(t, st)
			e := s.entries["ch"]
			if e == nil {
				e = newEntry("ch")
			}
			if got := fmtErr(e.step(s, e, ev)); got != ill {
				t.Errorf("%s/%s: %s, want %s", st, label, got, ill)
			}
			if e.state != st {
				t.Errorf("%s/%s: moved to %s", st, label, e.state)
			}
		}
	}
	foreign := []Event{OpenSpace{Session: 3}, CloseSpace{Session: 1}, Tick{Now: 5},
		CancelAttach{Req: 100, Session: 2}}
	for _, st := range []State{StateWriting, StateReadWrite, StateReaderAhead, StateAvailable} {
		for _, ev := range foreign {
			s := newInState(t, st)
			i := s.insts[1]
			if got := fmtErr(i.step(s, i, ev)); got != ill {
				t.Errorf("%s/%s: %s, want %s", st, eventName(ev), got, ill)
			}
			if i.state != st {
				t.Errorf("%s/%s: moved to %s", st, eventName(ev), i.state)
			}
			wantActions(t, eventName(ev), drain(s))
		}
	}
}
