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
// comes.

// piece is a run of a writer's bytes at an offset, sent as one data frame.
// A piece already put in the connection's ring (see putNow) has no data:
// its n bytes are at pos there.
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
// connection's deadline stays as it is). A piece of at least
// shm.MinPayload goes through the connection's shared ring when there is
// one (offered at the start of the first call after shm.After bytes of
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
	for _, p := range pieces {
		start, n := len(hdr), len(p.data)
		if p.put {
			hdr = proto.AppendSharedData(hdr, t, req, space, inst, p.off, p.pos, p.n)
			bufs = append(bufs, hdr[start:len(hdr):len(hdr)])
			continue
		}
		switch {
		case n < shm.MinPayload:
		case c.tx == nil:
			c.big += int64(n)
		default:
			pos, ok := c.tx.Put(p.data)
			if !ok && c.waitRoom && c.tx.Waitable(n) {
				var err error
				if bufs, hdr, err = c.ringRoom(bufs, hdr, n, deadline); err != nil {
					return err
				}
				start = 0
				pos, ok = c.tx.Put(p.data)
			}
			if ok {
				hdr = proto.AppendSharedData(hdr, t, req, space, inst, p.off, pos, n)
				bufs = append(bufs, hdr[start:len(hdr):len(hdr)])
				c.ringBytes += int64(n)
				continue
			}
			c.ringMissed += int64(n)
		}
		hdr = proto.AppendDataHeader(hdr, t, req, space, inst, p.off, n)
		bufs = append(bufs, hdr[start:len(hdr):len(hdr)], p.data)
	}
	if len(extra) > 0 {
		bufs = append(bufs, extra)
	}
	c.wbufs, c.whdr = bufs, hdr
	_, err := bufs.WriteTo(c.c) // consumes its copy of the slice, not c.wbufs
	clear(c.wbufs)              // drop references to the callers' buffers
	return err
}

// ringRoom waits for room for n bytes in the ring (shm.Tx.Wait) after
// writing the frames gathered so far (bufs, whose headers are in hdr):
// the consumer releases only what it has read of. The wait gives up when
// the connection is closed, at deadline, or when the consumer makes no
// progress for shm.Stall; the caller then sends inline. It returns the
// emptied buffers, or the write's error. wmu must be held.
func (c *conn) ringRoom(bufs net.Buffers, hdr []byte, n int, deadline time.Time) (net.Buffers, []byte, error) {
	if len(bufs) > 0 {
		w := bufs
		_, err := w.WriteTo(c.c)
		clear(bufs)
		if err != nil {
			return bufs[:0], hdr[:0], err
		}
	}
	c.tx.Wait(n, deadline)
	return bufs[:0], hdr[:0], nil
}

// putNow copies p, the bytes at offset off, into the connection's ring
// at once, in pieces of at most chunk bytes, and appends those pieces
// (put, without data) to ps for frames written later; it puts all of p or
// nothing (false: no ring, a piece below shm.MinPayload, or no room for
// all of it). The ring's consumer views references in the order they
// were put, so the caller writes these pieces' frames before any frame
// for bytes put after them, and must not call it while a writeData for
// earlier bytes may still put some.
func (c *conn) putNow(ps []piece, off int64, p []byte, chunk int) ([]piece, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tx == nil || !c.tx.Fits(len(p), chunk) {
		return ps, false
	}
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
// false once it has (the room may be in use again).
func (c *conn) appendHeld(out []byte, p piece, lo, hi int) ([]byte, bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.tx == nil {
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
	uc, ok := c.c.(*net.UnixConn)
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
