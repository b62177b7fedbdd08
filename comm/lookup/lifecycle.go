package lookup

import "fmt"

// This file holds the space-level events: users, lease and deletion.

func (s *Space) openSpace(o OpenSpace) error {
	s.opens[o.Session]++
	s.users++
	s.leasing = false
	return nil
}

func (s *Space) closeSpace(c CloseSpace) error {
	if s.opens[c.Session] == 0 {
		return s.reject(StateEmpty, c, ErrIllegal, "session %d has not opened space %q", c.Session, s.name)
	}
	s.opens[c.Session]--
	if s.opens[c.Session] == 0 {
		delete(s.opens, c.Session)
	}
	s.users--
	if s.users == 0 {
		s.lastClose()
	}
	return nil
}

// lastClose runs when the user count drops to zero: delete the space if
// nothing in it is still to be read, else start the lease.
func (s *Space) lastClose() {
	if s.allSealedAndRead() {
		s.deleteSpace()
		return
	}
	s.leasing = true
	s.zeroAt = s.now
	// With no time seen yet the lease starts at the first Tick, whatever
	// the origin of the driver's clock.
	s.zeroLate = !s.ticked
}

func (s *Space) allSealedAndRead() bool {
	for _, i := range s.order {
		if !i.sealed || !i.read {
			return false
		}
	}
	return true
}

func (s *Space) tick(t Tick) error {
	if !s.ticked || t.Now > s.now {
		s.now = t.Now
	}
	s.ticked = true
	if !s.leasing {
		return nil
	}
	if s.zeroLate {
		s.zeroAt, s.zeroLate = s.now, false
	}
	// now >= zeroAt, so the unsigned difference cannot overflow.
	if s.users == 0 && uint64(s.now)-uint64(s.zeroAt) >= uint64(s.lease) {
		s.deleteSpace()
	}
	return nil
}

// sessionLost cleans up after a vanished connection: its waiters, reader
// and writer registrations, and its opens of the space.
func (s *Space) sessionLost(l SessionLost) error {
	for _, e := range s.names {
		if err := e.step(s, e, l); err != nil {
			return err
		}
	}
	for _, i := range s.order {
		if err := i.step(s, i, l); err != nil {
			return err
		}
	}
	n := s.opens[l.Session]
	if n == 0 {
		return nil
	}
	delete(s.opens, l.Session)
	s.users -= n
	if s.users == 0 {
		s.lastClose()
	}
	return nil
}

// deleteSpace answers every waiting request with ErrSpaceDeleted, deletes
// every instance and then the space.
func (s *Space) deleteSpace() {
	gone := fmt.Errorf("lookup: space %q: %w", s.name, ErrSpaceDeleted)
	for _, e := range s.names {
		for _, w := range e.waiters {
			s.replyErr(w.Req, w.Session, gone)
		}
		e.waiters = nil
		e.becomeEmpty()
	}
	for _, i := range s.order {
		for _, p := range i.parked {
			s.replyErr(p.req, p.sess, gone)
		}
		i.parked = nil
	}
	for _, i := range s.order {
		i.becomeDeleted()
		s.send(DeleteInstance{Instance: i.id})
	}
	clear(s.waiting)
	clear(s.parked)
	s.leasing = false
	s.deleted = true
	s.send(DeleteSpace{})
}
