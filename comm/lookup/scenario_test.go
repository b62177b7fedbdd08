package lookup

import (
	"errors"
	"testing"
)

func TestScenarioFIFOByCreationOrder(t *testing.T) {
	s := NewSpace("job/fifo", Config{})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "x"})
	mustStep(t, s, Create{Req: 2, Session: 1, Name: "x"})
	mustStep(t, s, Create{Req: 3, Session: 1, Name: "y"})

	got := mustStep(t, s, Attach{Req: 10, Session: 2, Name: "x", Elem: ElemAny})
	wantActions(t, "first attach", got, "ReplyAttach r10 s2 #1 ReadWrite len=0 w=1")
	// Still unread: a second reader gets #1 too.
	got = mustStep(t, s, Attach{Req: 11, Session: 3, Name: "x", Elem: ElemAny})
	wantActions(t, "second attach", got, "ReplyAttach r11 s3 #1 ReadWrite len=0 w=1")
	if err := s.Step(ReadDone{Session: 2, Instance: 1}); !errors.Is(err, ErrIllegal) {
		t.Fatalf("ReadDone of an unsealed instance: %v", err)
	}
	drain(s)

	mustStep(t, s, Close{Req: 4, Session: 1, Instance: 1, Length: 0})
	mustStep(t, s, ReadDone{Session: 2, Instance: 1})
	got = mustStep(t, s, Attach{Req: 12, Session: 2, Name: "x", Elem: ElemAny})
	wantActions(t, "after #1 read", got, "ReplyAttach r12 s2 #2 ReadWrite len=0 w=1")
	got = mustStep(t, s, Attach{Req: 13, Session: 2, Name: "x", Elem: ElemAny, Any: true})
	wantActions(t, "attach any", got, "ReplyAttach r13 s2 #1 Available len=0 w=1 sealed read")

	mustStep(t, s, Close{Req: 5, Session: 1, Instance: 2, Length: 0})
	mustStep(t, s, ReadDone{Session: 2, Instance: 2})
	got = mustStep(t, s, Attach{Req: 14, Session: 2, Name: "x", Elem: ElemAny})
	wantActions(t, "all read", got, "ReplyError r14 s2 NotFound")
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}

func TestScenarioMulticastToWaiters(t *testing.T) {
	s := NewSpace("job/mc", Config{})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "m", Elem: 10, Wait: true})
	mustStep(t, s, Attach{Req: 1, Session: 3, Name: "m", Elem: ElemAny, Wait: true})
	mustStep(t, s, Attach{Req: 2, Session: 4, Name: "other", Elem: ElemAny, Wait: true})
	if st := s.NameState("m"); st != StateReaderWaiting {
		t.Fatalf("name state %s", st)
	}
	got := mustStep(t, s, Create{Req: 7, Session: 1, Name: "m", Elem: 10})
	wantActions(t, "create", got,
		"ReplyCreate r7 s1 #1 Writing len=0 w=1 resumed=false",
		"ReplyAttach r1 s2 #1 ReadWrite len=0 w=1",
		"ReplyAttach r1 s3 #1 ReadWrite len=0 w=1")
	if st := s.NameState("m"); st != StateEmpty {
		t.Errorf("name state after create %s", st)
	}
	if st := s.NameState("other"); st != StateReaderWaiting {
		t.Errorf("other name state %s", st)
	}
	// A later create of the same name is a second instance nobody waits for.
	got = mustStep(t, s, Create{Req: 8, Session: 1, Name: "m", Elem: 10})
	wantActions(t, "second create", got, "ReplyCreate r8 s1 #2 Writing len=0 w=1 resumed=false")
	// A waiter whose element type the new instance does not match is
	// answered with ErrElemType.
	mustStep(t, s, Attach{Req: 3, Session: 5, Name: "typed", Elem: 9, Wait: true})
	got = mustStep(t, s, Create{Req: 9, Session: 1, Name: "typed", Elem: 10})
	wantActions(t, "typed", got,
		"ReplyCreate r9 s1 #3 Writing len=0 w=1 resumed=false",
		"ReplyError r3 s5 ElemType")
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}

