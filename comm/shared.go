package comm

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/wire"
)

// Shared rings (package shm) on a connection: the side that sends large
// data frames (a writer to its server or to a reader of its host, a server
// to a reader of its host) offers one once the connection has carried
// shm.After bytes of them, ahead of any later frame, and the frames then
// carry references into it; the side that reads keeps descriptors from a
// quarter of that on (shm.Lazy) and takes the ring in when its TRing frame
// comes. A server's ring may come with its arena (shm.Arena): a writer's
// connection asks for it (askArena), and large writes then go into slots
// of it, the cache's segments themselves (see place).

// piece is a run of a writer's bytes at an offset, sent as one data frame.
// A piece already put in the connection's ring or placed in a slot of the
// server's arena (see putNow) has no data: its n bytes are at pos there
// (an shm.ArenaRef position for the arena).
type piece struct {
	off  int64
	data []byte
	put  bool
	pos  uint64
	n    int
}

// appendPieces appends p, the bytes at offset off, cut into pieces of at
// most chunk bytes (one data frame each).
func appendPieces(ps []piece, off int64, p []byte, chunk int) []piece {
	for len(p) > 0 {
		n := min(len(p), chunk)
		ps = append(ps, piece{off: off, data: p[:n]})
		p, off = p[n:], off+int64(n)
	}
	return ps
}

