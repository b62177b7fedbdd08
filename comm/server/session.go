package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pispace/pispace/comm/cache"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/lookup"
	"github.com/pispace/pispace/comm/wire"
)

const (
	ctrlQueue     = 4096             // control frames a session may have queued
	dataQueue     = 16               // data frames a session may have queued
	minDataFrame  = 256 << 10        // a read stream's data frames hold up to this many bytes even under a smaller MaxPayload
	maxDataFrame  = 1 << 20          // and never more than this many
	writeDeadline = 30 * time.Second // a peer that accepts nothing for this long is cut
	helloDeadline = 10 * time.Second
)

// outFrame is one frame queued for the connection's writer: hdr, then
// body; a data frame has data instead of hdr, its header being encoded when
// it is written, inline or through the ring. A data frame's body is a view
// of the cache (cache.Store.View), and release gives it back (finish):
// after the write, or when the frame is dropped unwritten.
type outFrame struct {
	hdr     []byte
	data    *dataRef
	body    []byte
	release func()
}

// dataRef is what a data frame's header says about its body.
type dataRef struct {
	req   uint32
	space string
	inst  uint64
	off   int64
}

type wakeMsg struct {
	length int64
	sealed bool
	err    error
}

// session is one client connection.
type session struct {
	s    *Server
	conn net.Conn
	lid  lookup.SessionID
	// On a Unix socket, fds collects the descriptors the client sends and
	// rx is the client's shared ring once offered (see package shm); both
	// belong to the reading goroutine.
	fds *shm.Lazy
	rx  *shm.Rx
	// tx is this side's ring for large read replies, made and offered by
	// the writing goroutine when it first needs it; noRing once it could
	// not be, or when rings are off.
	tx     *shm.Tx
	noRing bool
	big    int64 // bytes of large data frames sent while there is no ring (shm.After)
	// wantRing asks the writing goroutine to offer the ring now (TArena);
	// offered is the ring once offered, for the reading goroutine.
	wantRing   atomic.Bool
	offered    atomic.Pointer[shm.Tx]
	arenaAsked bool // TArena came, and no large write yet (the reading goroutine's)
	// Slots of the arena given to the client to write in (see slots.go),
	// by arena offset (guarded by slotMu: the writing goroutine gives the
	// first ones) and, once written, by instance (slotsOf, like a
	// slotUse's fields, the reading goroutine's).
	slotMu    sync.Mutex
	wantSlots bool
	slotsWant atomic.Int32 // how many to keep queued (slotTarget); written under slotMu
	slots     map[uint64]*slotUse
	slotsOf   map[cache.Key][]uint64

	ctrlMu  sync.Mutex
	ctrlQ   []outFrame    // control frames queued, at most ctrlQueue
	ctrlSig chan struct{} // holds a token while ctrlQ may be non-empty
	data    chan outFrame
	stop    chan struct{} // closed when the reader loop ends
	wg      sync.WaitGroup

	mu      sync.Mutex
	writers map[cache.Key]bool
	wakes   map[uint32]chan wakeMsg
	streams map[uint32]context.CancelFunc
	attach  map[uint32]string // pending attach requests -> space
	killed  error
}

func newSession(s *Server, c net.Conn, id uint64) *session {
	ss := &session{
		s:       s,
		conn:    c,
		lid:     lookup.SessionID(id),
		ctrlSig: make(chan struct{}, 1),
		data:    make(chan outFrame, dataQueue),
		stop:    make(chan struct{}),
		writers: map[cache.Key]bool{},
		wakes:   map[uint32]chan wakeMsg{},
		streams: map[uint32]context.CancelFunc{},
		attach:  map[uint32]string{},
	}
	ss.slotsWant.Store(slotsWanted)
	return ss
}

