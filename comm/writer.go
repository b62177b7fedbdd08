package comm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/wire"
)

// Writer writes one channel instance. Its bytes go to the space's cache
// and, while readers are attached on the direct path, straight to them as
// well. Write and Close must be called from one goroutine at a time;
// Offset and Info may be called concurrently with them.
//
// Write hands the bytes to direct readers first, from the calling goroutine
// when that cannot block (see [sink]), and queues them for the cache, which
// a goroutine of the writer feeds (see [cacheSender]); Close waits until the
// cache holds everything.
type Writer struct {
	s    *Space
	c    *conn
	info Info
	cs   *cacheSender

	mu     sync.Mutex // guards off, sinks, err, closed against subscribers and the reply reader
	off    int64
	sinks  []*sink
	err    error // first asynchronous failure reported by the server
	closed bool

	replies chan wire.Frame // frames answering requests (Close, Flush) from the reply reader
	done    chan struct{}   // closed when the reply reader exits
	// sealReq is the request id of Close's request; the reply reader stops
	// at its answer, setting idle: nothing more comes on the connection,
	// which then goes back to the client's pool.
	sealReq atomic.Uint32
	idle    atomic.Bool
}

func newWriter(ctx context.Context, s *Space, name string, o createOpts) (*Writer, error) {
	c, err := s.c.connect(ctx, s.addr, true)
	if err != nil {
		return nil, fmt.Errorf("comm: create %q: %w", name, err)
	}
	direct := ""
	if s.c.direct != nil {
		direct = s.c.direct.addr()
		s.c.direct.beginCreate()
	}
	c.askArena()
	info, err := c.callInfo(ctx, proto.TCreate, &proto.Create{Space: s.name, Name: name, Elem: uint8(o.elem),
		Key: o.key, DirectAddr: direct, Attrs: o.attrs})
	if err != nil {
		if s.c.direct != nil {
			s.c.direct.endCreate()
		}
		c.close()
		return nil, fmt.Errorf("comm: create %q: %w", name, err)
	}
	w := &Writer{s: s, c: c, info: infoFrom(info), off: o.offset,
		replies: make(chan wire.Frame, 1), done: make(chan struct{})}
	w.cs = newCacheSender(c, s, info.Instance, o.offset, w.fail)
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
// replies to Flush and Close; it ends after Close's answer.
func (w *Writer) readReplies() {
	defer close(w.done)
	for {
		f, err := w.c.next()
		if err != nil {
			w.fail(fmt.Errorf("comm: connection to cache lost: %w", err))
			return
		}
		if f.Type == proto.TError && f.Req == 0 {
			w.fail(decodeError(f))
			continue
		}
		f.Payload = append([]byte(nil), f.Payload...)
		// Close's answer is the last frame: say so before Close sees it.
		last := f.Type == proto.TInfo && f.Req != 0 && f.Req == w.sealReq.Load()
		if last {
			w.idle.Store(true)
		}
		select {
		case w.replies <- f:
		default: // nobody asked
		}
		if last {
			return
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
// direct readers' connections (or their queues) and queued for the cache;
// it never waits for a reader (a direct reader that falls behind is moved
// to the cache path), and waits for the cache only while the writer's
// cache queue (Config.CacheQueue bytes) is full. p may be reused after
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
	if len(p) == 0 {
		return 0, nil
	}
	// Readers first: the copy into the cache queue then overlaps with
	// their reading.
	if len(w.sinks) > 0 {
		w.feedSinks(p)
	}
	if err := w.cs.write(w.off, p); err != nil {
		w.err = fmt.Errorf("comm: write: %w", err)
		return 0, w.err
	}
	w.off += int64(len(p))
	return len(p), nil
}

// feedSinks hands p, at w.off, to every direct reader; readers that fell
// too far behind are dropped (they continue from the cache).
func (w *Writer) feedSinks(p []byte) {
	live := w.sinks[:0]
	for _, s := range w.sinks {
		if s.offer(w.off, p) {
			live = append(live, s)
		}
	}
	clear(w.sinks[len(live):])
	w.sinks = live
	if len(live) == 0 {
		w.cs.setLazy(false)
	}
}

// subscribe adds a direct reader positioned at off, which must be the
// writer's current offset or lie within the bytes the writer still holds
// (then the reader gets those first).
func (w *Writer) subscribe(c *conn, req uint32, off int64, window int) (*sink, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.err != nil {
		return nil, &proto.Error{Code: proto.CodeNotFound, Msg: "writer closed"}
	}
	var backlog []byte
	if off != w.off {
		b, ok := w.cs.since(off, w.off)
		if !ok {
			return nil, &proto.Error{Code: proto.CodeOutOfWindow, Msg: fmt.Sprintf("writer at %d, asked %d", w.off, off), At: w.off}
		}
		backlog = b
	}
	cfg := w.s.c.cfg
	s := newSink(c, req, w.s.name, w.info.Instance, cfg.SinkQueue, window, cfg.ChunkSize, &w.s.c.blocks, off)
	s.start(backlog)
	w.sinks = append(w.sinks, s)
	w.cs.setLazy(true)
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

// seal sends the queued bytes and the Close request behind them in one
// write from this goroutine (no hand-off to the sending goroutine), then
// waits for the answer, which comes once the cache holds everything.
func (w *Writer) seal(ctx context.Context, length int64) error {
	req := w.c.nextReq()
	w.sealReq.Store(req)
	frame := proto.AppendMsg(nil, proto.TClose, req, &proto.Close{Space: w.s.name, Instance: w.info.Instance, Length: length})
	err := w.cs.flushWith(ctx, frame)
	if err == nil {
		err = w.await(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("comm: close %q: %w", w.info.Name, err)
	}
	return nil
}

// Flush returns once every byte written so far is held by the cache, so a
// crash of this process after Flush loses none of them (a checkpoint that
// records the writer's offset calls it). Like Write, it must not be called
// concurrently with Write or Close. Errors: an earlier write failure,
// ErrClosed, ctx.Err(), connection failures.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	closed, err := w.closed, w.err
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err != nil {
		return err
	}
	// The server handles a connection's frames in order: its answer to
	// this request, sent behind the queued bytes, comes after every write
	// before it was appended.
	req := w.c.nextReq()
	frame := proto.AppendMsg(nil, proto.TStat, req, &proto.Stat{Space: w.s.name, Name: w.info.Name})
	err = w.cs.flushWith(ctx, frame)
	if err == nil {
		err = w.await(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("comm: flush %q: %w", w.info.Name, err)
	}
	return nil
}

// await waits for the answer to request req. A failed write reported
// before the answer is returned instead.
func (w *Writer) await(ctx context.Context, req uint32) error {
	for {
		select {
		case f := <-w.replies:
			if f.Req != req {
				continue
			}
			if f.Type == proto.TError {
				return decodeError(f)
			}
			w.mu.Lock()
			err := w.err
			w.mu.Unlock()
			return err
		case <-w.done:
			w.mu.Lock()
			err := w.err
			w.mu.Unlock()
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// detachFlush bounds how long Detach waits for queued bytes to reach the
// cache connection.
const detachFlush = 10 * time.Second

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
	ctx, cancel := context.WithTimeout(context.Background(), detachFlush)
	w.cs.flushWith(ctx, nil)
	cancel()
	w.release()
	return nil
}

// release ends the writer's goroutines and its hold on the connection:
// back to the client's pool once Close was answered (the reply reader has
// stopped, and nothing else is in flight), closed otherwise.
func (w *Writer) release() {
	if d := w.s.c.direct; d != nil {
		d.unregister(w.s.name, w.info.Instance, w)
	}
	if w.idle.Load() {
		w.cs.stop()
		<-w.done
		w.s.c.putIdle(w.s.addr, w.c)
		return
	}
	w.c.close() // first: it unblocks a cache write stuck on a dead server
	w.cs.stop()
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

// writerHistory is how many bytes already sent to the cache a writer keeps,
// so that a reader subscribing to the direct path a little behind the
// writer (it attached after the first writes) is served at once.
const writerHistory = 1 << 20

// minBlock is the capacity of a writer's first block; later ones double up
// to the chunk size, so that a channel carrying little costs little.
const minBlock = 16 << 10

// cacheWriteDeadline bounds one write to the cache connection.
const cacheWriteDeadline = 30 * time.Second

// cacheSender feeds a writer's bytes to its cache connection from its own
// goroutine, so that Write waits neither for the connection nor for the
// server. Bytes wait in blocks: first the queued ones, not yet written to
// the connection (push waits while more than limit bytes are queued), and
// before them up to writerHistory bytes already written, kept for readers
// subscribing slightly behind the writer ([cacheSender.since]). On one
// host a large write's block may hold a reference to the bytes in the
// connection's ring, or in a slot of the server's arena, instead (see
// queueShared).
type cacheSender struct {
	c     *conn
	space string
	inst  uint64
	chunk int        // largest frame
	limit int        // queued bytes before push waits
	pool  *sync.Pool // chunk-sized buffers
	small *sync.Pool // minBlock-sized buffers
	fail  func(error)

	mu      sync.Mutex
	puts    []piece       // queueShared's, reused
	cond    *sync.Cond    // broadcast whenever sent, end, stopped, err, writing or due change
	blocks  []*block      // in offset order; only the last one is still filled
	sent    int64         // bytes below sent are written to the connection
	taken   int64         // bytes below taken are written, or being written
	end     int64         // offset after the last queued byte
	lazy    bool          // direct readers hold the bytes: batch small writes (see lazyBytes)
	delay   time.Duration // lazyDelay; tests lengthen it
	writing bool          // run or flushWith is writing to the connection
	due     bool          // the batching delay has passed
	armed   bool          // the timer is set to end the delay
	timer   *time.Timer
	stopped bool
	err     error
	done    chan struct{}
}

// While the writer has direct readers, which get every byte at once, the
// cache gets small writes in batches: the sender waits until lazyBytes are
// queued or lazyDelay has passed since the first of them (Close and Flush
// write what is left themselves), sparing a write and a server wake-up per
// message. With 64 KiB batches a 1 KiB ping-pong's round trip was 50-126
// µs, with 1 MiB ones 26-36. A reader attaching meanwhile is served from
// the writer's memory (since); one that follows the cache sees the bytes
// up to lazyDelay later.
const (
	lazyBytes = 1 << 20
	lazyDelay = time.Millisecond
)

// ownWriteMin is the smallest write that the cache may get straight from
// Write's buffer (see cacheSender.write) rather than through the queue.
const ownWriteMin = 64 << 10

// block holds a run of a writer's bytes starting at off. Its buffer has a
// fixed capacity and is only appended to, so the sending goroutine may
// write out its first bytes while Write appends more. A block whose
// bytes were put in the connection's ring or the server's arena
// (queueShared) has no buffer: ring is their piece, sent whole.
type block struct {
	off    int64
	buf    []byte
	pooled bool
	ring   piece
}

// end is the offset after the block's bytes.
func (b *block) end() int64 {
	if b.ring.put {
		return b.off + int64(b.ring.n)
	}
	return b.off + int64(len(b.buf))
}

func newCacheSender(c *conn, s *Space, inst uint64, off int64, fail func(error)) *cacheSender {
	cfg := s.c.cfg
	cs := &cacheSender{c: c, space: s.name, inst: inst, chunk: cfg.ChunkSize, limit: cfg.CacheQueue,
		pool: &s.c.blocks, small: &s.c.small, fail: fail, sent: off, end: off, delay: lazyDelay, done: make(chan struct{})}
	cs.cond = sync.NewCond(&cs.mu)
	go cs.run()
	return cs
}

// push queues a copy of p, which lies at off (the end of what is queued).
// It waits while the queue is full. Errors: the sending goroutine's write
// failure, ErrClosed after stop.
func (cs *cacheSender) push(off int64, p []byte) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if off != cs.end {
		panic(fmt.Sprintf("comm: cache queue at %d, push at %d", cs.end, off))
	}
	for len(p) > 0 {
		part := p[:min(len(p), cs.chunk)]
		for cs.err == nil && !cs.stopped && cs.end > cs.sent && int(cs.end-cs.sent)+len(part) > cs.limit {
			cs.cond.Wait()
		}
		if cs.err != nil {
			return cs.err
		}
		if cs.stopped {
			return ErrClosed
		}
		cs.append(part)
		p = p[len(part):]
		cs.signal()
	}
	return nil
}

// signal tells the sending goroutine about new bytes, when it has to act:
// a lazy sender is woken only by its timer, or when the batch is large
// enough. While lazy, any bytes queued while the timer is not armed arm
// it, also those queued while an earlier batch is being written: after
// that write nothing else would send them until the next large batch,
// Flush or Close. cs.mu must be held.
func (cs *cacheSender) signal() {
	if !cs.lazy || cs.end-cs.sent >= lazyBytes {
		cs.cond.Broadcast()
	}
	if cs.lazy && !cs.armed {
		cs.armed, cs.due = true, false
		if cs.timer == nil {
			cs.timer = time.AfterFunc(cs.delay, cs.wake)
		} else {
			cs.timer.Reset(cs.delay)
		}
	}
}

// write hands p, at off, to the cache: itself, from the caller's
// goroutine and without a copy, when p is large (ownWriteMin, or a whole
// batch, lazyBytes, while the sender batches), the sending goroutine is
// not writing, and the history no longer needs the bytes (the stream is
// past its first writerHistory bytes); otherwise by queueShared or, when
// that declines, push. Bytes
// still queued (a message's header, written just before) go first in the
// same write. The write then happens while the direct readers read what
// Write gave them just before.
func (cs *cacheSender) write(off int64, p []byte) error {
	cs.mu.Lock()
	if len(p) < ownWriteMin || cs.lazy && len(p) < lazyBytes || cs.end < writerHistory || cs.writing || cs.err != nil || cs.stopped {
		queued := cs.queueShared(off, p)
		cs.mu.Unlock()
		if queued {
			return nil
		}
		return cs.push(off, p)
	}
	if off != cs.end {
		panic(fmt.Sprintf("comm: cache queue at %d, write at %d", cs.end, off))
	}
	defer cs.mu.Unlock()
	// While it writes, the sending goroutine waits, and only Write, on
	// this goroutine, queues.
	if err := cs.writeBusy(appendPieces(cs.pieces(nil), off, p, cs.chunk), nil); err != nil {
		return err
	}
	cs.end += int64(len(p))
	cs.sent = cs.end
	for _, b := range cs.blocks { // the history must be contiguous: drop it
		cs.recycle(b)
	}
	cs.blocks = cs.blocks[:0]
	cs.cond.Broadcast()
	return nil
}

// queueShared queues p, at off, as references to the connection's ring
// or to slots of the server's arena, copying it there now (conn.putNow)
// rather than into blocks, out of which writing it would copy it there
// again. It does so, and
// returns true, when the bytes are past the history's first
// writerHistory (those stay in blocks for readers subscribing late:
// the ring keeps bytes only until the server has read them), none of the
// unsent bytes in blocks would go through the ring when written (the
// server takes references in the order they were put, and writing them
// would put them after p), the queue has room, and the ring takes p
// whole. Such bytes that a write in progress has taken are waited for:
// they are in the ring once it is done, and waiting breaks a cascade
// where every write finds the previous one queued in a block. cs.mu must
// be held.
func (cs *cacheSender) queueShared(off int64, p []byte) bool {
	for {
		if len(p) < shm.MinPayload || cs.end < writerHistory || cs.err != nil || cs.stopped ||
			int(cs.end-cs.sent)+len(p) > cs.limit || cs.queuedForRing(max(cs.sent, cs.taken)) {
			return false
		}
		if !cs.writing || !cs.queuedForRing(cs.sent) {
			break
		}
		cs.cond.Wait()
	}
	if off != cs.end {
		panic(fmt.Sprintf("comm: cache queue at %d, write at %d", cs.end, off))
	}
	puts, ok := cs.c.putNow(cs.puts[:0], off, p, cs.chunk, cs.space, cs.inst)
	if !ok {
		return false
	}
	for _, pc := range puts {
		cs.blocks = append(cs.blocks, &block{off: pc.off, ring: pc})
	}
	cs.puts = puts[:0]
	cs.end += int64(len(p))
	cs.signal()
	return true
}

// queuedForRing reports whether queued bytes from offset from on would go
// through the ring when written: a run of shm.MinPayload or more in a
// block. cs.mu must be held.
func (cs *cacheSender) queuedForRing(from int64) bool {
	for i := len(cs.blocks) - 1; i >= 0; i-- {
		b := cs.blocks[i]
		if b.end() <= from {
			break
		}
		if !b.ring.put && b.end()-max(from, b.off) >= shm.MinPayload {
			return true
		}
	}
	return false
}

// append copies p into the blocks. cs.mu must be held.
func (cs *cacheSender) append(p []byte) {
	for len(p) > 0 {
		var b *block
		if n := len(cs.blocks); n > 0 && len(cs.blocks[n-1].buf) < cap(cs.blocks[n-1].buf) {
			b = cs.blocks[n-1]
		} else {
			b = cs.newBlock(len(p))
			cs.blocks = append(cs.blocks, b)
		}
		l := len(b.buf)
		c := copy(b.buf[l:cap(b.buf)], p)
		b.buf = b.buf[:l+c]
		p = p[c:]
		cs.end += int64(c)
	}
}

// newBlock returns an empty block at cs.end, for at least need bytes or a
// full chunk: twice the last block's size, from minBlock up. Blocks of
// those two sizes are pooled: after each block of ring references
// (queueShared), a message's small header starts a block of its own.
func (cs *cacheSender) newBlock(need int) *block {
	size := min(cs.chunk, max(minBlock, need))
	if n := len(cs.blocks); n > 0 {
		size = min(cs.chunk, max(size, 2*cap(cs.blocks[n-1].buf)))
	}
	b := &block{off: cs.end}
	pool := cs.poolOf(size)
	if pool != nil {
		if pb, ok := pool.Get().(*[]byte); ok && cap(*pb) == size {
			b.buf, b.pooled = (*pb)[:0], true
			return b
		}
		b.pooled = true
	}
	b.buf = make([]byte, 0, size)
	return b
}

// poolOf returns the pool of buffers of size bytes, nil for none.
func (cs *cacheSender) poolOf(size int) *sync.Pool {
	switch size {
	case cs.chunk:
		return cs.pool
	case minBlock:
		return cs.small
	}
	return nil
}

// run writes the queued bytes to the connection, every batch in one
// vectored write, until stop.
func (cs *cacheSender) run() {
	defer close(cs.done)
	var pieces []piece
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for {
		for !cs.stopped && (cs.writing || !cs.ready()) {
			cs.cond.Wait()
		}
		if cs.stopped {
			return
		}
		cs.due = false
		pieces = cs.pieces(pieces[:0])
		if cs.sendLocked(pieces, nil, cs.end) != nil {
			return
		}
	}
}

// sendLocked writes pieces, the queued bytes up to target, and extra
// after them, with the connection marked busy (writing), then records the
// outcome: the bytes sent, or the sticky error. cs.mu must be held; it is
// released during the write.
func (cs *cacheSender) sendLocked(pieces []piece, extra []byte, target int64) error {
	cs.taken = target
	if err := cs.writeBusy(pieces, extra); err != nil {
		return err
	}
	cs.sent = target
	cs.trim()
	cs.cond.Broadcast()
	return nil
}

// writeBusy writes pieces, then extra, with the connection marked busy
// (writing) and cs.mu released meanwhile; a failure is recorded (sticky)
// and returned. cs.mu must be held.
func (cs *cacheSender) writeBusy(pieces []piece, extra []byte) error {
	cs.writing = true
	cs.mu.Unlock()
	err := cs.writeFrames(pieces, extra)
	cs.mu.Lock()
	cs.writing = false
	if err != nil {
		return cs.failed(err)
	}
	return nil
}

// writeFrames writes the pieces as write frames, then extra, to the cache
// connection under the write deadline.
func (cs *cacheSender) writeFrames(pieces []piece, extra []byte) error {
	return cs.c.writeData(proto.TWrite, 0, cs.space, cs.inst, pieces, extra, time.Now().Add(cacheWriteDeadline))
}

// failed records a failed write to the cache (sticky, and reported to the
// writer) and returns it. cs.mu must be held.
func (cs *cacheSender) failed(err error) error {
	cs.err = fmt.Errorf("comm: write to cache: %w", err)
	// The writer records it under its own lock, which a Write waiting
	// for this queue holds: from another goroutine, so that the
	// broadcast below wakes that Write (which returns cs.err itself).
	go cs.fail(cs.err)
	cs.cond.Broadcast()
	return cs.err
}

// flushWith writes every queued byte, then extra (a request frame that
// must follow them, or nil), in one vectored write from the caller's
// goroutine, once the sending goroutine is not writing. Errors: the
// sending goroutine's write failure, ErrClosed after stop, ctx.Err(), the
// write's own failure.
func (cs *cacheSender) flushWith(ctx context.Context, extra []byte) error {
	stop := context.AfterFunc(ctx, func() {
		cs.mu.Lock()
		cs.cond.Broadcast()
		cs.mu.Unlock()
	})
	defer stop()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for cs.writing && cs.err == nil && !cs.stopped && ctx.Err() == nil {
		cs.cond.Wait()
	}
	switch {
	case cs.err != nil:
		return cs.err
	case cs.stopped:
		return ErrClosed
	case ctx.Err() != nil:
		return ctx.Err()
	}
	pieces := cs.pieces(nil)
	if len(pieces) == 0 && len(extra) == 0 {
		return nil
	}
	return cs.sendLocked(pieces, extra, cs.end)
}

// ready reports whether there are bytes to send now: a lazy sender waits
// for its timer or a large enough batch (Close and Flush write the rest
// themselves, see flushWith). cs.mu must be held.
func (cs *cacheSender) ready() bool {
	n := cs.end - cs.sent
	return n > 0 && (!cs.lazy || cs.due || n >= lazyBytes)
}

func (cs *cacheSender) wake() {
	cs.mu.Lock()
	cs.armed, cs.due = false, true
	cs.cond.Broadcast()
	cs.mu.Unlock()
}

// setLazy says whether the writer has direct readers.
func (cs *cacheSender) setLazy(lazy bool) {
	cs.mu.Lock()
	if cs.lazy != lazy {
		cs.lazy = lazy
		cs.cond.Broadcast() // a sender no longer lazy has bytes to send now
	}
	cs.mu.Unlock()
}

// pieces appends the bytes [cs.sent, cs.end) to ps, at most one chunk per
// piece. cs.mu must be held.
func (cs *cacheSender) pieces(ps []piece) []piece {
	off := cs.sent
	for _, b := range cs.blocks {
		end := b.end()
		if end <= off {
			continue
		}
		if b.ring.put { // written whole: cs.sent is always a block's end
			ps = append(ps, b.ring)
		} else {
			ps = appendPieces(ps, off, b.buf[off-b.off:], cs.chunk)
		}
		off = end
	}
	return ps
}

// trim recycles the blocks that lie wholly below the history kept behind
// cs.sent; the last block stays, being the one filled. cs.mu must be held.
func (cs *cacheSender) trim() {
	keep := cs.sent - writerHistory
	n := 0
	for n < len(cs.blocks)-1 {
		b := cs.blocks[n]
		if b.end() > keep {
			break
		}
		cs.recycle(b)
		n++
	}
	if n > 0 {
		rest := copy(cs.blocks, cs.blocks[n:])
		clear(cs.blocks[rest:])
		cs.blocks = cs.blocks[:rest]
	}
}

func (cs *cacheSender) recycle(b *block) {
	if b.pooled {
		buf := b.buf[:0]
		cs.poolOf(cap(buf)).Put(&buf)
	}
	b.buf = nil
}

// since returns a copy of the bytes [from, to) if the sender still holds
// them all: in blocks, or in the ring while the server has not read
// them (never in the server's arena, see conn.appendHeld).
func (cs *cacheSender) since(from, to int64) ([]byte, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if from > to || to > cs.end || len(cs.blocks) == 0 || from < cs.blocks[0].off {
		return nil, false
	}
	out := make([]byte, 0, to-from)
	for _, b := range cs.blocks {
		end := b.end()
		if end <= from || b.off >= to {
			continue
		}
		lo, hi := max(from, b.off)-b.off, min(to, end)-b.off
		if !b.ring.put {
			out = append(out, b.buf[lo:hi]...)
			continue
		}
		var ok bool
		if out, ok = cs.c.appendHeld(out, b.ring, int(lo), int(hi)); !ok {
			return nil, false
		}
	}
	return out, true
}

// stop ends the sending goroutine, dropping what is still queued, waits for
// it and recycles the blocks. The connection must be closed first if a
// write may be stuck on it.
func (cs *cacheSender) stop() {
	cs.mu.Lock()
	cs.stopped = true
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.cond.Broadcast()
	cs.mu.Unlock()
	<-cs.done
	cs.mu.Lock()
	for _, b := range cs.blocks {
		cs.recycle(b)
	}
	cs.blocks = nil
	cs.mu.Unlock()
}
