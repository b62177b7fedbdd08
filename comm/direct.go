package comm

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/wire"
)

// directServer accepts readers' connections on the direct path and hands
// each to the local writer it subscribes to.
type directServer struct {
	ls     []net.Listener
	eps    string // the listeners' endpoints, comma-separated
	max    int
	window int
	ring   int // shared ring offered to a reader of this host; not positive: none

	mu       sync.Mutex
	writers  map[wkey]*Writer
	creating int        // writers whose Create is in flight
	created  *sync.Cond // broadcast when creating drops or the server closes
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type wkey struct {
	space string
	inst  uint64
}

// newDirectServer serves the listeners, whose endpoints (see local.go)
// are eps; ring is the size of the shared ring offered to a reader of
// this host, 0 for none.
func newDirectServer(ls []net.Listener, eps string, max, window, ring int) *directServer {
	d := &directServer{ls: ls, eps: eps, max: max, window: window, ring: ring, writers: map[wkey]*Writer{},
		conns: map[net.Conn]struct{}{}}
	d.created = sync.NewCond(&d.mu)
	for _, l := range ls {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.accept(l)
		}()
	}
	return d
}

// addr returns the endpoints readers dial.
func (d *directServer) addr() string { return d.eps }

// beginCreate announces a Create in flight: the server may tell a reader
// about the instance before the writer learns its id and registers, and a
// Subscribe for an unknown instance waits while creates are in flight.
// Each beginCreate is followed by register or endCreate.
func (d *directServer) beginCreate() {
	d.mu.Lock()
	d.creating++
	d.mu.Unlock()
}

func (d *directServer) endCreate() {
	d.mu.Lock()
	d.creating--
	d.created.Broadcast()
	d.mu.Unlock()
}

func (d *directServer) register(space string, inst uint64, w *Writer) {
	d.mu.Lock()
	d.writers[wkey{space, inst}] = w
	d.creating--
	d.created.Broadcast()
	d.mu.Unlock()
}

// lookup returns the writer of the instance, waiting while creates are in
// flight if it is not registered yet.
func (d *directServer) lookup(space string, inst uint64) *Writer {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if w := d.writers[wkey{space, inst}]; w != nil || d.creating == 0 || d.closed {
			return w
		}
		d.created.Wait()
	}
}

func (d *directServer) unregister(space string, inst uint64, w *Writer) {
	d.mu.Lock()
	if d.writers[wkey{space, inst}] == w {
		delete(d.writers, wkey{space, inst})
	}
	d.mu.Unlock()
}

func (d *directServer) accept(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // closed: the listener only fails when the client closes
		}
		if uc, ok := c.(*net.UnixConn); ok {
			if c, err = directConn(uc); err != nil {
				uc.Close()
				continue
			}
		}
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go func() {
			defer d.wg.Done()
			d.serve(c)
			d.mu.Lock()
			delete(d.conns, c)
			d.mu.Unlock()
		}()
	}
}

// serve handles one reader connection: hello, then Subscribe requests,
// one at a time. While a subscription runs, the reader acknowledges what it
// has read (tAck); after it ends with an EOF the reader may keep the
// connection and subscribe again, to this writer or another of this
// client's.
func (d *directServer) serve(nc net.Conn) {
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	window := sendWindow(nc, d.window) // no inline writes unless the send buffer is known to hold them
	c := newConn(nc, d.max+1024, 0)    // it waits for acks: no spinning
	if _, ok := nc.(shm.UnixConn); ok {
		c.ringSize = max(d.ring, 0)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.r.Next()
	if err != nil || f.Type != proto.THello {
		return
	}
	nc.SetDeadline(time.Time{})
	if c.sendReq(proto.TOK, f.Req, nil) != nil {
		return
	}
	var cur *sink
	defer func() {
		if cur != nil {
			cur.abort()
			cur.wait()
		}
	}()
	for {
		f, err := c.r.Next()
		if err != nil {
			return
		}
		cur, err = d.handle(c, cur, f, window)
		if err != nil {
			c.sendReq(proto.TError, f.Req, &proto.Error{Code: proto.CodeProtocol, Msg: err.Error()})
			return
		}
	}
}

// handle processes one frame from a reader; cur is the subscription
// running on the connection, if any. An error breaks the protocol.
func (d *directServer) handle(c *conn, cur *sink, f wire.Frame, window int) (*sink, error) {
	switch f.Type {
	case tAck:
		var m ackMsg
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return cur, err
		}
		if cur != nil && cur.req == f.Req {
			cur.ack(m.Offset)
		}
		return cur, nil
	case proto.TSubscribe:
		var m proto.Subscribe
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return cur, err
		}
		if cur != nil {
			if !cur.finished() {
				return cur, fmt.Errorf("subscribe while subscription %d runs", cur.req)
			}
			cur.wait() // it has sent its EOF; let it return
		}
		s, perr := d.subscribe(c, f.Req, m, window)
		if perr != nil {
			c.sendReq(proto.TError, f.Req, perr)
			return nil, nil
		}
		return s, nil
	}
	return cur, fmt.Errorf("unexpected frame type %d", f.Type)
}