// serve runs the session to its end: handshake, then the reader loop on this
// goroutine and the writer loop on another.
func (ss *session) serve() {
	defer ss.conn.Close()
	log := ss.s.cfg.Logger.With("peer", ss.conn.RemoteAddr().String())
	var src io.Reader = ss.conn
	if uc, ok := ss.conn.(*net.UnixConn); ok {
		ss.fds = shm.NewLazy(uc)
		src = ss.fds
		defer ss.closeRing()
	}
	r := wire.NewReader(src, ss.s.cfg.MaxPayload+1024)
	if err := ss.handshake(r); err != nil {
		log.Info("handshake failed", "err", err)
		return
	}
	if !ss.s.drv.register(ss) {
		return
	}
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.writeLoop()
	}()
	err := ss.readLoop(r)
	ss.closeStreams()
	close(ss.stop)
	ss.s.drv.unregister(ss)
	ss.wg.Wait()
	if kept := ss.closeSlots(ss.clientClosed(err)); kept > 0 {
		log.Warn("arena slots kept for good: the client may still write into them", "slots", kept, "err", err)
	}
	if ss.tx != nil {
		// A client that closed its end reads nothing lent any more; one
		// the server cut off may still be reading (see shm.Tx.EndLoans).
		if kept := ss.tx.EndLoans(ss.clientClosed(err)); kept > 0 {
			log.Warn("cache segments kept for good: the client may still read them", "bytes", kept, "err", err)
		}
		ss.tx.Close()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Info("session ended", "err", err)
	}
}

// clientClosed reports whether the reading loop's error err says that the
// client closed its end, rather than the server cutting the session.
func (ss *session) clientClosed(err error) bool {
	ss.mu.Lock()
	killed := ss.killed != nil
	ss.mu.Unlock()
	return !killed && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET))
}

func (ss *session) handshake(r *wire.Reader) error {
	ss.conn.SetDeadline(time.Now().Add(helloDeadline))
	defer ss.conn.SetDeadline(time.Time{})
	f, err := r.Next()
	if err != nil {
		return err
	}
	var h proto.Hello
	if f.Type != proto.THello {
		err = fmt.Errorf("first frame is type %d, want hello", f.Type)
	} else if err = proto.Unmarshal(f.Payload, &h); err == nil && (h.Magic != proto.Magic || h.Version != proto.Version) {
		err = fmt.Errorf("hello %q version %d, want %q version %d", h.Magic, h.Version, proto.Magic, proto.Version)
	}
	if err != nil {
		ss.conn.Write(proto.AppendMsg(nil, proto.TError, f.Req, &proto.Error{Code: proto.CodeProtocol, Msg: err.Error()}))
		return err
	}
	_, err = ss.conn.Write(proto.AppendMsg(nil, proto.TOK, f.Req, &proto.Welcome{Local: ss.s.local}))
	return err
}

// readLoop dispatches frames until the connection fails or a frame breaks
// the protocol, in which case the peer is told why before the close.
func (ss *session) readLoop(r *wire.Reader) error {
	for {
		f, err := r.Next()
		if err != nil {
			if errors.Is(err, wire.ErrProtocol) {
				code := proto.CodeProtocol
				if errors.Is(err, wire.ErrTooLarge) {
					code = proto.CodeTooLarge
				}
				ss.sendError(0, code, err.Error())
			}
			return err
		}
		if err := ss.dispatch(f); err != nil {
			ss.sendError(f.Req, proto.CodeProtocol, err.Error())
			return err
		}
	}
}

// closeRing unmaps the client's ring and closes the descriptors it sent
// and nobody took, once the reading goroutine is done.
func (ss *session) closeRing() {
	ss.fds.Close()
	if ss.rx != nil {
		ss.rx.Close()
	}
}

// dispatch handles one frame. An error means the frame broke the protocol
// and the connection must close.
func (ss *session) dispatch(f wire.Frame) error {
	if f.Flags != 0 && f.Type != proto.TWrite {
		return fmt.Errorf("flags %#x on a frame of type %d", f.Flags, f.Type)
	}
	switch f.Type {
	case proto.TWrite:
		return ss.onWrite(f)
	case proto.TRing:
		return ss.onRing()
	case proto.TOpenSpace, proto.TCloseSpace:
		var m proto.SpaceReq
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		return ss.onSpace(f, m)
	case proto.TCreate:
		var m proto.Create
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.post(m.Space, f.Req, lookup.Create{Req: lookup.ReqID(f.Req), Session: ss.lid, Name: m.Name,
			Elem: m.Elem, Attrs: m.Attrs, WriterKey: m.Key, DirectAddr: m.DirectAddr})
	case proto.TAttach:
		var m proto.Attach
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.mu.Lock()
		ss.attach[f.Req] = m.Space
		ss.mu.Unlock()
		ss.post(m.Space, f.Req, lookup.Attach{Req: lookup.ReqID(f.Req), Session: ss.lid, Name: m.Name,
			Elem: m.Elem, Any: m.Any, Wait: m.Wait, Instance: lookup.InstanceID(m.Instance)})
	case proto.TCancel:
		var m proto.Cancel
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.cancel(uint32(m.Req))
	case proto.TClose:
		var m proto.Close
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.onClose(f.Req, m)
	case proto.TRead:
		var m proto.Read
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.startStream(f.Req, m)
	default:
		return ss.dispatchRef(f)
	}
	return nil
}

