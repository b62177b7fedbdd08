package lookup

import (
	"fmt"
	"slices"
)

// reqKey identifies one outstanding request.
type reqKey struct {
	sess SessionID
	req  ReqID
}

// Space is the lookup state of one π-Space: its name entries, their channel
// instances, its users and its lease. It is not safe for concurrent use: one
// driver goroutine owns it (see the package doc).
type Space struct {
	name  string
	lease int64

	now      int64 // last Tick's Now
	ticked   bool  // a Tick has been seen
	opens    map[SessionID]int
	users    int
	leasing  bool  // no users, lease running
	zeroAt   int64 // when users last dropped to zero
	zeroLate bool  // zeroAt is to be set by the next Tick
	deleted  bool

	nextID  InstanceID
	entries map[string]*entry
	names   []*entry // registered entries in creation order
	insts   map[InstanceID]*instance
	order   []*instance // instances in creation (= ID) order

	waiting map[reqKey]*entry    // Attach requests waiting for a Create
	parked  map[reqKey]*instance // ReaderWait requests waiting for data

	out    []Action
	readyN int // len(out) at the last Ready
}

// NewSpace returns an empty space with no users and no running lease.
func NewSpace(name string, cfg Config) *Space {
	return &Space{
		name:    name,
		lease:   cfg.lease(),
		opens:   map[SessionID]int{},
		entries: map[string]*entry{},
		insts:   map[InstanceID]*instance{},
		waiting: map[reqKey]*entry{},
		parked:  map[reqKey]*instance{},
	}
}

// Name returns the space's name.
func (s *Space) Name() string { return s.name }

// Users returns how many opens of the space are not yet closed.
func (s *Space) Users() int { return s.users }

// Deleted reports whether the space was deleted. A deleted space rejects
// every event except Tick and SessionLost with [ErrSpaceDeleted]; the driver
// should discard it and make a new one if the name is opened again.
func (s *Space) Deleted() bool { return s.deleted }

// Instance returns a snapshot of instance id.
func (s *Space) Instance(id InstanceID) (Info, bool) {
	i := s.insts[id]
	if i == nil {
		return Info{}, false
	}
	return i.info(), true
}

// Instances returns snapshots of all instances in creation order.
func (s *Space) Instances() []Info {
	out := make([]Info, 0, len(s.order))
	for _, i := range s.order {
		out = append(out, i.info())
	}
	return out
}

// NameState returns the state of the name entry: [StateReaderWaiting] while
// attach requests wait on name, else [StateEmpty].
func (s *Space) NameState(name string) State {
	if e := s.entries[name]; e != nil {
		return e.state
	}
	return StateEmpty
}

// Ready returns the actions produced since the last [Space.Advance], in the
// order they were produced. The caller must execute them in order and then
// call Advance. The returned slice stays valid after Advance.
func (s *Space) Ready() []Action {
	s.readyN = len(s.out)
	if s.readyN == 0 {
		return nil
	}
	return s.out[:s.readyN:s.readyN]
}

// HasReady reports whether Ready would return any action.
func (s *Space) HasReady() bool { return len(s.out) > 0 }

// Advance tells the space that the actions of the last Ready were executed.
// Actions produced after that Ready are kept for the next one.
func (s *Space) Advance() {
	rest := s.out[s.readyN:]
	s.out = nil
	if len(rest) > 0 {
		s.out = slices.Clone(rest)
	}
	s.readyN = 0
}

// Step applies one event. Its effects are visible at once through the
// query methods; its actions are queued for [Space.Ready].
//
// Step returns nil when the event was accepted, including requests answered
// with [ReplyError] wrapping [ErrNotFound], [ErrElemType] or [ErrCanceled].
// It returns an error wrapping [ErrIllegal] when the event is not allowed in
// the current state, wrapping also the specific reason where there is one
// ([ErrNotFound] for an unknown instance, [ErrNotWriter], [ErrSealed],
// [ErrSpaceDeleted]); if the event is a request, a [ReplyError] carrying the
// same error is queued, except for a request whose (Session, Req) is still
// waiting, which keeps its single answer. It never panics on bad input.
func (s *Space) Step(ev Event) error {
	ev, ok := deref(ev)
	if !ok {
		return fmt.Errorf("lookup: nil event: %w", ErrIllegal)
	}
	if s.deleted {
		return s.stepDeletedSpace(ev)
	}
	if sess, ok := session(ev); ok && sess == NoSession {
		return s.reject(StateEmpty, ev, ErrIllegal, "session 0 is reserved")
	}
	if k, ok := request(ev); ok && s.pending(k) {
		// Replying would answer the outstanding request twice.
		return fmt.Errorf("lookup: %s: request %d of session %d is already waiting: %w",
			eventName(ev), k.req, k.sess, ErrIllegal)
	}
	return s.dispatch(ev)
}