// writeData writes the pieces as data frames of type t and request req
// for instance inst of space, then extra (a request that must follow
// them, or nil), in one vectored write under deadline (when zero, the
// connection's deadline stays as it is). A write's piece of at least
// shm.MinPayload goes, segment by segment, into its segment's slot of the
// server's arena when there is one (a call of slotMin bytes or more may
// take new slots), else through the connection's shared ring when there
// is one (offered at the start of the first call after shm.After bytes of
// such pieces) and it has room; the frame then carries a reference. On a
// connection that waits for room (waitRoom), a piece that does not fit
// waits for the consumer to release some (see ringRoom), and goes inline
// only when that wait gives up.
func (c *conn) writeData(t wire.Type, req uint32, space string, inst uint64, pieces []piece, extra []byte, deadline time.Time) error {
	if !deadline.IsZero() {
		c.c.SetWriteDeadline(deadline)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tx == nil && c.big >= shm.After && c.ringSize > 0 {
		c.offerRing() // before this call's frames: after every byte written so far
	}
	bufs, hdr := c.wbufs[:0], c.whdr[:0]
	var err error
	total := 0
	for _, p := range pieces {
		total += len(p.data)
	}
	fresh := total >= slotMin // a large write: it may take new slots
	for _, p := range pieces {
		if p.put {
			start := len(hdr)
			hdr = proto.AppendSharedData(hdr, t, req, space, inst, p.off, p.pos, p.n)
			bufs = append(bufs, hdr[start:len(hdr):len(hdr)])
			continue
		}
		// Segment by segment: into the segment's slot of the server's arena
		// when it has one (also a small end of a large piece, which begins
		// the next segment's slot), else through the ring or inline.
		arena := t == proto.TWrite && len(p.data) >= shm.MinPayload
		for len(p.data) > 0 {
			m := len(p.data)
			if arena {
				if pos, k, ok := c.placeSegment(space, inst, p.off, p.data, fresh); ok {
					start := len(hdr)
					hdr = proto.AppendSharedData(hdr, t, req, space, inst, p.off, pos, k)
					bufs = append(bufs, hdr[start:len(hdr):len(hdr)])
					p.off, p.data = p.off+int64(k), p.data[k:]
					continue
				}
				m = c.segmentRest(p.off, m)
			}
			if bufs, hdr, err = c.appendPiece(bufs, hdr, t, req, space, inst, p.off, p.data[:m], deadline); err != nil {
				return err
			}
			p.off, p.data = p.off+int64(m), p.data[m:]
		}
	}
	if len(extra) > 0 {
		bufs = append(bufs, extra)
	}
	c.wbufs, c.whdr = bufs, hdr
	err = c.writeBuffers(bufs) // consumes its copy of the slice, not c.wbufs
	clear(c.wbufs)             // drop references to the callers' buffers
	return err
}

// appendPiece adds to bufs (whose headers are in hdr) the data frame for
// the bytes at off: through the ring when there is one with room (or,
// waiting for room, gets it), inline otherwise. wmu must be held.
func (c *conn) appendPiece(bufs net.Buffers, hdr []byte, t wire.Type, req uint32, space string, inst uint64, off int64, data []byte, deadline time.Time) (net.Buffers, []byte, error) {
	start, n := len(hdr), len(data)
	switch {
	case n < shm.MinPayload:
	case c.tx == nil:
		c.big += int64(n)
	default:
		pos, ok := c.tx.Put(data)
		if !ok && c.waitRoom && c.tx.Waitable(n) {
			var err error
			if bufs, hdr, err = c.ringRoom(bufs, hdr, n, deadline); err != nil {
				return bufs, hdr, err
			}
			start = 0
			pos, ok = c.tx.Put(data)
		}
		if ok {
			hdr = proto.AppendSharedData(hdr, t, req, space, inst, off, pos, n)
			c.ringBytes += int64(n)
			return append(bufs, hdr[start:len(hdr):len(hdr)]), hdr, nil
		}
		c.ringMissed += int64(n)
	}
	hdr = proto.AppendDataHeader(hdr, t, req, space, inst, off, n)
	return append(bufs, hdr[start:len(hdr):len(hdr)], data), hdr, nil
}

// ringRoom waits for room for n bytes in the ring (shm.Tx.Wait) after
// writing the frames gathered so far (bufs, whose headers are in hdr):
// the consumer releases only what it has read of. The wait gives up when
// the connection is closed, at deadline, or when the consumer makes no
// progress for shm.Stall; the caller then sends inline. It returns the
// emptied buffers, or the write's error. wmu must be held.
func (c *conn) ringRoom(bufs net.Buffers, hdr []byte, n int, deadline time.Time) (net.Buffers, []byte, error) {
	if len(bufs) > 0 {
		err := c.writeBuffers(bufs)
		clear(bufs)
		if err != nil {
			return bufs[:0], hdr[:0], err
		}
	}
	c.tx.Wait(n, deadline)
	return bufs[:0], hdr[:0], nil
}

// putNow copies p, the bytes at offset off of instance inst of space, at
// once into slots of the server's arena (see arenaSplit: all but a head,
// which goes into the ring) or else into the connection's ring, in pieces
// of at most chunk bytes, and appends those pieces (put, without data) to
// ps for frames written later; it puts all of p or nothing (false: no
// ring, a piece below shm.MinPayload, or no room for all of it). The
// ring's consumer views references in the order they were put, so the
// caller writes these pieces' frames before any frame for bytes put after
// them, and must not call it while a writeData for earlier bytes may still
// put some.
func (c *conn) putNow(ps []piece, off int64, p []byte, chunk int, space string, inst uint64) ([]piece, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if head, ok := c.arenaSplit(space, inst, off, len(p)); ok && (head == 0 || c.tx != nil && c.tx.Fits(head, chunk)) {
		had := len(ps)
		if ps, ok = c.putRing(ps, off, p[:head], chunk); ok {
			for q, o := p[head:], off+int64(head); len(q) > 0; {
				pos, n, ok := c.place(space, inst, o, q[:min(len(q), chunk)])
				if !ok {
					break
				}
				ps = append(ps, piece{off: o, put: true, pos: pos, n: n})
				q, o = q[n:], o+int64(n)
				if len(q) == 0 {
					return ps, true
				}
			}
		}
		ps = ps[:had] // nothing sent refers to what was put or placed; the ring's room comes back with the next release
		return ps, false
	}
	if c.tx == nil || !c.tx.Fits(len(p), chunk) {
		return ps, false
	}
	return c.putRing(ps, off, p, chunk)
}

// putRing is putNow into the ring, once its room is known to take p.
// wmu must be held.
func (c *conn) putRing(ps []piece, off int64, p []byte, chunk int) ([]piece, bool) {
	for len(p) > 0 {
		n := min(len(p), chunk)
		pos, ok := c.tx.Put(p[:n])
		if !ok { // Fits said it would
			panic("comm: ring refused a put it said fits")
		}
		ps = append(ps, piece{off: off, put: true, pos: pos, n: n})
		c.ringBytes += int64(n)
		p, off = p[n:], off+int64(n)
	}
	return ps, true
}

// appendHeld appends to out the bytes [lo, hi) of a piece put in the
// connection's ring (putNow) while its consumer has not released them;
// false once it has (the room may be in use again), and for a piece in
// the server's arena, which the writer cannot tell is still the segment.
func (c *conn) appendHeld(out []byte, p piece, lo, hi int) ([]byte, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tx == nil || p.pos&shm.ArenaRef != 0 { // the server's: it may be reused once it has the bytes
		return out, false
	}
	b, ok := c.tx.Held(p.pos, p.n)
	if !ok {
		return out, false
	}
	return append(out, b[lo:hi]...), true
}

// ringTakes reports whether a payload of n bytes, cut into pieces of at
// most chunk bytes, would go through the connection's ring whole: a ring
// is set up, every piece is large enough for it, and all fit in the room
// its consumer has released. Then writing it puts only small frames on
// the socket, which cannot block.
func (c *conn) ringTakes(n, chunk int) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.tx != nil && c.tx.Fits(n, chunk)
}