// dispatchRef handles the less frequent frames.
func (ss *session) dispatchRef(f wire.Frame) error {
	switch f.Type {
	case proto.TReadDone, proto.TDetach:
		var m proto.Ref
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		var ev lookup.Event = lookup.ReadDone{Session: ss.lid, Instance: lookup.InstanceID(m.Instance)}
		if f.Type == proto.TDetach {
			ev = lookup.Detach{Session: ss.lid, Instance: lookup.InstanceID(m.Instance)}
		}
		ss.post(m.Space, f.Req, ev)
		if f.Type == proto.TDetach {
			ss.sendControl(f.Req, proto.TOK, nil)
		}
	case proto.TSetAttr:
		var m proto.SetAttr
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.post(m.Space, f.Req, lookup.SetAttr{Req: lookup.ReqID(f.Req), Session: ss.lid,
			Instance: lookup.InstanceID(m.Instance), Key: m.Key, Value: m.Value})
	case proto.TStat:
		var m proto.Stat
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.s.drv.post(input{space: m.Space, sess: ss, req: f.Req, stat: m.Name})
	case proto.TTrim:
		var m proto.Trim
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		ss.onTrim(f.Req, m)
	case proto.TArena:
		ss.onArena()
	default:
		return fmt.Errorf("%w: unexpected frame type %d", wire.ErrProtocol, f.Type)
	}
	return nil
}

// onTrim discards what the store holds of an instance in a range of
// offsets, for a client that knows nobody will read it again (see
// comm.Space.Trim).
func (ss *session) onTrim(req uint32, m proto.Trim) {
	if m.From < 0 || m.To < m.From {
		ss.sendError(req, proto.CodeProtocol, fmt.Sprintf("trim of a bad range [%d, %d)", m.From, m.To))
		return
	}
	dropped, err := ss.s.store.Trim(cache.Key{Space: m.Space, Instance: m.Instance}, m.From, m.To)
	if err != nil {
		ss.sendError(req, codeOf(err), err.Error())
		return
	}
	ss.sendControl(req, proto.TOK, &proto.Trimmed{Dropped: dropped})
}

func (ss *session) post(space string, req uint32, ev lookup.Event) {
	ss.s.drv.post(input{space: space, ev: ev, sess: ss, req: req})
}

func (ss *session) onSpace(f wire.Frame, m proto.SpaceReq) error {
	if m.Space == "" {
		ss.sendError(f.Req, proto.CodeUnknownSpace, "empty space name")
		return nil
	}
	if f.Type == proto.TOpenSpace {
		ss.s.drv.post(input{space: m.Space, ev: lookup.OpenSpace{Session: ss.lid}, sess: ss, req: f.Req, open: true})
	} else {
		ss.post(m.Space, f.Req, lookup.CloseSpace{Session: ss.lid})
	}
	// The driver applies events in the order they were posted, so a request
	// sent after this reply sees the space open (or closed).
	ss.sendControl(f.Req, proto.TOK, nil)
	return nil
}

// onRing maps the shared ring the client sent with the frame. A session
// has one ring, and only on a Unix socket.
func (ss *session) onRing() error {
	rx, err := ss.fds.Accept(ss.rx)
	if err != nil {
		return err
	}
	ss.rx = rx
	return nil
}

