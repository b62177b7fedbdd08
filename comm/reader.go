package comm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/wire"
)

// source says where a reader's bytes currently come from.
type source uint8

const (
	srcNone        source = iota
	srcCatchUp            // a cache stream up to the current length (or the writer's offset), then try the direct path
	srcDirect             // straight from the writer
	srcCacheFollow        // a cache stream that follows the writer to the end
	srcBulk               // a cache stream that follows a writer of bulk data, left once its frames turn small
)

// A reader whose catch-up round read bulkRound bytes or more follows the
// cache (srcBulk) instead of trying the writer: a writer streaming bulk
// data is busy, and a subscription waited for it 1.5-3 ms (its process's
// goroutines waking on two busy cores, its lock held by Write after
// Write), several times per burst, while the cache already held the
// bytes; on one host the cache path also copies each byte of a large
// write twice where the direct path copies it three times. The reader
// leaves that stream for the direct path once smallRun frames in a row
// carried less than smallFrame bytes each: the writer then sends small
// messages, for which the direct path's fewer hops matter.
const (
	bulkRound  = 4 << 20
	smallFrame = 64 << 10
	smallRun   = 8
)

// maxSubscribeTries bounds the catch-up/subscribe rounds before a reader
// settles on following the cache (the writer kept moving ahead).
const maxSubscribeTries = 8

// Reader reads one channel instance from an offset. It is an io.Reader.
// Reading never deletes: other readers of the instance get every byte too.
// A Reader must be used by one goroutine at a time.
//
// A reader attached while the writer writes receives the bytes directly
// from the writer; if that link fails, or the reader falls behind, it
// continues from the cache at its offset, so no byte is lost or repeated.
type Reader struct {
	s    *Space
	info Info
	off  int64

	writerActive bool
	directAddr   string

	cc      *conn // cache connection (attach, then streams); nil after a break
	dc      *conn // direct connection, when src == srcDirect
	src     source
	req     uint32 // request id of the current stream
	tries   int
	triedAt int64 // r.off when the writer was last tried
	until   int64 // the writer's offset when it last refused a subscription

	acked    int64 // on the direct path: the offset last acknowledged to the writer
	ackEvery int64 // acknowledge once this many more bytes are read

	round int64 // bytes read in the current catch-up round
	bulk  bool  // the last catch-up round read bulkRound bytes or more: follow the cache (srcBulk)
	small int   // small frames in a row on srcBulk

	watch watcher // cuts blocked reads when their context ends

	pending []byte // rest of the current data frame, when read whole
	// ringConn is the connection whose shared ring pending lies in, to
	// release once pending is read; nil when pending is not in a ring.
	ringConn *conn
	ringRead int64 // bytes read from shared rings (for tests)
	ringDir  int64 // of which on the direct path
	left     int   // bytes of the current data frame still on the connection
	eof      bool
	closed   bool
}

func newReader(ctx context.Context, s *Space, name string, anyInst bool, o attachOpts) (*Reader, error) {
	c, err := s.c.connect(ctx, s.addr, false)
	if err != nil {
		return nil, fmt.Errorf("comm: attach %q: %w", name, err)
	}
	info, err := c.callInfo(ctx, proto.TAttach, &proto.Attach{Space: s.name, Name: name, Elem: uint8(o.elem),
		Any: anyInst, Wait: !o.noWait, Instance: o.instance})
	if err != nil {
		c.close()
		return nil, fmt.Errorf("comm: attach %q: %w", name, err)
	}
	r := &Reader{s: s, info: infoFrom(info), off: o.offset, cc: c,
		writerActive: info.WriterActive, directAddr: info.DirectAddr,
		ackEvery: int64(max(1, s.c.cfg.DirectWindow/4))}
	return r, nil
}

// Info describes the instance as it was at attach time.
func (r *Reader) Info() Info { return r.info }

// Trim is [Space.Trim] of this reader's instance: the caller promises
// that nobody will read its bytes in [from, to) again. Trimming what this
// reader has consumed (to <= Offset) is how a channel's only consumer
// keeps a long-lived channel from holding every byte it ever carried. It
// uses the space's control connection, not the reader's, so it may run
// concurrently with a Read.
func (r *Reader) Trim(ctx context.Context, from, to int64) (int64, error) {
	return r.s.Trim(ctx, r.info.Instance, from, to)
}

