package server

import (
	"errors"
	"fmt"

	"github.com/pispace/pispace/comm/cache"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/lookup"
	"time"
)

// input is one event for the driver: ev applied to the named space. open
// creates the space when it does not exist (OpenSpace); otherwise an unknown
// space is answered with an error to (sess, req).
type input struct {
	space string
	ev    lookup.Event
	sess  *session
	req   uint32
	open  bool
	stat  string // when set, ev is nil and the newest instance of this name is reported
}

// driver owns every space's lookup state machine. Only its goroutine
// touches spaces.
type driver struct {
	s      *Server
	in     chan input
	spaces map[string]*lookup.Space
	sess   map[lookup.SessionID]*session
	reg    chan *session
	unreg  chan *session
	ticks  int64
}

func newDriver(s *Server) *driver {
	return &driver{
		s:      s,
		in:     make(chan input, 1024),
		spaces: map[string]*lookup.Space{},
		sess:   map[lookup.SessionID]*session{},
		reg:    make(chan *session),
		unreg:  make(chan *session),
	}
}

// post hands an event to the driver. It blocks only while the driver's
// queue is full and gives up when the server closes.
func (d *driver) post(in input) bool {
	select {
	case d.in <- in:
		return true
	case <-d.s.done:
		return false
	}
}

func (d *driver) run() {
	t := time.NewTicker(d.s.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case in := <-d.in:
			d.handle(in)
		case ss := <-d.reg:
			d.sess[ss.lid] = ss
		case ss := <-d.unreg:
			d.sessionLost(ss)
		case <-t.C:
			d.tick()
		case <-d.s.done:
			return
		}
	}
}

func (d *driver) register(ss *session) bool {
	select {
	case d.reg <- ss:
		return true
	case <-d.s.done:
		return false
	}
}

func (d *driver) unregister(ss *session) {
	select {
	case d.unreg <- ss:
	case <-d.s.done:
	}
}

func (d *driver) handle(in input) {
	sp, ok := d.spaces[in.space]
	if !ok || sp.Deleted() {
		if !in.open {
			if in.sess != nil {
				in.sess.sendError(in.req, proto.CodeUnknownSpace, fmt.Sprintf("unknown space %q", in.space))
			}
			return
		}
		sp = lookup.NewSpace(in.space, lookup.Config{Lease: d.leaseTicks()})
		d.spaces[in.space] = sp
	}
	if in.ev == nil {
		d.stat(sp, in)
		return
	}
	if err := sp.Step(in.ev); err != nil {
		d.s.cfg.Logger.Debug("lookup step rejected", "space", in.space, "event", fmt.Sprintf("%T", in.ev), "err", err)
	}
	d.execute(in.space, sp)
}

// stat answers a Stat request from the space's table.
func (d *driver) stat(sp *lookup.Space, in input) {
	info, ok := sp.Newest(in.stat)
	if !ok {
		in.sess.sendError(in.req, proto.CodeNotFound, fmt.Sprintf("no channel %q", in.stat))
		return
	}
	in.sess.sendInfo(in.req, d.info(in.space, info, false))
}

func (d *driver) leaseTicks() int64 {
	return max(1, int64(d.s.cfg.Lease/d.s.cfg.Tick))
}

func (d *driver) tick() {
	d.ticks++
	for name, sp := range d.spaces {
		sp.Step(lookup.Tick{Now: d.ticks})
		d.execute(name, sp)
	}
}

func (d *driver) sessionLost(ss *session) {
	delete(d.sess, ss.lid)
	for name, sp := range d.spaces {
		sp.Step(lookup.SessionLost{Session: ss.lid})
		d.execute(name, sp)
	}
}

// execute carries out the actions the space's machine emitted.
func (d *driver) execute(name string, sp *lookup.Space) {
	for _, a := range sp.Ready() {
		d.act(name, a)
	}
	sp.Advance()
	if sp.Deleted() {
		delete(d.spaces, name)
	}
}

func (d *driver) act(space string, a lookup.Action) {
	switch a := a.(type) {
	case lookup.ReplyCreate:
		if ss := d.sess[a.Session]; ss != nil {
			ss.ownWriter(space, uint64(a.Info.ID))
			ss.sendInfo(uint32(a.Req), d.info(space, a.Info, a.Resumed))
		}
	case lookup.ReplyAttach:
		d.reply(a.Session, uint32(a.Req), d.info(space, a.Info, false))
	case lookup.ReplyClose:
		d.reply(a.Session, uint32(a.Req), d.info(space, a.Info, false))
	case lookup.ReplyOK:
		if ss := d.sess[a.Session]; ss != nil {
			ss.sendControl(uint32(a.Req), proto.TOK, nil)
		}
	case lookup.ReplyError:
		if ss := d.sess[a.Session]; ss != nil {
			ss.sendError(uint32(a.Req), codeOf(a.Err), a.Err.Error())
		}
	case lookup.Wake:
		if ss := d.sess[a.Session]; ss != nil {
			ss.wake(uint32(a.Req), a.Length, a.Sealed)
		}
	case lookup.DeleteInstance:
		d.s.store.Delete(cache.Key{Space: space, Instance: uint64(a.Instance)})
	case lookup.DeleteSpace:
		d.s.store.DeleteSpace(space)
	default:
		d.s.cfg.Logger.Error("unknown lookup action", "action", fmt.Sprintf("%T", a))
	}
}

func (d *driver) reply(sid lookup.SessionID, req uint32, info *proto.Info) {
	if ss := d.sess[sid]; ss != nil {
		ss.sendInfo(req, info)
	}
}

// info describes an instance for a client. The length is the store's: the
// lookup service hears of appends only while readers wait (onWrite).
func (d *driver) info(space string, i lookup.Info, resumed bool) *proto.Info {
	p := infoOf(i, resumed)
	if !i.Sealed {
		if n, _, err := d.s.store.Stat(cache.Key{Space: space, Instance: uint64(i.ID)}); err == nil && n > p.Length {
			p.Length = n
		}
	}
	return p
}

func infoOf(i lookup.Info, resumed bool) *proto.Info {
	return &proto.Info{
		Instance:     uint64(i.ID),
		Name:         i.Name,
		Elem:         i.Elem,
		Key:          i.WriterKey,
		Length:       i.Length,
		Sealed:       i.Sealed,
		WriterActive: i.WriterSession != 0 && !i.Sealed,
		DirectAddr:   i.DirectAddr,
		Resumed:      resumed,
		Attrs:        i.Attrs,
	}
}

// codeOf maps lookup and cache errors to wire error codes.
func codeOf(err error) uint16 {
	switch {
	case errors.Is(err, lookup.ErrNotFound), errors.Is(err, cache.ErrNotFound):
		return proto.CodeNotFound
	case errors.Is(err, lookup.ErrElemType):
		return proto.CodeElemType
	case errors.Is(err, lookup.ErrCanceled):
		return proto.CodeCanceled
	case errors.Is(err, lookup.ErrSealed), errors.Is(err, cache.ErrSealed):
		return proto.CodeSealed
	case errors.Is(err, lookup.ErrNotWriter):
		return proto.CodeNotWriter
	case errors.Is(err, lookup.ErrSpaceDeleted):
		return proto.CodeSpaceDeleted
	case errors.Is(err, cache.ErrDiverged):
		return proto.CodeDiverged
	case errors.Is(err, cache.ErrGap):
		return proto.CodeGap
	case errors.Is(err, cache.ErrTrimmed):
		return proto.CodeTrimmed
	case errors.Is(err, lookup.ErrIllegal):
		return proto.CodeProtocol
	}
	return proto.CodeInternal
}
