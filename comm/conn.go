package comm

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pispace/pispace/comm/internal/fdconn"
	"github.com/pispace/pispace/comm/internal/local"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	spinread "github.com/pispace/pispace/comm/internal/spin"
	"github.com/pispace/pispace/comm/wire"
)

// conn is one client connection to a server (or, on the direct path, to a
// writer). Reads are done by exactly one goroutine at a time (its owner);
// writes are serialised by wmu.
type conn struct {
	c     net.Conn
	src   io.Reader     // under br: c itself, or a spin.Reader over it
	br    *bufio.Reader // under r, shared: data frames are streamed from it (see dataHeader)
	r     *wire.Reader
	wmu   sync.Mutex
	req   uint32 // last request id used; owner-only
	hello uint32 // request id of the hello whose answer is still to be read; owner-only
	// welcome receives the server's same-host endpoint from the hello's
	// answer; nil on the accepting side.
	welcome func(local string)
	max     int // largest payload accepted
	// ringSize is the size of the shared ring to offer for large data
	// frames (a Unix socket to a server), 0 for none; tx is the ring
	// once offered. Both are guarded by wmu.
	ringSize int
	tx       *shm.Tx
	big      int64 // bytes of large pieces sent while there is no ring (shm.After)
	// waitRoom makes writeData wait for room in a full ring rather than
	// send a piece inline (shm.Tx.Wait): set on a connection to a server,
	// whose writer (the cache sender) would block on the socket anyway;
	// never on a writer's direct connection to a reader, which must not
	// wait for its reader. Closing the connection ends such a wait.
	waitRoom bool
	// writeData's buffers, reused from one call to the next.
	wbufs net.Buffers
	whdr  []byte
	// fds collects the descriptors the peer sends over a Unix socket, and
	// rx is the peer's shared ring once offered; both belong to the
	// reading goroutine, like r.
	fds *shm.Lazy
	rx  *shm.Rx
	// Bytes of large pieces sent through the ring, and sent inline for
	// want of room in it, and placed in the server's arena (for tests).
	// Guarded by wmu.
	ringBytes, ringMissed, arenaBytes int64
	// askedArena: a TArena went out (see askArena). slot is the slot of
	// the server's arena being filled, for segment slotSeg of instance
	// slotInst of slotSpace, at arena offset slotOff (see place);
	// slotCall: it is filled with pwrite (shm.Rx.Take says which).
	// Guarded by wmu.
	askedArena bool
	badArena   bool
	slot       []byte
	slotOff    uint64
	slotCall   bool
	slotSpace  string
	slotInst   uint64
	slotSeg    int64
}

// dial connects to a server, or to a writer's direct-path listener, at
// endpoints (see local.go): through the same-host Unix socket when there
// is one, known for a server from an earlier connection's welcome. It
// sends the hello and does not wait for the answer: the hello is
// pipelined with the caller's first request, whose reply follows the
// hello's (a refused hello is reported by that request).
func (cl *Client) dial(ctx context.Context, endpoints string) (*conn, error) {
	return cl.dialAs(ctx, endpoints, false)
}

// dialAs is dial; a direct connection (to a writer's direct-path
// listener) over a Unix socket leaves the runtime's poller (see
// directConn).
func (cl *Client) dialAs(ctx context.Context, endpoints string, direct bool) (*conn, error) {
	server := endpoints
	cl.mu.Lock()
	if l := cl.local[server]; l != "" {
		endpoints += "," + l
	}
	cl.mu.Unlock()
	nc, err := dialEndpoints(ctx, cl.cfg, endpoints)
	if err != nil {
		return nil, fmt.Errorf("comm: dial %s: %w", local.TCP(endpoints), err)
	}
	switch uc := nc.(type) {
	case *net.TCPConn:
		uc.SetNoDelay(true)
	case *net.UnixConn:
		// A Unix socket's send buffer does not grow by itself as TCP's
		// does: make room for a writer's bursts, so that its writes to the
		// cache return before the server has read them.
		uc.SetWriteBuffer(cl.cfg.CacheQueue)
		if direct {
			if nc, err = directConn(uc); err != nil {
				uc.Close()
				return nil, fmt.Errorf("comm: dial %s: %w", local.TCP(endpoints), err)
			}
		}
	}
	c := newConn(nc, cl.cfg.MaxPayload+1024, cl.cfg.SpinRead)
	if _, ok := nc.(shm.UnixConn); ok {
		c.ringSize = max(cl.cfg.SharedRing, 0)
		c.waitRoom = true
	}
	c.welcome = func(local string) {
		cl.mu.Lock()
		cl.local[server] = local
		cl.mu.Unlock()
	}
	req, err := c.send(proto.THello, &proto.Hello{Magic: proto.Magic, Version: proto.Version, Peer: "comm client"})
	if err != nil {
		nc.Close()
		return nil, ctxErr(ctx, fmt.Errorf("comm: handshake with %s: %w", local.TCP(endpoints), err))
	}
	c.hello = req
	return c, nil
}