// Offset is the offset of the next byte Read returns. A restarted reader
// passes it to [AtOffset] (with [AtInstance]) to resume.
func (r *Reader) Offset() int64 { return r.off }

// Read implements io.Reader: it blocks until at least one byte is there and
// returns io.EOF after the writer's Close and the last byte.
func (r *Reader) Read(p []byte) (int, error) { return r.ReadContext(context.Background(), p) }

// ReadContext is Read bounded by ctx. Errors: io.EOF, ctx.Err(), ErrClosed,
// ErrGap (the writer's sealed length is below this reader's offset),
// ErrTrimmed (the bytes at the offset were trimmed, see Trim),
// connection failures that survive a reconnection.
func (r *Reader) ReadContext(ctx context.Context, p []byte) (int, error) {
	if r.closed {
		return 0, ErrClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	for !r.eof {
		if len(r.pending) > 0 {
			var n int
			if r.ringConn != nil { // bytes in a shared ring or lent from an arena
				n = r.ringConn.rx.Copy(p, r.pending)
			} else {
				n = copy(p, r.pending)
			}
			r.pending = r.pending[n:]
			if len(r.pending) == 0 {
				r.releaseRing()
			}
			r.delivered(n)
			return n, nil
		}
		if r.left > 0 {
			if n, err := r.stream(ctx, p); n > 0 || err != nil {
				return n, err
			}
			continue
		}
		if err := r.fill(ctx); err != nil {
			return 0, err
		}
	}
	return 0, io.EOF
}

// drainDirect reads and drops what is left of the direct stream for up to
// drainWait, and reports whether its end of stream came: a reader closed
// just before its writer (a ping-pong's channel, a halo read to its known
// size) then leaves a clean connection instead of making the next reader
// of that writer dial again.
func (r *Reader) drainDirect() bool {
	c := r.dc
	c.c.SetReadDeadline(time.Now().Add(drainWait))
	if r.left > 0 {
		if _, err := c.br.Discard(r.left); err != nil {
			return false
		}
		r.left = 0
	}
	for {
		f, err := c.next()
		if err != nil || f.Req != r.req {
			return false
		}
		switch f.Type {
		case proto.TData:
			if c.skipShared(f) != nil {
				return false
			}
		case proto.TEOF:
			c.c.SetReadDeadline(time.Time{})
			return true
		default:
			return false
		}
	}
}

// releaseRing gives the shared ring's bytes of the frame just read back to
// the peer.
func (r *Reader) releaseRing() {
	if r.ringConn != nil {
		r.ringConn.rx.Release()
		r.ringConn = nil
	}
}

// delivered accounts for n bytes handed to the caller.
func (r *Reader) delivered(n int) {
	r.off += int64(n)
	switch r.src {
	case srcDirect:
		if r.off-r.acked >= r.ackEvery {
			r.ack()
		}
	case srcCatchUp:
		r.round += int64(n)
	}
}

// sized notes the size of a data frame of the current stream: on srcBulk,
// a run of small ones ends the stream (see bulkRound).
func (r *Reader) sized(n int) {
	if r.src != srcBulk {
		return
	}
	if n < smallFrame {
		r.small++
	} else {
		r.small = 0
	}
}

// source returns the connection the current stream comes on.
func (r *Reader) source() *conn {
	if r.src == srcDirect {
		return r.dc
	}
	return r.cc
}

// watcher cuts a Reader's blocked read when the context of the read
// ends. It registers with a context once and keeps the registration
// while the caller passes the same context (the rank runtime passes one
// per channel), so that a read costs no registration; each read only
// names the connection it blocks on.
type watcher struct {
	ctx   context.Context
	stop  func() bool
	fired atomic.Bool          // ctx ended: a read in progress may have been cut
	conn  atomic.Pointer[conn] // the connection a read blocks on, if any
}

// begin arms w for a read of c bounded by ctx; false means ctx has ended
// already and the read must not start. end must follow a true begin.
func (w *watcher) begin(ctx context.Context, c *conn) bool {
	if ctx.Done() == nil {
		return true
	}
	if w.ctx != ctx {
		w.release()
		w.ctx = ctx
		w.fired.Store(false)
		w.stop = context.AfterFunc(ctx, func() {
			w.fired.Store(true)
			if c := w.conn.Load(); c != nil {
				c.c.SetReadDeadline(time.Unix(1, 0))
			}
		})
	}
	w.conn.Store(c)
	// Either the callback sees c and cuts the read, or this sees that it
	// ran (atomics are sequentially consistent).
	if w.fired.Load() {
		w.conn.Store(nil)
		return false
	}
	return true
}

// end reports whether ctx ended during the read begun on ctx, which may
// then have been cut mid-frame.
func (w *watcher) end(ctx context.Context) bool {
	if ctx.Done() == nil {
		return false
	}
	w.conn.Store(nil)
	return w.fired.Load()
}

// release drops the registration.
func (w *watcher) release() {
	if w.stop != nil {
		w.stop()
	}
	w.ctx, w.stop = nil, nil
}

// stream copies the current data frame's next bytes straight from the
// connection into p.
func (r *Reader) stream(ctx context.Context, p []byte) (int, error) {
	c := r.source()
	if !r.watch.begin(ctx, c) {
		return 0, ctx.Err()
	}
	var n int
	var err error
	if c.br.Buffered() == 0 {
		// Straight from the socket into p: the buffer is empty, so the
		// stream stays in order, and the bytes are copied once.
		n, err = c.src.Read(p[:min(len(p), r.left)])
	} else {
		n, err = c.br.Read(p[:min(len(p), r.left)])
	}
	r.left -= n
	if n > 0 {
		r.delivered(n)
	}
	if r.watch.end(ctx) {
		// The connection may be mid-frame: drop it and start again from
		// our offset on the next read.
		r.dropSource()
		if n > 0 {
			return n, nil
		}
		return 0, ctx.Err()
	}
	if err != nil && n == 0 {
		return 0, r.sourceFailed(ctx, err)
	}
	return n, nil
}

// fill gets the next frame from the current source, switching sources as
// the situation demands. A data frame of the current stream is left on the
// connection for stream to copy out.
func (r *Reader) fill(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.src == srcBulk && r.small >= smallRun {
		// The writer sends small messages now: back to the direct
		// path. The stream would follow to the end; closing its
		// connection is how it stops.
		r.cc.close()
		r.cc = nil
		r.src, r.bulk, r.small = srcNone, false, 0
	}
	if r.src == srcNone {
		if err := r.open(ctx); err != nil {
			return err
		}
	}
	c := r.source()
	if !r.watch.begin(ctx, c) {
		return ctx.Err()
	}
	off, n, ok, err := c.dataHeader(r.req, len(r.s.name)+3*binary.MaxVarintLen64)
	var f wire.Frame
	if err == nil && ok {
		err = r.dataFrame(c, off, n)
	} else if err == nil {
		f, err = c.next()
	}
	if r.watch.end(ctx) {
		// The deadline fired: the connection may be mid-frame. Drop it and
		// start again from our offset on the next read.
		r.dropSource()
		return ctx.Err()
	}
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			return err
		}
		return r.sourceFailed(ctx, err)
	}
	if ok {
		return nil
	}
	if ok, err := c.isHelloReply(f); ok {
		return err // a refused hello: the server closes the connection
	}
	if f.Req != r.req {
		return c.skipShared(f) // stale frame of an earlier stream
	}
	return r.frame(c, f)
}

