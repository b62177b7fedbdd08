package lookup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// model drives a Space with random events and checks, after every step,
// the invariants a driver relies on.
type model struct {
	r *rand.Rand
	s *Space

	nextReq ReqID
	issued  map[reqKey]string // request -> event name
	answers map[reqKey]int
	dropped map[reqKey]bool // waiting when its session was lost
	waits   []reqKey        // Attach and ReaderWait requests, for CancelAttach
	maxID   InstanceID
	lastNew InstanceID // ID of the last non-resumed ReplyCreate
	lengths map[InstanceID]int64
	offsets map[reqKey]int64 // ReaderWait offsets
	deleted map[InstanceID]bool
	gone    bool // DeleteSpace seen
	log     []string
}

func newModel(seed uint64) *model {
	return &model{
		r:       rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		s:       NewSpace("job/rand", Config{Lease: 1 + int64(seed%40)}),
		issued:  map[reqKey]string{},
		answers: map[reqKey]int{},
		dropped: map[reqKey]bool{},
		lengths: map[InstanceID]int64{},
		offsets: map[reqKey]int64{},
		deleted: map[InstanceID]bool{},
	}
}

func (m *model) session() SessionID {
	if m.r.IntN(60) == 0 {
		return NoSession
	}
	return SessionID(1 + m.r.IntN(4))
}

func (m *model) inst() InstanceID { return InstanceID(m.r.IntN(int(m.maxID) + 2)) }

func (m *model) name() string { return []string{"a", "b", "c"}[m.r.IntN(3)] }

func (m *model) elem() uint8 { return []uint8{0, 0, 10, ElemAny}[m.r.IntN(4)] }

func (m *model) length(id InstanceID) int64 {
	return m.lengths[id] + int64(m.r.IntN(30)) - 8
}

func (m *model) req(sess SessionID, name string) (ReqID, SessionID) {
	m.nextReq++
	m.issued[reqKey{sess, m.nextReq}] = name
	return m.nextReq, sess
}

// event returns a random event, weighted towards the interesting ones.
func (m *model) event() Event {
	switch m.r.IntN(14) {
	case 0:
		return OpenSpace{Session: m.session()}
	case 1:
		return CloseSpace{Session: m.session()}
	case 2:
		return Tick{Now: m.s.now + int64(m.r.IntN(15)) - 2}
	case 3:
		req, sess := m.req(m.session(), "Create")
		keys := []string{"", "", "k1", "k2"}
		return Create{Req: req, Session: sess, Name: m.name(), Elem: m.elem() % 255,
			WriterKey: keys[m.r.IntN(len(keys))], DirectAddr: fmt.Sprint("d", m.nextReq)}
	case 4:
		return m.attach()
	case 5:
		if len(m.waits) > 0 && m.r.IntN(4) > 0 {
			k := m.waits[m.r.IntN(len(m.waits))]
			return CancelAttach{Req: k.req, Session: k.sess}
		}
		return CancelAttach{Req: m.nextReq + 1000, Session: m.session()}
	case 6, 7:
		id := m.inst()
		return Appended{Instance: id, Length: m.length(id)}
	case 8:
		id := m.inst()
		req, sess := m.req(m.session(), "ReaderWait")
		off := m.length(id) - 5
		m.offsets[reqKey{sess, req}] = off
		m.waits = append(m.waits, reqKey{sess, req})
		return ReaderWait{Req: req, Session: sess, Instance: id, Offset: off}
	case 9:
		return m.close()
	case 10:
		return ReadDone{Session: m.session(), Instance: m.inst()}
	case 11:
		return Detach{Session: m.session(), Instance: m.inst()}
	case 12:
		req, sess := m.req(m.session(), "SetAttr")
		return SetAttr{Req: req, Session: sess, Instance: m.inst(), Key: []string{"", "k"}[m.r.IntN(2)]}
	}
	return SessionLost{Session: m.session()}
}

func (m *model) attach() Event {
	req, sess := m.req(m.session(), "Attach")
	m.waits = append(m.waits, reqKey{sess, req})
	a := Attach{Req: req, Session: sess, Name: m.name(), Elem: m.elem(),
		Any: m.r.IntN(3) == 0, Wait: m.r.IntN(2) == 0}
	if m.r.IntN(5) == 0 {
		a.Instance = m.inst()
	}
	return a
}

func (m *model) close() Event {
	id := m.inst()
	sess := m.session()
	if i, ok := m.s.Instance(id); ok && m.r.IntN(3) > 0 && i.WriterSession != NoSession {
		sess = i.WriterSession
	}
	req, sess := m.req(sess, "Close")
	n := m.lengths[id]
	if m.r.IntN(3) == 0 {
		n = m.length(id)
	}
	return Close{Req: req, Session: sess, Instance: id, Length: n}
}

// step applies one event and checks everything that must hold after it.
func (m *model) step(ev Event) error {
	if lost, ok := ev.(SessionLost); ok && !m.s.deleted {
		for k := range m.s.waiting {
			if k.sess == lost.Session {
				m.dropped[k] = true
			}
		}
		for k := range m.s.parked {
			if k.sess == lost.Session {
				m.dropped[k] = true
			}
		}
	}
	wasDeleted := m.s.Deleted()
	err := m.s.Step(ev)
	m.log = append(m.log, fmt.Sprintf("%s -> %s", eventName(ev), fmtErr(err)))
	if err != nil && !errors.Is(err, ErrIllegal) {
		return fmt.Errorf("Step(%#v) = %v, does not wrap ErrIllegal", ev, err)
	}
	if wasDeleted && !m.s.Deleted() {
		return fmt.Errorf("space undeleted")
	}
	if err := checkInvariants(m.s); err != nil {
		return fmt.Errorf("after %#v: %w", ev, err)
	}
	return m.checkInstances()
}