// onWrite appends a data frame to the cache. Only the session that created
// (or resumed) the instance may write it.
func (ss *session) onWrite(f wire.Frame) error {
	space, inst, off, data, err := proto.DecodeData(f.Payload)
	if err != nil {
		return err
	}
	key := cache.Key{Space: space, Instance: inst}
	if ss.arenaAsked && (f.Flags&proto.FlagShared != 0 || len(data) >= shm.MinPayload) {
		ss.startArena()
	}
	if f.Flags&proto.FlagShared != 0 {
		pos, n, err := proto.SharedRef(data)
		if err != nil {
			return err
		}
		if pos&shm.ArenaRef != 0 {
			return ss.onArenaWrite(f.Req, key, off, pos&^shm.ArenaRef, n)
		}
		if data, err = ss.rx.Resolve(data); err != nil {
			return err
		}
		defer ss.rx.Release() // the store has copied the bytes by then
	}
	if !ss.isWriter(key) {
		ss.sendError(f.Req, proto.CodeNotWriter, fmt.Sprintf("session does not write instance %d of space %q", inst, space))
		return nil
	}
	n, err := ss.s.store.Append(key, off, data)
	if err != nil {
		ss.sendError(f.Req, codeOf(err), fmt.Sprintf("write at offset %d: %v", off, err))
		return nil
	}
	ss.appended(f.Req, key, off+int64(len(data)), n)
	return nil
}

// onClose seals the instance in the cache, then tells the lookup service.
// The reply (the sealed instance's info) therefore means the whole payload
// is held by the cache.
func (ss *session) onClose(req uint32, m proto.Close) {
	key := cache.Key{Space: m.Space, Instance: m.Instance}
	if !ss.isWriter(key) {
		ss.sendError(req, proto.CodeNotWriter, fmt.Sprintf("session does not write instance %d of space %q", m.Instance, m.Space))
		return
	}
	if m.Length == 0 {
		ss.s.store.Append(key, 0, nil) // make an empty stream exist
	}
	if err := ss.s.store.Seal(key, m.Length); err != nil {
		ss.sendError(req, codeOf(err), fmt.Sprintf("close at length %d: %v", m.Length, err))
		return
	}
	// Sealed: nothing more to write. A client keeps its connections for
	// its next channels, so the session forgets the instance.
	ss.endSlots(key, -1)
	ss.mu.Lock()
	delete(ss.writers, key)
	ss.mu.Unlock()
	ss.post(m.Space, req, lookup.Close{Req: lookup.ReqID(req), Session: ss.lid,
		Instance: lookup.InstanceID(m.Instance), Length: m.Length})
}

func (ss *session) ownWriter(space string, inst uint64) {
	ss.mu.Lock()
	ss.writers[cache.Key{Space: space, Instance: inst}] = true
	ss.mu.Unlock()
}

func (ss *session) isWriter(k cache.Key) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.writers[k]
}

// cancel withdraws a pending attach or stops a read stream.
func (ss *session) cancel(req uint32) {
	ss.mu.Lock()
	stop, isStream := ss.streams[req]
	space, isAttach := ss.attach[req]
	ss.mu.Unlock()
	switch {
	case isStream:
		stop()
	case isAttach:
		ss.post(space, req, lookup.CancelAttach{Req: lookup.ReqID(req), Session: ss.lid})
	}
}

// sendInfo answers req with an instance description.
func (ss *session) sendInfo(req uint32, info *proto.Info) {
	ss.mu.Lock()
	delete(ss.attach, req)
	ss.mu.Unlock()
	ss.sendControl(req, proto.TInfo, info)
}

// sendError answers req with an error; a read stream waiting on req gets
// the error instead of the peer.
func (ss *session) sendError(req uint32, code uint16, msg string) {
	ss.mu.Lock()
	delete(ss.attach, req)
	ch := ss.wakes[req]
	ss.mu.Unlock()
	if ch != nil {
		select {
		case ch <- wakeMsg{err: &proto.Error{Code: code, Msg: msg}}:
		default:
		}
		return
	}
	ss.sendControl(req, proto.TError, &proto.Error{Code: code, Msg: msg})
}

// wake resumes the read stream waiting on req.
func (ss *session) wake(req uint32, length int64, sealed bool) {
	ss.mu.Lock()
	ch := ss.wakes[req]
	ss.mu.Unlock()
	if ch != nil {
		select {
		case ch <- wakeMsg{length: length, sealed: sealed}:
		default:
		}
	}
}