// dataFrame positions the reader in a data frame of n bytes at off whose
// header is read.
func (r *Reader) dataFrame(c *conn, off int64, n int) error {
	if off > r.off || off+int64(n) < r.off {
		return fmt.Errorf("%w: data at offset %d, reader at %d", ErrProtocol, off, r.off)
	}
	skip := int(r.off - off)
	if skip > 0 {
		if _, err := c.br.Discard(skip); err != nil {
			return err
		}
	}
	r.sized(n)
	r.left = n - skip
	return nil
}

// frame handles one frame of the current stream, which came on c.
func (r *Reader) frame(c *conn, f wire.Frame) error {
	switch f.Type {
	case proto.TData:
		_, _, off, data, err := proto.DecodeData(f.Payload)
		if err != nil {
			return err
		}
		if f.Flags&proto.FlagShared != 0 {
			if data, err = c.shared(data); err != nil {
				return err
			}
			r.ringConn = c
			r.ringRead += int64(len(data))
			if r.src == srcDirect {
				r.ringDir += int64(len(data))
			}
		}
		if off > r.off || off+int64(len(data)) < r.off {
			return fmt.Errorf("%w: data at offset %d, reader at %d", ErrProtocol, off, r.off)
		}
		r.sized(len(data))
		r.pending = data[r.off-off:]
		if len(r.pending) == 0 {
			r.releaseRing()
		}
		return nil
	case proto.TEOF:
		var m proto.EOF
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return err
		}
		return r.endOfStream(m)
	case proto.TError:
		err := decodeError(f)
		if r.src == srcDirect {
			r.fallBack()
			return nil
		}
		return err
	}
	return fmt.Errorf("%w: unexpected frame type %d in a read stream", ErrProtocol, f.Type)
}