// offerRing sets up the connection's ring and offers it to the peer, once
// the connection has carried shm.After bytes of payloads large enough for
// one (c.big), and before any frame after them: the peer switches to
// reading descriptors only after a share of that (shm.Lazy). A ring the
// process has no budget for is tried again after another shm.After bytes;
// one that cannot be made or offered is not tried again. wmu must be held.
func (c *conn) offerRing() {
	uc, ok := c.c.(shm.UnixConn)
	if !ok {
		c.ringSize = 0
		return
	}
	tx, err := shm.Share(uc, c.ringSize, proto.AppendMsg(nil, proto.TRing, 0, nil), nil)
	if errors.Is(err, shm.ErrBudget) {
		c.big = 0 // the process's rings use their budget: try again later
		return
	}
	c.ringSize = 0 // from here on, one try only
	c.tx = tx      // nil when it could not be made or offered
}

// askArena asks the server, on a Unix socket to it, for its ring and
// arena (TArena), so that this connection's writes can go straight into
// the cache's segments (see place); the reads switch to keeping
// descriptors first. Call it before the writer's Create, while nothing
// reads the connection. The server offers only to a client of its user.
func (c *conn) askArena() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.slot = nil // a new writer starts with no slot: the server may have ended the last one
	if c.askedArena || c.fds == nil || c.rx != nil {
		return
	}
	c.askedArena = true
	c.fds.Switch()
	c.c.Write(proto.AppendMsg(nil, proto.TArena, 0, nil)) // a failure shows in the Create that follows
}

// slotMin is the smallest write (or batch of them) that takes a new slot of
// the server's arena; smaller ones use a slot already taken for their
// segment, or the ring. When it was chosen, a new slot was fresh memory
// the writer faulted in and copied into cold, on its own goroutine: for a
// 64 KiB ping-pong that kept every byte, 37-51 us a round trip became
// 60-61, while the warm ring and the server's copy cost the writer less.
// A bandwidth-bound writer of large messages gains what the server no
// longer copies. Since slots come reserved and are filled with pwrite
// (or mapped once per process), 64 KiB against 256 KiB was measured
// again on a shadow-paging guest: a 100 KB direct ping-pong moved
// 813-922 against 826-924 MB/s (3 rounds), so it stays.
const slotMin = 256 << 10

// arenaSplit reports whether the n bytes at off of instance inst of
// space can go into slots of the server's arena, all but the first head
// bytes: the bytes of each segment they touch go into the slot for that
// segment, which is the current one, or (for at least slotMin bytes) one
// the server has given when they begin the segment (past the first). The
// head is the rest of a segment begun without a slot, which goes through
// the ring or inline. wmu must be held.
func (c *conn) arenaSplit(space string, inst uint64, off int64, n int) (head int, ok bool) {
	fresh := n >= slotMin
	if c.rx == nil || c.rx.SlotSize() == 0 || n <= 0 || c.badArena {
		return 0, false
	}
	size := int64(c.rx.SlotSize())
	first := off / size // the first segment that needs a slot given
	switch {
	case c.slotFor(space, inst, first):
		first++
	case first == 0 || off%size != 0:
		head = int(min(int64(n), size-off%size)) // no slot for this segment's rest
		first++
	}
	last := (off + int64(n) - 1) / size
	if need := int(last - first + 1); head == n || need > c.rx.Slots() || need > 0 && !fresh {
		return 0, false
	}
	return head, true
}

