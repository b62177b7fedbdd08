package lookup

// instance is one channel instance: a stream written once by its writer and
// read by any number of readers, from the writer directly or from the cache.
type instance struct {
	id        InstanceID
	name      string
	elem      uint8
	attrs     map[string]string
	writerKey string
	state     State
	step      instStep

	length int64 // durable length reported by the cache
	sealed bool
	read   bool
	writer SessionID // NoSession once the writer is gone
	direct string

	readers map[SessionID]int // attach count per reader session
	parked  []parkedWait      // ReaderWaits at the end of the stream
}

// parkedWait is a ReaderWait waiting for the instance to grow past offset.
type parkedWait struct {
	req    ReqID
	sess   SessionID
	offset int64
}

// instStep is the step function of one instance state.
type instStep func(s *Space, i *instance, ev Event) error

func newInstance(id InstanceID, e *entry, c Create) *instance {
	i := &instance{
		id:        id,
		name:      e.name,
		elem:      c.Elem,
		attrs:     cloneAttrs(c.Attrs),
		writerKey: c.WriterKey,
		writer:    c.Session,
		direct:    c.DirectAddr,
		readers:   map[SessionID]int{},
	}
	i.becomeWriting()
	return i
}

func (i *instance) info() Info {
	return Info{
		ID:            i.id,
		Name:          i.name,
		Elem:          i.elem,
		Attrs:         cloneAttrs(i.attrs),
		WriterKey:     i.writerKey,
		State:         i.state,
		Length:        i.length,
		Sealed:        i.sealed,
		Read:          i.read,
		WriterSession: i.writer,
		DirectAddr:    i.direct,
	}
}

func (i *instance) becomeWriting() {
	i.state = StateWriting
	i.step = stepWriting
}

func (i *instance) becomeReadWrite() {
	i.state = StateReadWrite
	i.step = stepReadWrite
}

func (i *instance) becomeReaderAhead() {
	i.state = StateReaderAhead
	i.step = stepReaderAhead
}

func (i *instance) becomeAvailable() {
	i.state = StateAvailable
	i.step = stepAvailable
}

func (i *instance) becomeDeleted() {
	i.state = StateDeleted
	i.step = stepDeleted
}

// settleOpen picks the unsealed state that matches the instance's readers:
// any parked reader makes it ReaderAhead, any reader ReadWrite, else Writing.
func (i *instance) settleOpen() {
	switch {
	case len(i.parked) > 0:
		i.becomeReaderAhead()
	case len(i.readers) > 0:
		i.becomeReadWrite()
	default:
		i.becomeWriting()
	}
}

// stepWriting: unsealed, no reader (ST W).
func stepWriting(s *Space, i *instance, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		return s.resume(i, ev)
	case Attach:
		s.attachInstance(i, ev, i.becomeReadWrite)
		return nil
	case Appended:
		s.appendOpen(i, ev)
		return nil
	case ReaderWait:
		return s.readerWaitOpen(i, ev)
	case Close:
		return s.closeOpen(i, ev)
	case Detach:
		return s.detach(i, ev)
	case SetAttr:
		return s.setAttr(i, ev)
	case SessionLost:
		s.loseSession(i, ev.Session)
		return nil
	}
	return s.rejectInst(i, ev)
}

// stepReadWrite: unsealed with readers, none parked (ST RW).
func stepReadWrite(s *Space, i *instance, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		return s.resume(i, ev)
	case Attach:
		s.attachInstance(i, ev, nil)
		return nil
	case Appended:
		s.appendOpen(i, ev)
		return nil
	case ReaderWait:
		return s.readerWaitOpen(i, ev)
	case Close:
		return s.closeOpen(i, ev)
	case Detach:
		return s.detach(i, ev)
	case SetAttr:
		return s.setAttr(i, ev)
	case SessionLost:
		s.loseSession(i, ev.Session)
		return nil
	}
	return s.rejectInst(i, ev)
}

// stepReaderAhead: unsealed, some reader parked at the end (ST R Wait).
func stepReaderAhead(s *Space, i *instance, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		return s.resume(i, ev)
	case Attach:
		s.attachInstance(i, ev, nil)
		return nil
	case Appended:
		s.appendOpen(i, ev)
		return nil
	case ReaderWait:
		return s.readerWaitOpen(i, ev)
	case CancelAttach:
		return s.cancelParked(i, ev)
	case Close:
		return s.closeOpen(i, ev)
	case Detach:
		return s.detach(i, ev)
	case SetAttr:
		return s.setAttr(i, ev)
	case SessionLost:
		s.loseSession(i, ev.Session)
		return nil
	}
	return s.rejectInst(i, ev)
}

// stepAvailable: sealed, all data in the cache (ST Avail).
func stepAvailable(s *Space, i *instance, ev Event) error {
	switch ev := ev.(type) {
	case Create:
		return s.resume(i, ev)
	case Attach:
		s.attachInstance(i, ev, nil)
		return nil
	case Appended:
		return s.appendSealed(i, ev)
	case ReaderWait:
		return s.readerWaitSealed(i, ev)
	case Close:
		return s.closeSealed(i, ev)
	case ReadDone:
		i.read = true
		return nil
	case Detach:
		return s.detach(i, ev)
	case SetAttr:
		return s.setAttr(i, ev)
	case SessionLost:
		s.loseSession(i, ev.Session)
		return nil
	}
	return s.rejectInst(i, ev)
}

// stepDeleted: the space is gone. Only reachable while the Space value is
// kept after deletion; then only SessionLost is accepted, as a no-op.
func stepDeleted(s *Space, i *instance, ev Event) error {
	if _, ok := ev.(SessionLost); ok {
		return nil
	}
	return s.reject(i.state, ev, ErrSpaceDeleted, "instance %d", i.id)
}

func (s *Space) rejectInst(i *instance, ev Event) error {
	return s.reject(i.state, ev, ErrIllegal, "instance %d %q", i.id, i.name)
}