// checkInstances: IDs are 1..n in order and lengths never shrink.
func (m *model) checkInstances() error {
	for n, i := range m.s.Instances() {
		if i.ID != InstanceID(n+1) {
			return fmt.Errorf("instance at %d has ID %d", n, i.ID)
		}
		if i.Length < m.lengths[i.ID] {
			return fmt.Errorf("#%d length shrank %d -> %d", i.ID, m.lengths[i.ID], i.Length)
		}
		m.lengths[i.ID] = i.Length
		if i.ID > m.maxID {
			m.maxID = i.ID
		}
	}
	return nil
}

// consume accounts for actions the driver executed.
func (m *model) consume(as []Action) error {
	for _, a := range as {
		m.log = append(m.log, fmtAction(a))
		if e, ok := a.(ReplyError); m.gone && (!ok || !errors.Is(e.Err, ErrSpaceDeleted)) {
			return fmt.Errorf("action %s after DeleteSpace", fmtAction(a))
		}
		if err := m.consumeOne(a); err != nil {
			return err
		}
	}
	return nil
}

func (m *model) consumeOne(a Action) error {
	switch a := a.(type) {
	case DeleteInstance:
		if m.deleted[a.Instance] {
			return fmt.Errorf("#%d deleted twice", a.Instance)
		}
		m.deleted[a.Instance] = true
		return nil
	case DeleteSpace:
		if len(m.deleted) != len(m.s.Instances()) {
			return fmt.Errorf("DeleteSpace after %d of %d DeleteInstance", len(m.deleted), len(m.s.Instances()))
		}
		m.gone = true
		return nil
	case Wake:
		if off := m.offsets[reqKey{a.Session, a.Req}]; !a.Sealed && a.Length <= off {
			return fmt.Errorf("%s wakes a reader at offset %d", fmtAction(a), off)
		}
	case ReplyCreate:
		if !a.Resumed {
			if a.Info.ID != m.lastNew+1 {
				return fmt.Errorf("new instance #%d after #%d", a.Info.ID, m.lastNew)
			}
			m.lastNew = a.Info.ID
		}
	}
	return m.answer(a)
}

func (m *model) answer(a Action) error {
	var k reqKey
	switch a := a.(type) {
	case ReplyCreate:
		k = reqKey{a.Session, a.Req}
	case ReplyAttach:
		k = reqKey{a.Session, a.Req}
	case ReplyClose:
		k = reqKey{a.Session, a.Req}
	case ReplyOK:
		k = reqKey{a.Session, a.Req}
	case ReplyError:
		k = reqKey{a.Session, a.Req}
	case Wake:
		k = reqKey{a.Session, a.Req}
	default:
		return fmt.Errorf("unexpected action %T", a)
	}
	if _, ok := m.issued[k]; !ok {
		return fmt.Errorf("%s answers a request never made", fmtAction(a))
	}
	m.answers[k]++
	if m.answers[k] > 1 {
		return fmt.Errorf("%s answers %s %d/%d a second time", fmtAction(a), m.issued[k], k.sess, k.req)
	}
	return nil
}

// finish checks that every request was answered once, or still waits, or
// was dropped with its session.
func (m *model) finish() error {
	for k, what := range m.issued {
		n := m.answers[k]
		pending := m.s.pending(k)
		switch {
		case n == 1 && !pending:
		case n == 0 && pending:
		case n == 0 && m.dropped[k]:
		default:
			return fmt.Errorf("%s %d/%d: %d answers, pending %t, dropped %t",
				what, k.sess, k.req, n, pending, m.dropped[k])
		}
	}
	return nil
}

// run drives n random events, executing Ready either at once or after
// more steps, as a batching driver would.
func (m *model) run(n int) error {
	var held []Action // Ready returned, not yet Advanced
	for range n {
		if err := m.step(m.event()); err != nil {
			return err
		}
		switch m.r.IntN(3) {
		case 0: // batch: leave actions queued
		case 1:
			held = m.s.Ready()
		default:
			r := m.s.Ready()
			if !slices.Equal(fmtActions(r[:len(held)]), fmtActions(held)) {
				return fmt.Errorf("Ready lost or reordered held actions")
			}
			m.s.Advance()
			if err := m.consume(r); err != nil {
				return err
			}
			held = nil
		}
	}
	r := m.s.Ready()
	m.s.Advance()
	if err := m.consume(r); err != nil {
		return err
	}
	return m.finish()
}

func TestPropertyRandomSequences(t *testing.T) {
	seeds, steps := 400, 200
	if testing.Short() {
		seeds = 50
	}
	for seed := range uint64(seeds) {
		m := newModel(seed)
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return m.run(steps)
		}()
		if err != nil {
			tail := m.log[max(0, len(m.log)-25):]
			t.Fatalf("seed %d: %v\nlast steps:\n%s", seed, err, joinLines(tail))
		}
	}
}

// TestPropertyDeterministic: the same events give the same actions, so
// nothing depends on map order, time or global randomness.
func TestPropertyDeterministic(t *testing.T) {
	for seed := range uint64(20) {
		a, b := newModel(seed), newModel(seed)
		if err := a.run(300); err != nil {
			t.Fatal(err)
		}
		if err := b.run(300); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.log, b.log) {
			t.Fatalf("seed %d: runs differ", seed)
		}
	}
}

func joinLines(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  " + s + "\n"
	}
	return out
}