func (s *Space) dispatch(ev Event) error {
	switch e := ev.(type) {
	case OpenSpace:
		return s.openSpace(e)
	case CloseSpace:
		return s.closeSpace(e)
	case Tick:
		return s.tick(e)
	case SessionLost:
		return s.sessionLost(e)
	case Create:
		return s.toName(e.Name, e)
	case Attach:
		return s.routeAttach(e)
	case CancelAttach:
		return s.routeCancel(e)
	case Appended:
		return s.toInstance(e.Instance, e)
	case ReaderWait:
		return s.toInstance(e.Instance, e)
	case Close:
		return s.toInstance(e.Instance, e)
	case ReadDone:
		return s.toInstance(e.Instance, e)
	case Detach:
		return s.toInstance(e.Instance, e)
	case SetAttr:
		return s.toInstance(e.Instance, e)
	}
	return fmt.Errorf("lookup: unknown event %T: %w", ev, ErrIllegal)
}

// stepDeletedSpace handles every event once the space is deleted.
func (s *Space) stepDeletedSpace(ev Event) error {
	switch ev.(type) {
	case Tick, SessionLost:
		return nil // nothing left to expire or clean up
	}
	return s.reject(StateDeleted, ev, ErrSpaceDeleted, "space %q", s.name)
}

func (s *Space) pending(k reqKey) bool {
	_, w := s.waiting[k]
	_, p := s.parked[k]
	return w || p
}

// toName routes a name-addressed event to its entry, creating an
// unregistered entry for an unknown name.
func (s *Space) toName(name string, ev Event) error {
	if name == "" {
		return s.reject(StateEmpty, ev, ErrIllegal, "empty channel name")
	}
	e := s.entries[name]
	if e == nil {
		e = newEntry(name)
	}
	return e.step(s, e, ev)
}

// toInstance routes an instance-addressed event. An unknown instance is in
// state Empty, where no instance event is legal.
func (s *Space) toInstance(id InstanceID, ev Event) error {
	i := s.insts[id]
	if i == nil {
		return s.reject(StateEmpty, ev, ErrNotFound, "instance %d does not exist", id)
	}
	return i.step(s, i, ev)
}

// routeAttach sends an attach by name to the name entry and an attach of a
// given instance to that instance. An unknown instance is a normal answer.
func (s *Space) routeAttach(a Attach) error {
	if a.Instance == 0 {
		return s.toName(a.Name, a)
	}
	i := s.insts[a.Instance]
	if i == nil || (a.Name != "" && a.Name != i.name) {
		s.replyErr(a.Req, a.Session, fmt.Errorf("lookup: attach %q instance %d: %w",
			a.Name, a.Instance, ErrNotFound))
		return nil
	}
	return i.step(s, i, a)
}

// routeCancel sends a cancel to the entry its Attach waits on, or to the
// instance its ReaderWait is parked on. If the request is not waiting
// (never was, or already answered) the event is illegal.
func (s *Space) routeCancel(c CancelAttach) error {
	k := reqKey{c.Session, c.Req}
	if e := s.waiting[k]; e != nil {
		return e.step(s, e, c)
	}
	if i := s.parked[k]; i != nil {
		return i.step(s, i, c)
	}
	return s.reject(StateEmpty, c, ErrIllegal, "request %d of session %d is not waiting", c.Req, c.Session)
}

// register makes e part of the space once it holds something.
func (s *Space) register(e *entry) {
	if s.entries[e.name] == nil {
		s.entries[e.name] = e
		s.names = append(s.names, e)
	}
}

func (s *Space) send(a Action) { s.out = append(s.out, a) }

func (s *Space) replyErr(req ReqID, sess SessionID, err error) {
	s.send(ReplyError{Req: req, Session: sess, Err: err})
}

// reject builds the error for an event not allowed in state st, queues it as
// a ReplyError if the event is a request, and returns it.
func (s *Space) reject(st State, ev Event, cause error, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	var err error
	if cause == ErrIllegal {
		err = fmt.Errorf("lookup: %s in state %s: %s: %w", eventName(ev), st, detail, ErrIllegal)
	} else {
		err = fmt.Errorf("lookup: %s in state %s: %s: %w (%w)", eventName(ev), st, detail, cause, ErrIllegal)
	}
	if k, ok := request(ev); ok {
		s.replyErr(k.req, k.sess, err)
	}
	return err
}
