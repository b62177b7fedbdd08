package lookup

import (
	"fmt"
	"slices"
)

// entry is the hash-table slot of one channel name: its instances in
// creation (FIFO) order and the attach requests waiting for one.
type entry struct {
	name    string
	state   State
	step    entryStep
	insts   []*instance
	keys    map[string]*instance // WriterKey -> instance
	waiters []Attach
}

// entryStep is the step function of one name-entry state.
type entryStep func(s *Space, e *entry, ev Event) error

func newEntry(name string) *entry {
	e := &entry{name: name, keys: map[string]*instance{}}
	e.becomeEmpty()
	return e
}

func (e *entry) becomeEmpty() {
	e.state = StateEmpty
	e.step = stepEmpty
}

func (e *entry) becomeReaderWaiting() {
	e.state = StateReaderWaiting
	e.step = stepReaderWaiting
}

// stepEmpty: nobody waits on the name (ST Empty). Instances may exist.
func stepEmpty(s *Space, e *entry, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		return s.createOrResume(e, ev)
	case Attach:
		return s.attachName(e, ev)
	case SessionLost:
		return nil
	}
	return s.reject(e.state, ev, ErrIllegal, "name %q", e.name)
}

// stepReaderWaiting: attach requests wait for a Create (ST ROpen Wait).
func stepReaderWaiting(s *Space, e *entry, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		if err := s.createOrResume(e, ev); err != nil {
			return err
		}
		s.serveWaiters(e)
		return nil
	case Attach:
		return s.attachName(e, ev)
	case CancelAttach:
		s.cancelWaiter(e, ev)
		return nil
	case SessionLost:
		s.dropWaiters(e, ev.Session)
		return nil
	}
	return s.reject(e.state, ev, ErrIllegal, "name %q", e.name)
}

// pick returns the oldest unread instance, or with anyInst the oldest one.
func (e *entry) pick(anyInst bool) *instance {
	for _, i := range e.insts {
		if anyInst || !i.read {
			return i
		}
	}
	return nil
}

// createOrResume resumes the instance holding c.WriterKey, or else makes a
// new instance.
func (s *Space) createOrResume(e *entry, c Create) error {
	if c.WriterKey != "" {
		if i := e.keys[c.WriterKey]; i != nil {
			return i.step(s, i, c)
		}
	}
	s.nextID++
	i := newInstance(s.nextID, e, c)
	s.register(e)
	e.insts = append(e.insts, i)
	if c.WriterKey != "" {
		e.keys[c.WriterKey] = i
	}
	s.insts[i.id] = i
	s.order = append(s.order, i)
	s.send(ReplyCreate{Req: c.Req, Session: c.Session, Info: i.info()})
	return nil
}

// attachName answers an attach by name from the instances, or parks it.
func (s *Space) attachName(e *entry, a Attach) error {
	if i := e.pick(a.Any); i != nil {
		return i.step(s, i, a)
	}
	if !a.Wait {
		s.replyErr(a.Req, a.Session, fmt.Errorf("lookup: attach %q: %w", a.Name, ErrNotFound))
		return nil
	}
	s.register(e)
	e.waiters = append(e.waiters, a)
	s.waiting[reqKey{a.Session, a.Req}] = e
	e.becomeReaderWaiting()
	return nil
}

// serveWaiters hands each waiter, in arrival order, the instance its rule
// picks now. After a Create that is the new instance for every waiter
// (implicit multicast): a waiter exists only while no instance it would
// accept does.
func (s *Space) serveWaiters(e *entry) {
	ws := e.waiters
	e.waiters = nil
	for _, w := range ws {
		i := e.pick(w.Any)
		if i == nil {
			e.waiters = append(e.waiters, w)
			continue
		}
		delete(s.waiting, reqKey{w.Session, w.Req})
		// Attach is legal in every live instance state.
		_ = i.step(s, i, w)
	}
	e.settle()
}

func (s *Space) cancelWaiter(e *entry, c CancelAttach) {
	k := reqKey{c.Session, c.Req}
	e.waiters = slices.DeleteFunc(e.waiters, func(w Attach) bool {
		return w.Session == c.Session && w.Req == c.Req
	})
	delete(s.waiting, k)
	s.replyErr(c.Req, c.Session, fmt.Errorf("lookup: attach %q: %w", e.name, ErrCanceled))
	e.settle()
}

// dropWaiters forgets the waiters of a lost session without answering.
func (s *Space) dropWaiters(e *entry, sess SessionID) {
	var still []Attach
	for _, w := range e.waiters {
		if w.Session != sess {
			still = append(still, w)
			continue
		}
		delete(s.waiting, reqKey{w.Session, w.Req})
	}
	e.waiters = still
	e.settle()
}

// settle leaves ReaderWaiting once no waiter is left.
func (e *entry) settle() {
	if len(e.waiters) == 0 {
		e.becomeEmpty()
	}
}