// frameBuffer is the size of a connection's read buffer; wire.NewReader
// reuses a bufio.Reader at least this large instead of wrapping it.
const frameBuffer = 64 << 10

// newConn wraps nc; its reads busy-poll the socket for up to spin before
// parking (see package spin), none when spin is not positive.
func newConn(nc net.Conn, max int, spin time.Duration) *conn {
	var fds *shm.Lazy
	var src io.Reader
	if uc, ok := nc.(shm.UnixConn); ok {
		fds = shm.NewLazy(uc)
		src = spinread.NewSource(nc, fds, spin)
	} else {
		src = spinread.New(nc, spin)
	}
	br := bufio.NewReaderSize(src, frameBuffer)
	return &conn{c: nc, src: src, br: br, r: wire.NewReader(br, max), max: max, fds: fds}
}

// dataHeader reads, when the next frame is a data frame of request req, its
// header and the data prefix, leaving the connection at the frame's first
// data byte; it returns the data's offset and length. Otherwise it consumes
// nothing and ok is false: the caller reads the frame with c.r.Next. This
// lets a reader copy data straight from the connection to its caller's
// buffer.
// prefixMax bounds the prefix looked at (the space name's length plus
// three varints).
func (c *conn) dataHeader(req uint32, prefixMax int) (off int64, n int, ok bool, err error) {
	h, err := c.br.Peek(wire.HeaderSize)
	if err != nil {
		return 0, 0, false, err
	}
	size := int(binary.LittleEndian.Uint32(h[8:]))
	if h[0] != wire.Version || wire.Type(h[1]) != proto.TData || binary.LittleEndian.Uint32(h[4:]) != req ||
		binary.LittleEndian.Uint16(h[2:]) != 0 || size > c.max {
		return 0, 0, false, nil // not ours, or malformed: Next handles it
	}
	// The prefix: space name, instance, offset.
	pre, err := c.br.Peek(wire.HeaderSize + min(size, prefixMax, c.br.Size()-wire.HeaderSize))
	if err != nil {
		return 0, 0, false, err
	}
	d := wire.NewDec(pre[wire.HeaderSize:])
	d.Bytes(wire.MaxString)
	d.U64()
	off = d.I64()
	if d.Err() != nil || off < 0 {
		return 0, 0, false, nil
	}
	used := len(pre) - len(d.B)
	c.br.Discard(used)
	return off, wire.HeaderSize + size - used, true, nil
}

// send writes one message frame with a fresh request id and returns it.
func (c *conn) send(t wire.Type, m proto.Msg) (uint32, error) {
	req := c.nextReq()
	b := proto.AppendMsg(nil, t, req, m)
	c.wmu.Lock()
	_, err := c.c.Write(b)
	c.wmu.Unlock()
	return req, err
}

// nextReq returns a fresh request id.
func (c *conn) nextReq() uint32 {
	c.req++
	if c.req == 0 {
		c.req = 1
	}
	return c.req
}

// sendReq writes a frame carrying the given request id (a cancel, say).
func (c *conn) sendReq(t wire.Type, req uint32, m proto.Msg) error {
	b := proto.AppendMsg(nil, t, req, m)
	c.wmu.Lock()
	_, err := c.c.Write(b)
	c.wmu.Unlock()
	return err
}

// call sends a request and reads frames until the one answering it. An
// Error reply is returned as an error.
func (c *conn) call(t wire.Type, m proto.Msg) (wire.Frame, error) {
	req, err := c.send(t, m)
	if err != nil {
		return wire.Frame{}, err
	}
	return c.await(req)
}

// callCtx is call bounded by ctx: when ctx ends first the read is cut
// and the connection is left unusable (the caller drops it).
func (c *conn) callCtx(ctx context.Context, t wire.Type, m proto.Msg) (wire.Frame, error) {
	if ctx.Done() == nil {
		return c.call(t, m)
	}
	stop := context.AfterFunc(ctx, func() { c.c.SetReadDeadline(time.Unix(1, 0)) })
	f, err := c.call(t, m)
	if !stop() {
		return f, ctx.Err()
	}
	return f, err
}

// await reads frames until one answers req, skipping stale ones.
func (c *conn) await(req uint32) (wire.Frame, error) {
	for {
		f, err := c.next()
		if err != nil {
			return f, err
		}
		if ok, err := c.isHelloReply(f); ok {
			if err != nil {
				return f, err
			}
			continue
		}
		if f.Req != req && f.Req != 0 {
			continue // a late answer to a request given up on
		}
		if f.Type == proto.TError {
			return f, decodeError(f)
		}
		return f, nil
	}
}