// sendControl queues a control frame without blocking. A peer that lets
// ctrlQueue frames pile up is disconnected as a slow consumer.
func (ss *session) sendControl(req uint32, t wire.Type, m proto.Msg) {
	select {
	case <-ss.stop:
		return
	default:
	}
	f := outFrame{hdr: proto.AppendMsg(nil, t, req, m)}
	ss.ctrlMu.Lock()
	full := len(ss.ctrlQ) >= ctrlQueue
	if !full {
		ss.ctrlQ = append(ss.ctrlQ, f)
	}
	ss.ctrlMu.Unlock()
	if full {
		ss.kill(errors.New("slow consumer: control queue full"))
		return
	}
	select {
	case ss.ctrlSig <- struct{}{}:
	default:
	}
}

// takeControl appends the queued control frames to bufs and empties the
// queue.
func (ss *session) takeControl(bufs net.Buffers) net.Buffers {
	ss.ctrlMu.Lock()
	defer ss.ctrlMu.Unlock()
	for _, f := range ss.ctrlQ {
		bufs = append(bufs, f.hdr)
	}
	clear(ss.ctrlQ)
	ss.ctrlQ = ss.ctrlQ[:0]
	return bufs
}

// sendData queues a data frame, waiting while the data queue is full.
func (ss *session) sendData(ctx context.Context, f outFrame) bool {
	select {
	case ss.data <- f:
		return true
	case <-ctx.Done():
	case <-ss.stop:
	}
	f.finish()
	return false
}

func (ss *session) kill(why error) {
	ss.mu.Lock()
	if ss.killed == nil {
		ss.killed = why
	}
	ss.mu.Unlock()
	ss.s.cfg.Logger.Info("closing session", "peer", ss.conn.RemoteAddr().String(), "reason", why)
	ss.conn.Close()
}

// writeLoop is the connection's only writer: control frames first, each
// batch in one vectored write under a deadline.
func (ss *session) writeLoop() {
	var bufs net.Buffers
	var sent []outFrame
	var err error
	for err == nil {
		if ss.ringDue() {
			ss.offerRing() // before this batch: after every byte written so far
		}
		bufs, sent = ss.takeControl(bufs[:0]), sent[:0]
		if len(bufs) == 0 {
			select {
			case <-ss.ctrlSig:
				continue
			case f := <-ss.data:
				bufs, sent, err = ss.appendOut(bufs, sent, f)
			case <-ss.stop:
				ss.flushControl()
				return
			}
		}
		for more := err == nil; more && len(bufs) < 64 && !ss.ringDue(); { // a due ring goes out before more
			select {
			case f := <-ss.data:
				bufs, sent, err = ss.appendOut(bufs, sent, f)
				more = err == nil
			default:
				more = false
			}
		}
		if err == nil {
			bufs, sent, err = ss.write(bufs, sent)
		}
	}
	ss.kill(fmt.Errorf("write: %w", err))
	ss.drain()
}

// write writes bufs under the write deadline, then finishes the frames
// sent, and returns both emptied.
func (ss *session) write(bufs net.Buffers, sent []outFrame) (net.Buffers, []outFrame, error) {
	ss.conn.SetWriteDeadline(time.Now().Add(writeDeadline))
	w := bufs
	_, err := w.WriteTo(ss.conn)
	for _, f := range sent {
		f.finish()
	}
	clear(bufs)
	clear(sent)
	return bufs[:0], sent[:0], err
}

// ringDue reports whether the session should offer its ring now (see
// offerRing).
func (ss *session) ringDue() bool {
	return ss.tx == nil && !ss.noRing && (ss.big >= shm.After || ss.wantRing.Load())
}

// offerRing sets up the session's ring for read replies and offers it to
// the client, once the session has sent shm.After bytes of replies large
// enough for one (ss.big), and before any frame after them: the client
// switches to reading descriptors only after a share of that (shm.Lazy).
// While the process's rings use their budget it is tried again after
// another shm.After bytes. Only the writing goroutine calls it.
func (ss *session) offerRing() {
	uc, ok := ss.conn.(*net.UnixConn)
	if !ok || ss.s.cfg.SharedRing <= 0 {
		ss.noRing = true
		return
	}
	ss.conn.SetWriteDeadline(time.Now().Add(writeDeadline))
	var arena *shm.Arena
	if ss.s.arena != nil && shm.SameUser(uc) {
		arena = ss.s.arena
	}
	size := ss.s.cfg.SharedRing
	if ss.big < shm.After { // asked for by a writer (TArena), for its slots: large replies go as loans
		size = min(size, arenaRing)
	}
	tx, err := shm.Share(uc, size, proto.AppendMsg(nil, proto.TRing, 0, nil), arena)
	if errors.Is(err, shm.ErrBudget) {
		ss.big = 0 // the process's rings use their budget: try again later
		return
	}
	ss.noRing = true // from here on, one try only
	if err != nil {
		ss.s.cfg.Logger.Info("no shared ring", "err", err) // a failed offer: the next write says so
		return
	}
	ss.tx = tx
	ss.offered.Store(tx)
	ss.refill() // a writer that asked (TArena) finds slots with the ring
}

