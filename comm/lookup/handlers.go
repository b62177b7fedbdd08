package lookup

import (
	"fmt"
	"slices"
)

// This file holds the per-event handlers the instance step functions call.
// Each handler does one event's work and any state change that follows from
// it.

// resume hands the instance to a restarted writer that re-created it with
// the same WriterKey: same ID, new writer session and direct address.
func (s *Space) resume(i *instance, c Create) error {
	if c.Elem != i.elem {
		s.replyErr(c.Req, c.Session, fmt.Errorf("lookup: resume %q instance %d: elem %d, have %d: %w",
			i.name, i.id, c.Elem, i.elem, ErrElemType))
		return nil
	}
	i.writer = c.Session
	i.direct = c.DirectAddr
	s.send(ReplyCreate{Req: c.Req, Session: c.Session, Info: i.info(), Resumed: true})
	return nil
}

// attachInstance registers a reader, moves to the state become sets (if
// not nil) and answers the reader. A wrong element type is answered with
// ErrElemType and changes nothing.
func (s *Space) attachInstance(i *instance, a Attach, become func()) {
	if a.Elem != ElemAny && a.Elem != i.elem {
		s.replyErr(a.Req, a.Session, fmt.Errorf("lookup: attach %q instance %d: elem %d, have %d: %w",
			i.name, i.id, a.Elem, i.elem, ErrElemType))
		return
	}
	i.readers[a.Session]++
	if become != nil {
		become()
	}
	s.send(ReplyAttach{Req: a.Req, Session: a.Session, Info: i.info()})
}

// appendOpen records growth of an unsealed instance and wakes the readers
// it passed.
func (s *Space) appendOpen(i *instance, a Appended) {
	if a.Length <= i.length {
		return
	}
	i.length = a.Length
	var still []parkedWait
	for _, p := range i.parked {
		if p.offset >= i.length {
			still = append(still, p)
			continue
		}
		s.wake(i, p)
	}
	i.parked = still
	i.settleOpen()
}

// appendSealed accepts late reports up to the sealed length.
func (s *Space) appendSealed(i *instance, a Appended) error {
	if a.Length > i.length {
		return s.reject(i.state, a, ErrSealed, "instance %d sealed at %d, reported %d", i.id, i.length, a.Length)
	}
	return nil
}

func (s *Space) wake(i *instance, p parkedWait) {
	delete(s.parked, reqKey{p.sess, p.req})
	s.send(Wake{Req: p.req, Session: p.sess, Instance: i.id, Length: i.length, Sealed: i.sealed})
}

// readerWaitOpen wakes the reader at once if data lies past its offset, or
// parks it (ReaderAhead).
func (s *Space) readerWaitOpen(i *instance, r ReaderWait) error {
	if r.Offset < 0 {
		return s.reject(i.state, r, ErrIllegal, "negative offset %d", r.Offset)
	}
	if i.readers[r.Session] == 0 {
		i.readers[r.Session] = 1
	}
	p := parkedWait{req: r.Req, sess: r.Session, offset: r.Offset}
	if i.length > r.Offset {
		s.wake(i, p)
	} else {
		i.parked = append(i.parked, p)
		s.parked[reqKey{r.Session, r.Req}] = i
	}
	i.settleOpen()
	return nil
}

// readerWaitSealed: a sealed instance never makes a reader wait.
func (s *Space) readerWaitSealed(i *instance, r ReaderWait) error {
	if r.Offset < 0 {
		return s.reject(i.state, r, ErrIllegal, "negative offset %d", r.Offset)
	}
	s.wake(i, parkedWait{req: r.Req, sess: r.Session, offset: r.Offset})
	return nil
}

// cancelParked answers one parked ReaderWait with ErrCanceled; the reader
// stays registered.
func (s *Space) cancelParked(i *instance, c CancelAttach) error {
	k := reqKey{c.Session, c.Req}
	at := slices.IndexFunc(i.parked, func(p parkedWait) bool { return p.sess == k.sess && p.req == k.req })
	if at < 0 {
		return s.reject(i.state, c, ErrIllegal, "request %d of session %d is not parked on instance %d",
			c.Req, c.Session, i.id)
	}
	i.parked = slices.Delete(i.parked, at, at+1)
	delete(s.parked, k)
	s.replyErr(c.Req, c.Session, fmt.Errorf("lookup: wait on instance %d: %w", i.id, ErrCanceled))
	i.settleOpen()
	return nil
}

// closeOpen seals the instance, wakes every parked reader with Sealed and
// moves to Available.
func (s *Space) closeOpen(i *instance, c Close) error {
	if c.Session != i.writer {
		return s.reject(i.state, c, ErrNotWriter, "session %d closing instance %d written by %d",
			c.Session, i.id, i.writer)
	}
	if c.Length < i.length {
		return s.reject(i.state, c, ErrIllegal, "close at %d below durable length %d", c.Length, i.length)
	}
	i.length = c.Length
	i.sealed = true
	for _, p := range i.parked {
		s.wake(i, p)
	}
	i.parked = nil
	i.becomeAvailable()
	s.send(ReplyClose{Req: c.Req, Session: c.Session, Info: i.info()})
	return nil
}

// closeSealed: a repeated Close by the writer at the same length is
// answered again; any other is rejected.
func (s *Space) closeSealed(i *instance, c Close) error {
	if c.Session != i.writer {
		return s.reject(i.state, c, ErrNotWriter, "session %d closing instance %d written by %d",
			c.Session, i.id, i.writer)
	}
	if c.Length != i.length {
		return s.reject(i.state, c, ErrSealed, "instance %d sealed at %d, close at %d", i.id, i.length, c.Length)
	}
	s.send(ReplyClose{Req: c.Req, Session: c.Session, Info: i.info()})
	return nil
}

// detach drops a reader registration (answering its parked waits with
// ErrCanceled) or else the writer registration.
func (s *Space) detach(i *instance, d Detach) error {
	switch {
	case i.readers[d.Session] > 1:
		i.readers[d.Session]--
	case i.readers[d.Session] == 1:
		delete(i.readers, d.Session)
		s.unpark(i, d.Session, true)
	case i.writer == d.Session:
		i.writer = NoSession
	default:
		return s.reject(i.state, d, ErrIllegal, "session %d is neither reader nor writer of instance %d",
			d.Session, i.id)
	}
	if !i.sealed {
		i.settleOpen()
	}
	return nil
}

// unpark removes a session's parked waits, answering them if reply.
func (s *Space) unpark(i *instance, sess SessionID, reply bool) {
	var still []parkedWait
	for _, p := range i.parked {
		if p.sess != sess {
			still = append(still, p)
			continue
		}
		delete(s.parked, reqKey{p.sess, p.req})
		if reply {
			s.replyErr(p.req, p.sess, fmt.Errorf("lookup: wait on instance %d: detached: %w", i.id, ErrCanceled))
		}
	}
	i.parked = still
}

func (s *Space) setAttr(i *instance, a SetAttr) error {
	if a.Key == "" {
		return s.reject(i.state, a, ErrIllegal, "empty attribute key")
	}
	i.attrs[a.Key] = a.Value
	s.send(ReplyOK{Req: a.Req, Session: a.Session})
	return nil
}

// loseSession forgets a vanished session's registrations without
// answering its parked waits. The instance keeps its data; with the writer
// gone it can be resumed by WriterKey.
func (s *Space) loseSession(i *instance, sess SessionID) {
	delete(i.readers, sess)
	s.unpark(i, sess, false)
	if i.writer == sess {
		i.writer = NoSession
	}
	if !i.sealed {
		i.settleOpen()
	}
}