func TestScenarioResumeByWriterKey(t *testing.T) {
	s := NewSpace("job/resume", Config{})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "halo", Elem: 10, WriterKey: "r3", DirectAddr: "a:1",
		Attrs: map[string]string{"iter": "7"}})
	mustStep(t, s, Appended{Instance: 1, Length: 100})
	mustStep(t, s, SessionLost{Session: 1})
	i, _ := s.Instance(1)
	if i.WriterSession != NoSession || i.State != StateWriting || i.Length != 100 {
		t.Fatalf("after writer loss: %s", fmtInfo(i))
	}
	if s.Users() != 0 || s.Deleted() {
		t.Fatalf("users %d deleted %t", s.Users(), s.Deleted())
	}

	mustStep(t, s, OpenSpace{Session: 5})
	got := mustStep(t, s, Create{Req: 1, Session: 5, Name: "halo", Elem: 10, WriterKey: "r3", DirectAddr: "b:2"})
	wantActions(t, "resume", got, "ReplyCreate r1 s5 #1 Writing len=100 w=5 resumed=true")
	i, _ = s.Instance(1)
	if i.DirectAddr != "b:2" || i.Attrs["iter"] != "7" || len(s.Instances()) != 1 {
		t.Fatalf("resumed instance %+v, %d instances", i, len(s.Instances()))
	}
	// The lost incarnation cannot close; the new one can.
	if err := s.Step(Close{Req: 2, Session: 1, Instance: 1, Length: 100}); !errors.Is(err, ErrNotWriter) {
		t.Fatalf("close by old writer: %v", err)
	}
	drain(s)
	got = mustStep(t, s, Close{Req: 2, Session: 5, Instance: 1, Length: 120})
	wantActions(t, "close", got, "ReplyClose r2 s5 #1 Available len=120 w=5 sealed")

	// A third incarnation that restarts after the close learns it is done.
	got = mustStep(t, s, Create{Req: 3, Session: 6, Name: "halo", Elem: 10, WriterKey: "r3"})
	wantActions(t, "resume sealed", got, "ReplyCreate r3 s6 #1 Available len=120 w=6 sealed resumed=true")
	got = mustStep(t, s, Close{Req: 4, Session: 6, Instance: 1, Length: 120})
	wantActions(t, "idempotent close", got, "ReplyClose r4 s6 #1 Available len=120 w=6 sealed")
	// Another key, or no key, is a new instance.
	got = mustStep(t, s, Create{Req: 5, Session: 6, Name: "halo", Elem: 10, WriterKey: "r4"})
	wantActions(t, "other key", got, "ReplyCreate r5 s6 #2 Writing len=0 w=6 resumed=false")
}