func (r *Reader) endOfStream(m proto.EOF) error {
	if m.Sealed {
		if m.Length != r.off {
			return fmt.Errorf("%w: sealed at %d, reader at %d", ErrGap, m.Length, r.off)
		}
		r.eof = true
		// On the space's control connection, where this client's close of
		// the space goes too: the server then has the instance marked read
		// before that close, which deletes a space whose every byte was
		// read. Frames on two connections have no order (a close could
		// overtake this on the reader's own connection).
		done := &proto.Ref{Space: r.s.name, Instance: r.info.Instance}
		if !r.s.notify(proto.TReadDone, done) && r.cc != nil {
			r.cc.sendReq(proto.TReadDone, 0, done)
		}
		if r.src == srcDirect && r.dc != nil {
			// The subscription ended cleanly: the connection can serve
			// another reader of this client.
			r.s.c.putIdle(r.directAddr, r.dc)
			r.dc = nil
		}
		return nil
	}
	// A catch-up stream reached the cache's current end (or the
	// writer's offset when it refused us): try the writer, or, after a
	// round of bulk data, follow the cache.
	r.bulk = r.round >= bulkRound
	r.src = srcNone
	return nil
}

// open starts a stream from the right source at r.off: the writer itself
// when it is active (it serves a reader a little behind it from what it
// still holds), else, or when the writer is too far ahead, a catch-up
// stream from the cache that ends at the writer's offset when it refused
// (or at the cache's current length), after which the writer is tried
// again; after maxSubscribeTries catch-ups, or
// without a direct path, a cache stream that follows the writer.
func (r *Reader) open(ctx context.Context) error {
	if r.cc == nil {
		c, err := r.s.c.connect(ctx, r.s.addr, false)
		if err != nil {
			return fmt.Errorf("comm: reconnect: %w", err)
		}
		r.cc = c
	}
	direct := r.writerActive && r.directAddr != "" && r.s.c.direct != nil && r.tries < maxSubscribeTries
	if direct && r.bulk {
		req, err := r.cc.send(proto.TRead, &proto.Read{Space: r.s.name, Instance: r.info.Instance, Offset: r.off, Follow: true})
		if err != nil {
			r.cc.close()
			r.cc = nil
			return fmt.Errorf("comm: read request: %w", err)
		}
		r.req, r.src, r.small = req, srcBulk, 0
		return nil
	}
	if direct {
		if r.subscribe(ctx) {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		direct = r.tries < maxSubscribeTries
	}
	follow := !direct
	// Only rounds that made no progress count: a reader catching up from
	// a cache that is itself catching up keeps trying the writer.
	if r.off == r.triedAt {
		r.tries++
	}
	r.triedAt = r.off
	// A writer that refused us told us where it was: follow the cache up
	// to there (waiting for the cache rather than polling it), then try
	// the writer again.
	until := int64(0)
	if !follow && r.until > r.off {
		follow, until = true, r.until
	}
	req, err := r.cc.send(proto.TRead, &proto.Read{Space: r.s.name, Instance: r.info.Instance, Offset: r.off,
		Follow: follow, Until: until})
	if err != nil {
		r.cc.close()
		r.cc = nil
		return fmt.Errorf("comm: read request: %w", err)
	}
	r.req = req
	r.src, r.round = srcCatchUp, 0
	if follow && until == 0 {
		r.src = srcCacheFollow
	}
	return nil
}

// subscribe tries the direct path at r.off; false means read from the
// cache for now (r.tries is maxed when the writer is unreachable).
func (r *Reader) subscribe(ctx context.Context) bool {
	pooled := false
	if r.dc == nil {
		r.dc, pooled = r.s.c.takeIdle(r.directAddr, false), true
	}
	for {
		if r.dc == nil {
			c, err := r.s.c.dialAs(ctx, r.directAddr, true)
			if err != nil {
				r.tries = maxSubscribeTries // writer unreachable: use the cache
				return false
			}
			r.dc, pooled = c, false
		}
		f, err := r.dc.callCtx(ctx, proto.TSubscribe, &proto.Subscribe{Space: r.s.name, Instance: r.info.Instance, Offset: r.off})
		if err == nil {
			r.req = f.Req
			r.src = srcDirect
			r.acked = r.off
			var m subscribedMsg
			if proto.Unmarshal(f.Payload, &m) == nil && m.AckEvery > 0 {
				r.ackEvery = m.AckEvery
			}
			return true
		}
		var re *RemoteError
		if errors.As(err, &re) && re.Code == proto.CodeOutOfWindow {
			r.until = re.At
		}
		if isConnErr(err) || !errors.Is(err, errOutOfWindow) {
			r.dc.close()
			r.dc = nil
			if pooled && isConnErr(err) && ctx.Err() == nil {
				continue // an idle connection the writer's side dropped: dial afresh
			}
			r.tries = maxSubscribeTries
		}
		return false
	}
}

// ack tells the writer how far this reader has read on the direct path,
// which lets the writer keep writing from Write itself. A failed ack shows
// up as a failed read.
func (r *Reader) ack() {
	r.acked = r.off
	r.dc.sendReq(tAck, r.req, &ackMsg{Offset: r.off})
}

// sourceFailed handles a broken connection: the direct link falls back to
// the cache; a broken cache connection is redialled once per read.
func (r *Reader) sourceFailed(ctx context.Context, err error) error {
	r.left = 0
	if r.src == srcDirect {
		r.fallBack()
		return nil
	}
	r.cc.close()
	r.cc = nil
	r.src = srcNone
	if errors.Is(err, wire.ErrProtocol) {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if err := r.open(ctx); err != nil {
		return err
	}
	return nil
}

// fallBack leaves the direct link that failed or dropped this reader (a
// slow receiver): the reader catches up from the cache and then tries the
// writer again, so a long-lived channel returns to the direct path after a
// burst. A writer that cannot be reached any more sends it to a cache
// stream that follows to the end (subscribe maxes r.tries), as do
// maxSubscribeTries catch-ups that never reach the writer's window.
func (r *Reader) fallBack() {
	r.left = 0
	if r.dc != nil {
		r.dc.close()
		r.dc = nil
	}
	r.src = srcNone
	r.tries = 1
}

func (r *Reader) dropSource() {
	r.left = 0
	if r.src == srcDirect {
		r.fallBack()
		return
	}
	if r.cc != nil {
		r.cc.close()
		r.cc = nil
	}
	r.src = srcNone
}

// drainWait bounds how long Close waits for the end of a direct stream it
// stops reading (see drainDirect).
const drainWait = 2 * time.Millisecond

// Close detaches the reader. A reader on the direct path that has not
// reached the end waits up to 2 ms for the writer's end of stream, so that
// its connection to the writer can serve the next reader. Idempotent.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.watch.release()
	r.releaseRing()
	r.pending = nil
	if r.dc != nil {
		if r.src == srcDirect && r.drainDirect() {
			r.s.c.putIdle(r.directAddr, r.dc)
		} else {
			r.dc.close()
		}
		r.dc = nil
	}
	if r.cc != nil {
		if r.eof || r.src == srcDirect || r.src == srcNone {
			// No stream runs on the cache connection (the sealed end was
			// reached, or the bytes come from the writer, or nothing is
			// being read): nothing is in flight on it, and the next reader
			// or writer of the space can use it.
			r.s.c.putIdle(r.s.addr, r.cc)
		} else {
			r.cc.close()
		}
		r.cc = nil
	}
	return nil
}
