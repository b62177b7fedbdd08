package comm

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/wire"
)

// directServer accepts readers' connections on the direct path and hands
// each to the local writer it subscribes to.
type directServer struct {
	l   net.Listener
	max int

	mu      sync.Mutex
	writers map[wkey]*Writer
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

type wkey struct {
	space string
	inst  uint64
}

func newDirectServer(l net.Listener, max int) *directServer {
	d := &directServer{l: l, max: max, writers: map[wkey]*Writer{}, conns: map[net.Conn]struct{}{}}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.accept()
	}()
	return d
}

func (d *directServer) addr() string { return d.l.Addr().String() }

func (d *directServer) register(space string, inst uint64, w *Writer) {
	d.mu.Lock()
	d.writers[wkey{space, inst}] = w
	d.mu.Unlock()
}

func (d *directServer) unregister(space string, inst uint64, w *Writer) {
	d.mu.Lock()
	if d.writers[wkey{space, inst}] == w {
		delete(d.writers, wkey{space, inst})
	}
	d.mu.Unlock()
}

func (d *directServer) accept() {
	for {
		c, err := d.l.Accept()
		if err != nil {
			return // closed: the listener only fails when the client closes
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

// serve handles one reader: hello, then Subscribe requests until one is at
// the writer's position; then the connection belongs to the sink, and this
// goroutine only watches for the reader going away.
func (d *directServer) serve(nc net.Conn) {
	defer nc.Close()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &conn{c: nc, r: wire.NewReader(nc, d.max+1024)}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := c.r.Next()
	if err != nil || f.Type != proto.THello {
		return
	}
	nc.SetDeadline(time.Time{})
	if c.sendReq(proto.TOK, f.Req, nil) != nil {
		return
	}
	for {
		f, err := c.r.Next()
		if err != nil {
			return
		}
		var m proto.Subscribe
		if f.Type != proto.TSubscribe {
			err = fmt.Errorf("unexpected frame type %d", f.Type)
		} else {
			err = proto.Unmarshal(f.Payload, &m)
		}
		if err != nil {
			c.sendReq(proto.TError, f.Req, &proto.Error{Code: proto.CodeProtocol, Msg: err.Error()})
			return
		}
		s, perr := d.subscribe(c, m)
		if perr != nil {
			c.sendReq(proto.TError, f.Req, perr)
			continue
		}
		s.start(f.Req)
		// The reader sends nothing more; a read returning means it left.
		c.r.Next()
		s.abort()
		s.wait()
		return
	}
}

func (d *directServer) subscribe(c *conn, m proto.Subscribe) (*sink, *proto.Error) {
	d.mu.Lock()
	w := d.writers[wkey{m.Space, m.Instance}]
	d.mu.Unlock()
	if w == nil {
		return nil, &proto.Error{Code: proto.CodeNotFound, Msg: fmt.Sprintf("no writer of instance %d here", m.Instance)}
	}
	s, err := w.subscribe(c, m.Offset, w.s.c.cfg.SinkQueue)
	if err != nil {
		return nil, err.(*proto.Error)
	}
	return s, nil
}

func (d *directServer) close() {
	d.mu.Lock()
	d.closed = true
	d.l.Close()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// sink streams a writer's bytes to one direct reader from its own
// goroutine, so the writer never waits for the reader. Its queue is bounded
// in bytes; a reader that lets it fill is dropped and continues from the
// cache.
type sink struct {
	c     *conn
	space string
	inst  uint64
	limit int

	mu     sync.Mutex
	cond   *sync.Cond
	q      []sinkItem
	queued int
	end    *proto.EOF // set by finish: send it after the queue, then stop
	dead   bool
	req    uint32
	done   chan struct{}
}

type sinkItem struct {
	off  int64
	data []byte
}

func newSink(c *conn, space string, inst uint64, limit int) *sink {
	s := &sink{c: c, space: space, inst: inst, limit: limit, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// start replies to the subscription and starts the sending goroutine.
func (s *sink) start(req uint32) {
	s.req = req
	go s.run()
}

// push queues data at off; false means the sink is gone (dropped or dead).
func (s *sink) push(off int64, data []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	if s.queued+len(data) > s.limit {
		s.dead = true
		s.c.close() // slow receiver: it resumes from the cache
		s.cond.Signal()
		return false
	}
	s.q = append(s.q, sinkItem{off, data})
	s.queued += len(data)
	s.cond.Signal()
	return true
}

// finish ends the stream after the queued bytes: with an EOF frame when the
// channel was sealed, by closing the connection otherwise.
func (s *sink) finish(length int64, sealed bool) {
	s.mu.Lock()
	if sealed {
		s.end = &proto.EOF{Length: length, Sealed: true}
	} else {
		s.dead = true
		s.c.close()
	}
	s.cond.Signal()
	s.mu.Unlock()
}

func (s *sink) abort() {
	s.mu.Lock()
	s.dead = true
	s.cond.Signal()
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
	if s.c.sendReq(proto.TOK, s.req, nil) != nil {
		s.abort()
		return
	}
	var hdr []byte
	for {
		s.mu.Lock()
		for len(s.q) == 0 && s.end == nil && !s.dead {
			s.cond.Wait()
		}
		if s.dead {
			s.mu.Unlock()
			return
		}
		items := s.q
		s.q = nil
		s.queued = 0
		end := s.end
		s.mu.Unlock()
		bufs := make(net.Buffers, 0, 2*len(items))
		for _, it := range items {
			start := len(hdr)
			hdr = proto.AppendDataHeader(hdr, proto.TData, s.req, s.space, s.inst, it.off, len(it.data))
			bufs = append(bufs, hdr[start:len(hdr):len(hdr)], it.data)
		}
		if len(items) == 0 && end != nil {
			s.c.sendReq(proto.TEOF, s.req, end)
			s.c.close()
			return
		}
		s.c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		s.c.wmu.Lock()
		_, err := bufs.WriteTo(s.c.c)
		s.c.wmu.Unlock()
		hdr = hdr[:0]
		if err != nil {
			s.abort()
			return
		}
	}
}