func TestScenarioReaderAheadWake(t *testing.T) {
	s := NewSpace("job/ahead", Config{})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "s"})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "s", Elem: ElemAny})
	got := mustStep(t, s, ReaderWait{Req: 2, Session: 2, Instance: 1, Offset: 0})
	wantActions(t, "park", got)
	if st := instState(s, 1); st != StateReaderAhead {
		t.Fatalf("state %s", st)
	}
	got = mustStep(t, s, Appended{Instance: 1, Length: 50})
	wantActions(t, "grow", got, "Wake r2 s2 #1 len=50 sealed=false")
	if st := instState(s, 1); st != StateReadWrite {
		t.Fatalf("state after wake %s", st)
	}
	// Two readers park at different offsets; growth wakes only the passed one.
	mustStep(t, s, ReaderWait{Req: 3, Session: 2, Instance: 1, Offset: 50})
	mustStep(t, s, ReaderWait{Req: 1, Session: 3, Instance: 1, Offset: 70})
	got = mustStep(t, s, ReaderWait{Req: 2, Session: 3, Instance: 1, Offset: 30})
	wantActions(t, "behind the end", got, "Wake r2 s3 #1 len=50 sealed=false")
	got = mustStep(t, s, Appended{Instance: 1, Length: 60})
	wantActions(t, "partial", got, "Wake r3 s2 #1 len=60 sealed=false")
	if st := instState(s, 1); st != StateReaderAhead {
		t.Fatalf("state with one parked %s", st)
	}
	got = mustStep(t, s, Close{Req: 9, Session: 1, Instance: 1, Length: 65})
	wantActions(t, "seal", got,
		"Wake r1 s3 #1 len=65 sealed=true",
		"ReplyClose r9 s1 #1 Available len=65 w=1 sealed")
	got = mustStep(t, s, ReaderWait{Req: 4, Session: 2, Instance: 1, Offset: 65})
	wantActions(t, "at end of sealed", got, "Wake r4 s2 #1 len=65 sealed=true")
	// The cache's late report of the sealed length is fine.
	mustStep(t, s, Appended{Instance: 1, Length: 65})
}

// TestScenarioReaderAheadOfCache: a reader fed by the direct path may be
// past the durable length; it is woken only once the cache passes it.
func TestScenarioReaderAheadOfCache(t *testing.T) {
	s := NewSpace("job/direct", Config{})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "s"})
	mustStep(t, s, Appended{Instance: 1, Length: 40})
	wantActions(t, "park past the end", mustStep(t, s, ReaderWait{Req: 2, Session: 2, Instance: 1, Offset: 50}))
	wantActions(t, "not yet", mustStep(t, s, Appended{Instance: 1, Length: 45}))
	wantActions(t, "reached, not passed", mustStep(t, s, Appended{Instance: 1, Length: 50}))
	got := mustStep(t, s, Appended{Instance: 1, Length: 51})
	wantActions(t, "passed", got, "Wake r2 s2 #1 len=51 sealed=false")
}

func TestScenarioLeaseReclaim(t *testing.T) {
	s := NewSpace("job/lease", Config{Lease: 10})
	mustStep(t, s, Tick{Now: 1000})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a"})
	mustStep(t, s, Create{Req: 2, Session: 1, Name: "b"})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "c", Elem: ElemAny, Wait: true})
	mustStep(t, s, ReaderWait{Req: 2, Session: 2, Instance: 2, Offset: 0})
	mustStep(t, s, Tick{Now: 1005})
	mustStep(t, s, CloseSpace{Session: 1})
	if s.Deleted() {
		t.Fatal("deleted with unsealed data")
	}
	wantActions(t, "before lease", mustStep(t, s, Tick{Now: 1014}))
	// A new user cancels the lease; its close starts a new one.
	mustStep(t, s, OpenSpace{Session: 3})
	wantActions(t, "open", mustStep(t, s, Tick{Now: 1100}))
	mustStep(t, s, CloseSpace{Session: 3})
	wantActions(t, "restarted lease", mustStep(t, s, Tick{Now: 1109}))
	got := mustStep(t, s, Tick{Now: 1110})
	wantActions(t, "reclaim", got,
		"ReplyError r1 s2 SpaceDeleted",
		"ReplyError r2 s2 SpaceDeleted",
		"DeleteInstance #1", "DeleteInstance #2", "DeleteSpace")
	if !s.Deleted() || instState(s, 1) != StateDeleted {
		t.Fatalf("deleted %t, #1 %s", s.Deleted(), instState(s, 1))
	}
	if err := s.Step(OpenSpace{Session: 4}); !errors.Is(err, ErrSpaceDeleted) {
		t.Fatalf("open after delete: %v", err)
	}
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}