// arenaRing is the size of the ring offered to a writer that asked for
// the arena before the session sent large replies.
const arenaRing = 256 << 10

// flushControl writes the control frames still queued (a final error,
// typically) before the connection closes.
func (ss *session) flushControl() {
	bufs := ss.takeControl(nil)
	ss.conn.SetWriteDeadline(time.Now().Add(time.Second))
	bufs.WriteTo(ss.conn)
}

// drain discards queued frames after a write failure until the session
// stops, so producers never block on a dead connection.
func (ss *session) drain() {
	for {
		select {
		case <-ss.ctrlSig:
			ss.takeControl(nil)
		case f := <-ss.data:
			f.finish()
		case <-ss.stop:
			return
		}
	}
}

// appendOut adds f to the next write: a large data frame's bytes go
// through the shared ring when there is one with room (and f is done with
// at once), the others after their header; until there is a ring, large
// frames count toward offering one (ss.big). When the ring is full,
// appendOut writes the frames gathered so far and waits for the client
// to release room (ringRoom): the session would block on its socket
// anyway. An error is the write's; f is finished then.
func (ss *session) appendOut(bufs net.Buffers, sent []outFrame, f outFrame) (net.Buffers, []outFrame, error) {
	hdr := f.hdr
	if d := f.data; d != nil {
		switch n := len(f.body); {
		case n < shm.MinPayload:
		case ss.tx == nil:
			ss.big += int64(n)
		default:
			if off, ok := ss.s.arena.Offset(f.body); ok && ss.tx.Lending() {
				pos, ok := ss.tx.Lend(off, n, ss.s.cfg.Lend, f.release)
				if !ok {
					var err error
					if bufs, sent, err = ss.ringRoom(bufs, sent, n, true); err != nil {
						f.finish()
						return bufs, sent, err
					}
					pos, ok = ss.tx.Lend(off, n, ss.s.cfg.Lend, f.release)
				}
				if ok {
					return append(bufs, proto.AppendSharedData(nil, proto.TData, d.req, d.space, d.inst, d.off, pos, n)), sent, nil
				}
			}
			pos, ok := ss.tx.Put(f.body)
			if !ok && ss.tx.Waitable(n) {
				var err error
				if bufs, sent, err = ss.ringRoom(bufs, sent, n, false); err != nil {
					f.finish()
					return bufs, sent, err
				}
				pos, ok = ss.tx.Put(f.body)
			}
			if ok {
				f.finish()
				return append(bufs, proto.AppendSharedData(nil, proto.TData, d.req, d.space, d.inst, d.off, pos, n)), sent, nil
			}
		}
		hdr = proto.AppendDataHeader(nil, proto.TData, d.req, d.space, d.inst, d.off, len(f.body))
	}
	bufs = append(bufs, hdr)
	if len(f.body) > 0 {
		bufs = append(bufs, f.body)
	}
	if f.release != nil {
		sent = append(sent, f)
	}
	return bufs, sent, nil
}

// ringRoom writes the frames gathered so far (the client releases only
// what it has read of), then waits for room for n bytes, in the ring
// (shm.Tx.Wait) or, with loans, within what may be lent to the client
// (shm.Tx.WaitLoans): until the write deadline, while the connection is
// open and the client keeps reading or releasing (shm.Stall).
func (ss *session) ringRoom(bufs net.Buffers, sent []outFrame, n int, loans bool) (net.Buffers, []outFrame, error) {
	if len(bufs) > 0 {
		var err error
		if bufs, sent, err = ss.write(bufs, sent); err != nil {
			return bufs, sent, err
		}
	}
	if deadline := time.Now().Add(writeDeadline); loans {
		ss.tx.WaitLoans(n, ss.s.cfg.Lend, deadline)
	} else {
		ss.tx.Wait(n, deadline)
	}
	return bufs, sent, nil
}