// placeSegment places the first bytes of p, those of the segment off is
// in, in that segment's slot of the server's arena (see place), when
// there is one: the current slot, or, with fresh, a slot given when off
// begins the segment (past the first). wmu must be held.
func (c *conn) placeSegment(space string, inst uint64, off int64, p []byte, fresh bool) (uint64, int, bool) {
	if c.rx == nil || c.rx.SlotSize() == 0 || c.badArena {
		return 0, 0, false
	}
	size := int64(c.rx.SlotSize())
	seg := off / size
	if !c.slotFor(space, inst, seg) && (!fresh || seg == 0 || off%size != 0 || c.rx.Slots() == 0) {
		return 0, 0, false
	}
	return c.place(space, inst, off, p)
}

// segmentRest returns how many of n bytes at off lie in off's segment of
// the server's arena, n when there is no arena. wmu must be held.
func (c *conn) segmentRest(off int64, n int) int {
	if c.rx == nil || c.rx.SlotSize() == 0 {
		return n
	}
	size := int64(c.rx.SlotSize())
	return int(min(int64(n), size-off%size))
}

// slotFor reports whether the current slot is for segment seg of
// instance inst of space. wmu must be held.
func (c *conn) slotFor(space string, inst uint64, seg int64) bool {
	return c.slot != nil && c.slotSpace == space && c.slotInst == inst && c.slotSeg == seg
}

// place copies the first bytes of p, those of the segment off is in, to
// where that segment's slot holds them, taking a new slot when off
// begins the segment, and returns their position (an shm.ArenaRef one)
// and count. Its caller (arenaSplit, placeSegment) found a slot there;
// false when the one taken is not a slot of the arena after all: the
// connection then places nothing more. wmu must be held.
func (c *conn) place(space string, inst uint64, off int64, p []byte) (uint64, int, bool) {
	size := int64(c.rx.SlotSize())
	seg, at := off/size, int(off%size)
	if !c.slotFor(space, inst, seg) {
		b, aoff, call, ok := c.rx.Take()
		if !ok || at != 0 {
			c.slot, c.badArena = nil, true
			return 0, 0, false
		}
		c.slot, c.slotOff, c.slotCall, c.slotSpace, c.slotInst, c.slotSeg = b, aoff, call, space, inst, seg
	}
	n := min(len(p), len(c.slot)-at)
	if !c.slotCall || c.rx.WriteSlot(p[:n], c.slotOff+uint64(at)) != nil {
		copy(c.slot[at:], p[:n])
	}
	c.arenaBytes += int64(n)
	return shm.ArenaRef | (c.slotOff + uint64(at)), n, true
}

// next returns the next frame, taking in a shared ring the peer offers on
// the way (a TRing frame, which concerns nobody else).
func (c *conn) next() (wire.Frame, error) {
	for {
		f, err := c.r.Next()
		if err != nil || f.Type != proto.TRing {
			return f, err
		}
		if err := c.takeRing(); err != nil {
			return f, err
		}
	}
}

// takeRing maps the ring whose descriptors came with a TRing frame.
func (c *conn) takeRing() error {
	rx, err := c.fds.Accept(c.rx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	c.wmu.Lock() // close reads it from another goroutine
	c.rx = rx
	c.wmu.Unlock()
	return nil
}

// shared returns the bytes a FlagShared data frame's reference points to
// in the peer's ring; the caller releases them (c.rx.Release) once used.
func (c *conn) shared(ref []byte) ([]byte, error) {
	v, err := c.rx.Resolve(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return v, nil
}

// skipShared gives back the ring bytes of a frame nobody reads (a stale
// frame of an earlier stream, or one drained at Close), when it is a
// shared data frame: its producer waiting for room in its ring (see
// ringRoom) must not wait for them. No view of the ring may be in use.
func (c *conn) skipShared(f wire.Frame) error {
	if f.Type != proto.TData || f.Flags&proto.FlagShared == 0 {
		return nil
	}
	_, _, _, ref, err := proto.DecodeData(f.Payload)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if _, err := c.shared(ref); err != nil {
		return err
	}
	c.rx.Release()
	return nil
}