// TestScenarioLeaseClockOrigin: a lease started before the first Tick runs
// from that Tick, whatever the driver's clock origin.
func TestScenarioLeaseClockOrigin(t *testing.T) {
	s := NewSpace("job/origin", Config{}) // default lease 3600
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a"})
	mustStep(t, s, CloseSpace{Session: 1})
	mustStep(t, s, Tick{Now: 1_700_000_000})
	if s.Deleted() {
		t.Fatal("reclaimed at the first tick")
	}
	mustStep(t, s, Tick{Now: 1_700_000_000 + DefaultLease - 1})
	if s.Deleted() {
		t.Fatal("reclaimed early")
	}
	mustStep(t, s, Tick{Now: 5}) // time going back is ignored
	mustStep(t, s, Tick{Now: 1_700_000_000 + DefaultLease})
	if !s.Deleted() {
		t.Fatal("not reclaimed after the default lease")
	}
}

func TestScenarioLastCloseDeletesWhenAllRead(t *testing.T) {
	s := NewSpace("job/del", Config{})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, OpenSpace{Session: 2})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a"})
	mustStep(t, s, Close{Req: 2, Session: 1, Instance: 1, Length: 4})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "a", Elem: ElemAny})
	mustStep(t, s, ReadDone{Session: 2, Instance: 1})
	wantActions(t, "not last", mustStep(t, s, CloseSpace{Session: 1}))
	got := mustStep(t, s, CloseSpace{Session: 2})
	wantActions(t, "last close", got, "DeleteInstance #1", "DeleteSpace")
	if !s.Deleted() {
		t.Fatal("not deleted")
	}
}

func TestScenarioLastCloseKeepsUnread(t *testing.T) {
	s := NewSpace("job/keep", Config{Lease: 50})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a"})
	mustStep(t, s, Close{Req: 2, Session: 1, Instance: 1, Length: 4})
	wantActions(t, "close unread", mustStep(t, s, CloseSpace{Session: 1}))
	if s.Deleted() || s.Users() != 0 {
		t.Fatalf("deleted %t users %d", s.Deleted(), s.Users())
	}
	// A late reader (the point of persistence) reads it, then leaves.
	mustStep(t, s, OpenSpace{Session: 2})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "a", Elem: ElemAny})
	mustStep(t, s, ReadDone{Session: 2, Instance: 1})
	got := mustStep(t, s, CloseSpace{Session: 2})
	wantActions(t, "read then close", got, "DeleteInstance #1", "DeleteSpace")
}

func TestScenarioSessionLoss(t *testing.T) {
	s := NewSpace("job/lost", Config{})
	mustStep(t, s, OpenSpace{Session: 1})
	mustStep(t, s, OpenSpace{Session: 2})
	mustStep(t, s, OpenSpace{Session: 2})
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a"})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "a", Elem: ElemAny})
	mustStep(t, s, ReaderWait{Req: 2, Session: 2, Instance: 1, Offset: 0})
	mustStep(t, s, Attach{Req: 3, Session: 2, Name: "later", Elem: ElemAny, Wait: true})
	mustStep(t, s, Attach{Req: 3, Session: 3, Name: "later", Elem: ElemAny, Wait: true})

	got := mustStep(t, s, SessionLost{Session: 2})
	wantActions(t, "loss answers nothing", got)
	if s.Users() != 1 {
		t.Fatalf("users %d, want 1 (both opens of session 2 closed)", s.Users())
	}
	if st := instState(s, 1); st != StateWriting {
		t.Fatalf("#1 state %s", st)
	}
	wantActions(t, "no wake for lost reader", mustStep(t, s, Appended{Instance: 1, Length: 9}))
	got = mustStep(t, s, Create{Req: 4, Session: 1, Name: "later"})
	wantActions(t, "only live waiter served", got,
		"ReplyCreate r4 s1 #2 Writing len=0 w=1 resumed=false",
		"ReplyAttach r3 s3 #2 ReadWrite len=0 w=1")
	// Its waiter is gone, so cancelling it is illegal.
	if err := s.Step(CancelAttach{Req: 3, Session: 2}); !errors.Is(err, ErrIllegal) {
		t.Fatalf("cancel after loss: %v", err)
	}
	// The writer's loss keeps the data and, as last user, starts the lease.
	wantActions(t, "writer lost", mustStep(t, s, SessionLost{Session: 1}))
	if s.Deleted() || s.Users() != 0 || !s.leasing {
		t.Fatalf("deleted %t users %d leasing %t", s.Deleted(), s.Users(), s.leasing)
	}
	if i, _ := s.Instance(1); i.WriterSession != NoSession || i.Length != 9 {
		t.Fatalf("#1 after writer loss: %s", fmtInfo(i))
	}
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
}

