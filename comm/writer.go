package comm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/wire"
)

// Writer writes one channel instance. Its bytes go to the space's cache
// and, while readers are attached on the direct path, straight to them as
// well. Write and Close must be called from one goroutine at a time;
// Offset and Info may be called concurrently with them.
type Writer struct {
	s    *Space
	c    *conn
	info Info

	mu     sync.Mutex // guards off, sinks, err, closed against subscribers and the reply reader
	off    int64
	sinks  []*sink
	err    error // first asynchronous failure reported by the server
	closed bool

	closeReq uint32
	replies  chan wire.Frame // frames answering requests (Close) from the reply reader
	done     chan struct{}   // closed when the reply reader exits
	hdr      []byte
}

func newWriter(ctx context.Context, s *Space, name string, o createOpts) (*Writer, error) {
	c, err := dialConn(ctx, s.c.cfg.Dialer, s.addr, s.c.cfg.MaxPayload)
	if err != nil {
		return nil, fmt.Errorf("comm: create %q: %w", name, err)
	}
	direct := ""
	if s.c.direct != nil {
		direct = s.c.direct.addr()
	}
	info, err := c.callInfo(ctx, proto.TCreate, &proto.Create{Space: s.name, Name: name, Elem: uint8(o.elem),
		Key: o.key, DirectAddr: direct, Attrs: o.attrs})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("comm: create %q: %w", name, err)
	}
	w := &Writer{s: s, c: c, info: infoFrom(info), off: o.offset,
		replies: make(chan wire.Frame, 1), done: make(chan struct{})}
	if s.c.direct != nil {
		s.c.direct.register(s.name, info.Instance, w)
	}
	go w.readReplies()
	return w, nil
}

// Info describes the instance as it was when created (or resumed).
func (w *Writer) Info() Info { return w.info }

// Offset is the offset of the next byte to be written.
func (w *Writer) Offset() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.off
}

// readReplies reads the connection's incoming frames: errors from failed
// writes (remembered and reported by the next Write or Close) and the
// reply to Close.
func (w *Writer) readReplies() {
	defer close(w.done)
	for {
		f, err := w.c.r.Next()
		if err != nil {
			w.fail(fmt.Errorf("comm: connection to cache lost: %w", err))
			return
		}
		if f.Type == proto.TError && f.Req == 0 {
			w.fail(decodeError(f))
			continue
		}
		f.Payload = append([]byte(nil), f.Payload...)
		select {
		case w.replies <- f:
		default: // nobody asked
		}
	}
}

func (w *Writer) fail(err error) {
	w.mu.Lock()
	if w.err == nil && !w.closed {
		w.err = err
	}
	w.mu.Unlock()
}

// Write appends p to the channel. It returns once p is handed to the
// connection to the cache; it never waits for a reader (a direct reader
// that falls behind is moved to the cache path). p may be reused after
// Write returns. Errors: ErrClosed after Close, ErrDiverged when replayed
// bytes differ from the stored ones, connection failures.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.err != nil {
		return 0, w.err
	}
	chunk := w.s.c.cfg.ChunkSize
	n := 0
	for n < len(p) {
		b := p[n:min(len(p), n+chunk)]
		w.hdr = proto.AppendDataHeader(w.hdr[:0], proto.TWrite, 0, w.s.name, w.info.Instance, w.off, len(b))
		bufs := net.Buffers{w.hdr, b}
		w.c.wmu.Lock()
		_, err := bufs.WriteTo(w.c.c)
		w.c.wmu.Unlock()
		if err != nil {
			w.err = fmt.Errorf("comm: write: %w", err)
			return n, w.err
		}
		if len(w.sinks) > 0 {
			w.feedSinks(b)
		}
		w.off += int64(len(b))
		n += len(b)
	}
	return n, nil
}

// feedSinks queues a copy of b for every direct reader; readers that fall
// too far behind are dropped (they continue from the cache).
func (w *Writer) feedSinks(b []byte) {
	cp := append([]byte(nil), b...)
	live := w.sinks[:0]
	for _, s := range w.sinks {
		if s.push(w.off, cp) {
			live = append(live, s)
		}
	}
	clear(w.sinks[len(live):])
	w.sinks = live
}

// subscribe adds a direct reader positioned at off, which must be the
// writer's current offset.
func (w *Writer) subscribe(c *conn, off int64, queue int) (*sink, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.err != nil {
		return nil, &proto.Error{Code: proto.CodeNotFound, Msg: "writer closed"}
	}
	if off != w.off {
		return nil, &proto.Error{Code: proto.CodeOutOfWindow, Msg: fmt.Sprintf("writer at %d, asked %d", w.off, off)}
	}
	s := newSink(c, w.s.name, w.info.Instance, queue)
	w.sinks = append(w.sinks, s)
	return s, nil
}

// Close seals the channel: it returns once the whole payload is held by the
// cache, then ends the direct readers' streams. Calling Close again returns
// nil. Errors: an earlier write failure, ctx.Err(), connection failures.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	err := w.err
	length := w.off
	w.mu.Unlock()
	if err == nil {
		err = w.seal(ctx, length)
	}
	w.mu.Lock()
	w.closed = true
	sinks := w.sinks
	w.sinks = nil
	w.mu.Unlock()
	for _, s := range sinks {
		s.finish(length, err == nil)
	}
	w.release()
	return err
}

func (w *Writer) seal(ctx context.Context, length int64) error {
	req, err := w.c.send(proto.TClose, &proto.Close{Space: w.s.name, Instance: w.info.Instance, Length: length})
	if err != nil {
		return fmt.Errorf("comm: close %q: %w", w.info.Name, err)
	}
	for {
		select {
		case f := <-w.replies:
			if f.Req != req {
				continue
			}
			if f.Type == proto.TError {
				return fmt.Errorf("comm: close %q: %w", w.info.Name, decodeError(f))
			}
			// The server answers in order: a failed write is reported
			// before the reply to the Close that follows it.
			w.mu.Lock()
			err := w.err
			w.mu.Unlock()
			if err != nil {
				return fmt.Errorf("comm: close %q: %w", w.info.Name, err)
			}
			return nil
		case <-w.done:
			w.mu.Lock()
			err := w.err
			w.mu.Unlock()
			return fmt.Errorf("comm: close %q: %w", w.info.Name, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Detach leaves the channel without sealing it, as a crashed writer would:
// the bytes written so far stay in the cache, readers wait for more, and a
// writer created later with the same key resumes the instance.
func (w *Writer) Detach() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	sinks := w.sinks
	w.sinks = nil
	w.mu.Unlock()
	for _, s := range sinks {
		s.abort()
	}
	w.release()
	return nil
}

func (w *Writer) release() {
	if d := w.s.c.direct; d != nil {
		d.unregister(w.s.name, w.info.Instance, w)
	}
	w.c.close()
	<-w.done
}

// Err reports the first asynchronous failure, if any.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(w.err, ErrClosed) {
		return nil
	}
	return w.err
}