func (d *directServer) subscribe(c *conn, req uint32, m proto.Subscribe, window int) (*sink, *proto.Error) {
	w := d.lookup(m.Space, m.Instance)
	if w == nil {
		return nil, &proto.Error{Code: proto.CodeNotFound, Msg: fmt.Sprintf("no writer of instance %d here", m.Instance)}
	}
	s, err := w.subscribe(c, req, m.Offset, window)
	if err != nil {
		return nil, err.(*proto.Error)
	}
	return s, nil
}

func (d *directServer) close() {
	d.mu.Lock()
	d.closed = true
	d.created.Broadcast()
	for _, l := range d.ls {
		l.Close()
	}
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// sendWindow sets the connection's send buffer for want bytes of inline
// writes and returns how many it holds: the kernel may grant less than
// asked (net.core.wmem_max), and about half of what it reports is payload.
func sendWindow(nc net.Conn, want int) int {
	sc, ok := nc.(interface {
		syscall.Conn
		SetWriteBuffer(int) error
	})
	if !ok {
		return 0
	}
	sc.SetWriteBuffer(want)
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	raw.Control(func(fd uintptr) {
		got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return min(want, got/2)
}

// subscribedMsg is the payload of the OK answering a Subscribe: how often
// the reader should acknowledge, a quarter of the connection's window.
type subscribedMsg struct{ AckEvery int64 }

func (m *subscribedMsg) Encode(e *wire.Enc) { e.I64(m.AckEvery) }
func (m *subscribedMsg) Decode(d *wire.Dec) { m.AckEvery = d.I64() }

// tAck is the direct path's flow-control frame, from reader to writer on a
// connection otherwise idle in that direction: its request id is the
// subscription's and its payload ([ackMsg]) the offset up to which the
// reader has read. It is defined here because only the direct path, all
// of which is in this package, speaks it.
const tAck wire.Type = 64

// ackMsg is the payload of a tAck frame.
type ackMsg struct{ Offset int64 }

func (m *ackMsg) Encode(e *wire.Enc) { e.I64(m.Offset) }
func (m *ackMsg) Decode(d *wire.Dec) { m.Offset = d.I64() }

// sink streams a writer's bytes to one direct reader, so that the writer
// never waits for the reader. Write hands the bytes to the connection
// itself (inline) while that cannot block: nothing is queued or being
// written, and the bytes the reader has not acknowledged stay within the
// window, which the connection's send buffer holds. Otherwise it queues a
// copy for the sink's goroutine, which may block on the connection. The
// queue is bounded in bytes; a reader that lets it fill is dropped and
// continues from the cache. Every data frame carries its offset.
type sink struct {
	c      *conn
	req    uint32
	space  string
	inst   uint64
	limit  int // queued bytes before the reader is dropped
	window int // unacknowledged bytes for inline writes
	chunk  int // largest data frame
	pool   *sync.Pool

	mu     sync.Mutex
	cond   *sync.Cond
	q      []sinkItem
	queued int
	busy   bool       // a write to the connection is in progress
	acked  int64      // the reader has read up to here
	inline int64      // bytes written from Write itself (for tests)
	end    *proto.EOF // set by finish: send it after the queue, then stop
	dead   bool
	done   chan struct{}

	pieces []piece // Write's pieces; used while busy
}

type sinkItem struct {
	off    int64
	data   []byte
	pooled *[]byte // data's buffer, from pool, to return once written
}

func newSink(c *conn, req uint32, space string, inst uint64, limit, window, chunk int, pool *sync.Pool, off int64) *sink {
	s := &sink{c: c, req: req, space: space, inst: inst, limit: limit, window: window, chunk: chunk, pool: pool,
		acked: off, busy: true, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// start queues backlog (the bytes from the subscription's offset to the
// writer's) and starts the goroutine, which first answers the Subscribe:
// until it has, the sink is busy and Write queues.
func (s *sink) start(backlog []byte) {
	if len(backlog) > 0 {
		s.q = append(s.q, sinkItem{off: s.acked, data: backlog})
		s.queued = len(backlog)
	}
	go s.run()
}

// offer hands p, at off, to the reader; false means the sink is gone
// (dropped or dead).
func (s *sink) offer(off int64, p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	// Inline while that cannot block: within the window the socket's send
	// buffer holds, or, past it, when the bytes go through the ring.
	if len(s.q) == 0 && !s.busy && (off+int64(len(p))-s.acked <= int64(s.window) || s.c.ringTakes(len(p), s.chunk)) {
		s.busy = true
		s.mu.Unlock()
		err := s.writeInline(off, p)
		s.mu.Lock()
		s.busy = false
		if err != nil {
			s.kill()
			return false
		}
		s.inline += int64(len(p))
		if len(s.q) > 0 || s.end != nil {
			s.cond.Broadcast() // work the goroutine held back while busy
		}
		return !s.dead
	}
	if s.queued+len(p) > s.limit {
		s.kill() // slow receiver: it resumes from the cache
		return false
	}
	s.enqueue(off, p)
	s.cond.Broadcast()
	return true
}

// enqueue queues a copy of p, at off, in chunk-sized buffers from the
// client's pool: reused memory, which a fresh allocation per message is
// not (its pages fault in as it is written). s.mu must be held.
func (s *sink) enqueue(off int64, p []byte) {
	s.queued += len(p)
	for len(p) > 0 {
		pb := s.buffer()
		n := copy((*pb)[:cap(*pb)], p)
		s.q = append(s.q, sinkItem{off, (*pb)[:n], pb})
		p = p[n:]
		off += int64(n)
	}
}

func (s *sink) buffer() *[]byte {
	if pb, ok := s.pool.Get().(*[]byte); ok && cap(*pb) == s.chunk {
		return pb
	}
	b := make([]byte, s.chunk)
	return &b
}

// recycle returns the written items' buffers to the pool.
func (s *sink) recycle(items []sinkItem) {
	for i, it := range items {
		if it.pooled != nil {
			s.pool.Put(it.pooled)
		}
		items[i] = sinkItem{}
	}
}

// writeInline writes p at off as data frames, from Write's goroutine.
func (s *sink) writeInline(off int64, p []byte) error {
	pieces := appendPieces(s.pieces[:0], off, p, s.chunk)
	err := s.c.writeData(proto.TData, s.req, s.space, s.inst, pieces, nil, time.Time{})
	clear(pieces) // drop references to the caller's buffer
	s.pieces = pieces[:0]
	return err
}

// kill drops the reader: it continues from the cache. s.mu must be held.
func (s *sink) kill() {
	s.dead = true
	s.c.close()
	s.cond.Broadcast()
}

// ack records that the reader has read up to off.
func (s *sink) ack(off int64) {
	s.mu.Lock()
	if off > s.acked {
		s.acked = off
	}
	s.mu.Unlock()
}

// finish ends the stream after the queued bytes: with an EOF frame when the
// channel was sealed, by closing the connection otherwise.
func (s *sink) finish(length int64, sealed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return
	}
	if sealed {
		s.end = &proto.EOF{Length: length, Sealed: true}
		s.cond.Broadcast()
	} else {
		s.kill()
	}
}

// finished reports whether the writer has ended the stream.
func (s *sink) finished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end != nil || s.dead
}

func (s *sink) abort() {
	s.mu.Lock()
	s.dead = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.c.close()
}

func (s *sink) wait() {
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

func (s *sink) run() {
	defer close(s.done)
	err := s.c.sendReq(proto.TOK, s.req, &subscribedMsg{AckEvery: int64(s.window / 4)})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	if err != nil {
		s.kill()
		return
	}
	var pieces []piece
	for {
		for (len(s.q) == 0 && s.end == nil || s.busy) && !s.dead {
			s.cond.Wait()
		}
		if s.dead {
			return
		}
		if len(s.q) == 0 {
			s.mu.Unlock()
			s.c.sendReq(proto.TEOF, s.req, s.end) // the connection stays, for another subscription
			s.mu.Lock()
			return
		}
		items := s.q
		s.q = nil
		s.queued = 0
		s.busy = true
		s.mu.Unlock()
		pieces = pieces[:0]
		for _, it := range items {
			pieces = append(pieces, piece{off: it.off, data: it.data})
		}
		err := s.c.writeData(proto.TData, s.req, s.space, s.inst, pieces, nil, time.Now().Add(30*time.Second))
		s.c.c.SetWriteDeadline(time.Time{}) // inline writes have none
		clear(pieces)
		s.recycle(items)
		s.mu.Lock()
		s.busy = false
		if err != nil {
			s.kill()
			return
		}
	}
}