func TestScenarioCancelAndDetach(t *testing.T) {
	s := NewSpace("job/cancel", Config{})
	mustStep(t, s, Attach{Req: 1, Session: 2, Name: "a", Elem: ElemAny, Wait: true})
	mustStep(t, s, Attach{Req: 2, Session: 2, Name: "a", Elem: ElemAny, Wait: true})
	got := mustStep(t, s, CancelAttach{Req: 1, Session: 2})
	wantActions(t, "cancel", got, "ReplyError r1 s2 Canceled")
	if st := s.NameState("a"); st != StateReaderWaiting {
		t.Fatalf("one waiter left, state %s", st)
	}
	mustStep(t, s, Create{Req: 3, Session: 1, Name: "a"})
	// Attached twice (two handles): the first detach keeps the reader.
	mustStep(t, s, Attach{Req: 4, Session: 2, Instance: 1, Elem: ElemAny})
	mustStep(t, s, ReaderWait{Req: 5, Session: 2, Instance: 1, Offset: 0})
	wantActions(t, "first detach", mustStep(t, s, Detach{Session: 2, Instance: 1}))
	if st := instState(s, 1); st != StateReaderAhead {
		t.Fatalf("state %s", st)
	}
	got = mustStep(t, s, Detach{Session: 2, Instance: 1})
	wantActions(t, "last detach", got, "ReplyError r5 s2 Canceled")
	if st := instState(s, 1); st != StateWriting {
		t.Fatalf("state %s", st)
	}
}

func TestReadyAdvance(t *testing.T) {
	s := NewSpace("job/ready", Config{})
	if s.Ready() != nil || s.HasReady() {
		t.Fatal("fresh space has actions")
	}
	mustStepNoDrain(t, s, Create{Req: 1, Session: 1, Name: "a"})
	first := s.Ready()
	mustStepNoDrain(t, s, Create{Req: 2, Session: 1, Name: "a"})
	s.Advance() // confirms only the first
	wantActions(t, "kept", fmtActions(first), "ReplyCreate r1 s1 #1 Writing len=0 w=1 resumed=false")
	rest := s.Ready()
	wantActions(t, "rest", fmtActions(rest), "ReplyCreate r2 s1 #2 Writing len=0 w=1 resumed=false")
	s.Advance()
	if s.HasReady() {
		t.Fatal("actions left after Advance")
	}
	wantActions(t, "first still valid", fmtActions(first), "ReplyCreate r1 s1 #1 Writing len=0 w=1 resumed=false")
}

func mustStepNoDrain(t *testing.T, s *Space, ev Event) {
	t.Helper()
	if err := s.Step(ev); err != nil {
		t.Fatal(err)
	}
}

func TestInfoIsACopy(t *testing.T) {
	s := NewSpace("job/copy", Config{})
	attrs := map[string]string{"a": "1"}
	mustStep(t, s, Create{Req: 1, Session: 1, Name: "a", Attrs: attrs})
	attrs["a"] = "changed"
	i, _ := s.Instance(1)
	i.Attrs["a"] = "changed too"
	if j, _ := s.Instance(1); j.Attrs["a"] != "1" {
		t.Fatalf("attrs leaked: %v", j.Attrs)
	}
}