// isHelloReply reports whether f answers the pipelined hello, and the
// error if the peer refused it.
func (c *conn) isHelloReply(f wire.Frame) (bool, error) {
	if c.hello == 0 || f.Req != c.hello {
		return false, nil
	}
	c.hello = 0
	switch f.Type {
	case proto.TOK:
		var w proto.Welcome
		if len(f.Payload) > 0 && proto.Unmarshal(f.Payload, &w) == nil && w.Local != "" && c.welcome != nil {
			c.welcome(w.Local)
		}
		return true, nil
	case proto.TError:
		return true, fmt.Errorf("comm: handshake: %w", decodeError(f))
	}
	return true, fmt.Errorf("%w: unexpected hello reply type %d", ErrProtocol, f.Type)
}

func decodeError(f wire.Frame) error {
	var e proto.Error
	if err := proto.Unmarshal(f.Payload, &e); err != nil {
		return fmt.Errorf("%w: undecodable error frame: %v", ErrProtocol, err)
	}
	return remoteError(&e)
}

// callInfo performs a request answered by an Info frame. Cancelling ctx
// sends a Cancel for the request (for blocking attaches) and unblocks the
// read; the connection is then unusable and the caller must drop it.
func (c *conn) callInfo(ctx context.Context, t wire.Type, m proto.Msg) (*proto.Info, error) {
	req, err := c.send(t, m)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		c.sendReq(proto.TCancel, 0, &proto.Cancel{Req: uint64(req)})
		c.c.SetReadDeadline(time.Now().Add(time.Second))
	})
	defer stop()
	f, err := c.await(req)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if f.Type != proto.TInfo {
		return nil, fmt.Errorf("%w: reply type %d, want info", ErrProtocol, f.Type)
	}
	var info proto.Info
	if err := proto.Unmarshal(f.Payload, &info); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return &info, nil
}

// reusable reports whether an idle connection can serve a new user:
// nothing unread is buffered, and a non-blocking peek finds the socket
// neither closed by the peer nor holding bytes nobody asked for. It clears
// the deadlines an earlier user may have left.
func (c *conn) reusable() bool {
	c.c.SetDeadline(time.Time{})
	if c.br.Buffered() > 0 {
		return false
	}
	sc, ok := c.c.(syscall.Conn)
	if !ok {
		return true // not a socket (tests): nothing to look at
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		quiet = err == syscall.EAGAIN
		return true
	})
	return quiet
}

// fitness ranks an idle connection for a new user that writes large
// payloads (ring) or reads them. A writer wants its own ring to the peer:
// 2 with it, 1 without (the server's ring and arena, which every writer
// asks for, do not count). A reader wants the peer's ring to it and
// should leave writers' rings alone: 2 with the peer's ring and none of
// ours, 1 with neither, 0 with ours. Nothing reads an idle connection, so
// rx is safe to look at under wmu, which takeRing holds to set it.
func (c *conn) fitness(ring bool) int {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case ring && c.tx != nil, !ring && c.rx != nil && c.tx == nil:
		return 2
	case ring, c.tx == nil:
		return 1
	}
	return 0
}

// close closes the connection, then unmaps its ring: the close first, so
// that a write stuck on the connection, holding wmu, returns.
// The peer's ring is unmapped too: a connection that carries shared data
// (a reader's) is closed by its reading goroutine, which holds no view of
// the ring by then.
func (c *conn) close() error {
	err := c.c.Close()
	c.wmu.Lock()
	if c.rx != nil {
		c.rx.Close()
		c.rx = nil
	}
	if c.tx != nil {
		c.tx.Close()
		c.tx = nil
	}
	c.ringSize = 0
	c.wmu.Unlock()
	return err
}

// ctxErr prefers the context's error when the context ended, so callers see
// context.Canceled or DeadlineExceeded rather than an I/O timeout.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errCanceled) {
		return context.Canceled
	}
	return err
}

// Dialer opens a connection to addr. Tests inject one to put a faulty
// network between parties.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// directConn takes a direct-path connection's Unix socket out of the
// runtime's poller (package fdconn): a reader spinning on it, and a writer
// whose reader drains it, would otherwise wake an idle thread of their
// process in epoll_wait for every frame.
func directConn(uc *net.UnixConn) (net.Conn, error) { return fdconn.New(uc) }

// writeBuffers writes bufs (consuming this copy of the slice) in one
// writev where the connection can, as net.Buffers.WriteTo does for a
// socket of the runtime's poller.
func (c *conn) writeBuffers(bufs net.Buffers) error {
	if w, ok := c.c.(interface {
		WriteBuffers(*net.Buffers) (int64, error)
	}); ok {
		_, err := w.WriteBuffers(&bufs)
		return err
	}
	_, err := bufs.WriteTo(c.c)
	return err
}
