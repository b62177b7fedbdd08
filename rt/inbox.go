package rt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// inbox demultiplexes the channels from every peer of a communicator.
// Frames of one source are read in channel order by whoever holds that
// source's reader (see source.busy): a goroutine blocked in a receive
// from that one source reads them itself (caller-driven progress, no
// goroutine handoff), otherwise a pump goroutine does. Either way each
// frame completes the earliest matching posted receive or is queued as
// unexpected. A receive first searches the unexpected queue (arrival
// order), then posts itself. That keeps messages of one (source, tag) in
// order.
//
// A pump runs while a posted receive wants its source and nobody else
// reads it (AnySource and Irecv receives, a second receive from a source
// already being read), or to read ahead: a source nobody has read for
// readAheadDelay gets a pump that queues unexpected messages up to
// MaxUnexpectedBytes, and stops at a message over readAheadMax; the next
// receive from it stops that.
//
// Payload copies into receive buffers happen outside mu, by whichever
// goroutine took the request off the posted list.
type inbox struct {
	c        *Comm
	mu       sync.Mutex
	idle     sync.Cond // broadcast when a source's reader is released
	posted   []*Request
	queue    []*message // unexpected messages, arrival order
	srcs     []source
	failErr  error // set by failAll: every receive fails with it
	stopping bool  // stopPumps is running: start no reader
}

// source is the read side of one pair channel.
type source struct {
	// The reader, used only by the goroutine holding it (busy).
	rd      *frameReader // nil until attached
	busy    bool         // a pump or a receiving goroutine holds rd
	ahead   bool         // the pump reads ahead with no receive wanting
	rctx    context.Context
	rcancel context.CancelFunc // cancels rctx (a child of Comm.life)
	timer   *time.Timer        // starts a read-ahead pump when idle
	parked  bool               // read-ahead stopped at a large frame's header (see readAheadMax)
	cur     *Request           // the receive the current frame is read into

	// The end of a blocking receive's context cuts the read of the
	// goroutine driving the source for it (see watch): watching is the
	// Done channel of the context registered with context.AfterFunc
	// (unwatch stops that), driving the one of the receive holding the
	// reader now. The registration outlives the receive, so that the
	// next receive with the same context registers nothing.
	watching <-chan struct{}
	unwatch  func() bool
	driving  <-chan struct{}

	consumed int64           // channel offset after the last frame taken
	trimmed  int64           // channel offset the space was last told to trim at (Config.TrimConsumed)
	trimming bool            // a trim of this source's channel is under way
	nextSeq  uint64          // sequence number of the next frame
	skip     map[uint64]bool // frames consumed before a restore: drop on replay
	queued   int64           // bytes of this source's unexpected messages
	err      error           // why reading stopped (nil while it may go on)
	wake     chan struct{}   // cap 1: flow control
}

type message struct {
	src     int
	h       header
	off     int64 // channel offset of the frame
	payload []byte
}

// readAheadDelay is how long a source stays unread before a pump starts
// reading ahead of receives.
const readAheadDelay = time.Millisecond

// readAheadMax: a read-ahead pump stops at the header of a frame with a
// larger payload and leaves it for the receive, which reads it straight
// into its buffer: read ahead, it would be copied twice (into a fresh
// buffer, then into the receive's). Until a holder consumes that frame the
// source gets no read-ahead timer; the bytes wait in the space.
const readAheadMax = 256 << 10

// directMin: payloads of at least this many bytes for the receiving
// goroutine's own receive are read straight into its buffer.
const directMin = 4 << 10

func (in *inbox) init(c *Comm) {
	in.c = c
	in.idle.L = &in.mu
	in.srcs = make([]source, c.size)
	for i := range in.srcs {
		in.srcs[i].wake = make(chan struct{}, 1)
	}
}

// post matches r against the unexpected queue or posts it. With drive
// set (a blocking receive from one source) and nobody reading that
// source, the caller gets its reader: post returns true and the caller
// must call in.drive.
func (in *inbox) post(r *Request, drive bool) bool {
	in.mu.Lock()
	if in.failErr != nil {
		in.mu.Unlock()
		r.failWith(rankErr(in.c.rank, "recv", in.failErr))
		return false
	}
	for i, m := range in.queue {
		if r.matches(m.src, m.h.tag) {
			in.queue = slices.Delete(in.queue, i, i+1)
			in.srcs[m.src].queued -= m.h.n
			in.signal(m.src)
			in.mu.Unlock()
			r.fill(m.src, m.h, m.payload)
			return false
		}
	}
	if err := in.deadFor(r); err != nil {
		in.mu.Unlock()
		r.failWith(err)
		return false
	}
	in.posted = append(in.posted, r)
	if r.src == AnySource {
		for s := range in.srcs {
			in.srcs[s].ahead = false
			in.start(s)
			in.signal(s)
		}
		in.mu.Unlock()
		return false
	}
	src := &in.srcs[r.src]
	src.ahead = false
	if drive && in.acquire(r.src) {
		in.mu.Unlock()
		return true
	}
	in.start(r.src)
	in.signal(r.src)
	in.mu.Unlock()
	return false
}

// acquire takes source s's reader if nobody holds it. Callers hold mu;
// the holder calls release when done.
func (in *inbox) acquire(s int) bool {
	src := &in.srcs[s]
	if src.busy || src.err != nil || in.failErr != nil || in.stopping {
		return false
	}
	src.busy = true
	in.c.wg.Add(1)
	if src.rctx == nil || src.rctx.Err() != nil {
		in.renew(s)
	}
	return true
}

// renew replaces source s's read context. Callers hold mu.
func (in *inbox) renew(s int) {
	src := &in.srcs[s]
	if src.rcancel != nil {
		src.rcancel()
	}
	src.rctx, src.rcancel = context.WithCancel(in.c.life)
}

// release gives up source s's reader: to a pump if a posted receive still
// wants the source, else it arms the read-ahead timer. Callers hold mu.
func (in *inbox) release(s int) {
	src := &in.srcs[s]
	src.busy, src.ahead, src.driving = false, false, nil
	in.c.wg.Done()
	in.idle.Broadcast()
	if src.err != nil || in.failErr != nil || in.stopping {
		return
	}
	if in.wantsFrom(s) {
		in.start(s)
		return
	}
	if src.parked && (src.rd == nil || !src.rd.inFrame) {
		src.parked = false // the frame it stopped at is consumed
	}
	if src.parked {
		return
	}
	if src.timer == nil {
		src.timer = time.AfterFunc(readAheadDelay, func() { in.readAhead(s) })
	} else {
		src.timer.Reset(readAheadDelay)
	}
}

// readAhead starts a pump on source s if nobody reads it.
func (in *inbox) readAhead(s int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if src := &in.srcs[s]; !src.busy && !src.parked {
		src.ahead = true
		in.start(s)
	}
}

// park ends a read-ahead pump on source s at a frame whose payload is over
// readAheadMax, unless a posted receive wants the source: it releases the
// reader and reports true.
func (in *inbox) park(s int) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	src := &in.srcs[s]
	if !src.ahead || in.wantsFrom(s) {
		return false
	}
	src.parked = true
	in.release(s)
	return true
}

// deadFor returns the error for a receive no live source can satisfy.
func (in *inbox) deadFor(r *Request) error {
	if r.src != AnySource {
		if err := in.srcs[r.src].err; err != nil {
			return rankErr(r.src, "recv", err)
		}
		return nil
	}
	var errs []error
	for s := range in.srcs {
		if in.srcs[s].err == nil {
			return nil
		}
		errs = append(errs, rankErr(s, "recv", in.srcs[s].err))
	}
	return errors.Join(errs...)
}

// signal wakes source s's pump if it waits for queue room.
func (in *inbox) signal(s int) {
	select {
	case in.srcs[s].wake <- struct{}{}:
	default:
	}
}

// start launches a pump on source s if nobody reads it. Callers hold mu.
func (in *inbox) start(s int) {
	if !in.acquire(s) {
		return
	}
	go in.pump(s)
}

// cancel withdraws r if still posted, completing it with err.
func (in *inbox) cancel(r *Request, err error) bool {
	in.mu.Lock()
	i := slices.Index(in.posted, r)
	if i >= 0 {
		in.posted = slices.Delete(in.posted, i, i+1)
	}
	in.mu.Unlock()
	if i < 0 {
		return false
	}
	r.failWith(rankErr(r.src, "recv", err))
	return true
}

// pump reads source s while a posted receive wants it (or while reading
// ahead), then releases the reader. It holds the reader when started.
func (in *inbox) pump(s int) {
	src := &in.srcs[s]
	life := in.c.life
	for {
		in.mu.Lock()
		ctx, ok := in.pumpReady(s)
		in.mu.Unlock()
		if !ok {
			return
		}
		if ctx == nil {
			select { // queue full: wait for room or a receive
			case <-src.wake:
			case <-life.Done():
			}
			continue
		}
		if err := in.step(ctx, s, nil); err != nil {
			if err == errParked {
				return // released
			}
			if ctx.Err() == nil {
				in.stopped(s, err)
			}
			if ctx.Err() == nil || life.Err() != nil {
				in.mu.Lock()
				in.release(s)
				in.mu.Unlock()
				return
			}
		}
	}
}

// pumpReady decides the pump's next move: ok false means it has released
// the reader and must exit; a nil context means wait for queue room.
// Callers hold mu.
func (in *inbox) pumpReady(s int) (context.Context, bool) {
	src := &in.srcs[s]
	want := in.wantsFrom(s)
	switch {
	case in.failErr != nil || in.stopping || in.c.life.Err() != nil || !want && !src.ahead:
		in.release(s)
		return nil, false
	case src.queued >= in.c.w.cfg.MaxUnexpectedBytes && !want:
		return nil, true
	}
	if src.rctx.Err() != nil {
		in.renew(s) // cancelled for an earlier reader
	}
	return src.rctx, true
}

// drive reads source r.src, whose reader the caller holds (post returned
// true), until r (a pooled request, whose one completion value stays in
// r.done for waitOrCancel) completes, then releases the reader. ctx is the
// receive's: ending it withdraws r (a frame being read is finished later
// by whoever reads next).
func (in *inbox) drive(ctx context.Context, r *Request) {
	s := r.src
	rctx, err := in.watch(ctx, s, false)
	for err == nil {
		if len(r.done) > 0 { // complete (pooled); waitOrCancel takes the value
			in.mu.Lock()
			in.release(s)
			in.mu.Unlock()
			return
		}
		if err = in.step(rctx, s, r); err == nil {
			continue
		}
		if rctx.Err() != nil && ctx.Err() == nil && in.c.life.Err() == nil {
			// Cancelled by Restore's or an earlier reader's doing: go on.
			rctx, err = in.watch(ctx, s, true)
		}
	}
	in.readFailed(ctx, s, r, err)
}

// watch returns source s's read context (renewed first if renew is set),
// which the end of ctx cancels while this goroutine drives the source. The
// AfterFunc registration for ctx is kept across receives (see
// source.watching): a program passing one context to every receive
// registers once. It fails with ctx's error if ctx has ended.
func (in *inbox) watch(ctx context.Context, s int, renew bool) (context.Context, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	src := &in.srcs[s]
	if renew {
		in.renew(s)
	}
	done := ctx.Done()
	src.driving = done
	if done != nil && src.watching != done {
		if src.unwatch != nil {
			src.unwatch()
		}
		src.watching = done
		src.unwatch = context.AfterFunc(ctx, func() { in.cut(s, done) })
	}
	// Checked after driving is set: an end of ctx either shows here or
	// finds the source driven for ctx when its AfterFunc runs.
	if err := ctx.Err(); err != nil {
		return src.rctx, err
	}
	return src.rctx, nil
}

// cut cancels source s's read context if it is being driven for the
// receive context whose Done channel is done, which has ended.
func (in *inbox) cut(s int, done <-chan struct{}) {
	in.mu.Lock()
	defer in.mu.Unlock()
	src := &in.srcs[s]
	if src.watching == done {
		src.watching, src.unwatch = nil, nil // spent
	}
	if src.driving == done && src.rcancel != nil {
		src.rcancel()
	}
}

// unwatchAll drops the sources' context registrations. Callers hold mu.
func (in *inbox) unwatchAll() {
	for s := range in.srcs {
		src := &in.srcs[s]
		if src.unwatch != nil {
			src.unwatch()
		}
		src.watching, src.unwatch = nil, nil
	}
}

// readFailed ends drive after a failed read: r fails with the receive's
// context error, ErrClosed, or the source's error. A payload being read
// into r's buffer is moved aside for whoever reads next.
func (in *inbox) readFailed(ctx context.Context, s int, r *Request, err error) {
	if ctx.Err() == nil && in.c.life.Err() == nil {
		in.stopped(s, err) // fails r (posted or current) too
	} else if ctx.Err() != nil {
		err = ctx.Err()
	} else {
		err = ErrClosed
	}
	in.mu.Lock()
	if in.srcs[s].cur == r {
		in.dropCur(s)
		in.mu.Unlock()
		r.failWith(rankErr(s, "recv", err))
	} else {
		in.mu.Unlock()
		in.cancel(r, err) // if r is not posted, a frame, stopped or failAll completed it
	}
	in.mu.Lock()
	in.release(s)
	in.mu.Unlock()
}

// step reads one frame of source s and delivers it. me, when not nil, is
// the calling goroutine's own receive. A large payload whose receive can
// take it as it is (me, or an Irecv's) is read straight into that
// receive's buffer: the receive is taken off the posted list and becomes
// the source's current one (src.cur) until the payload is in.
func (in *inbox) step(ctx context.Context, s int, me *Request) error {
	src := &in.srcs[s]
	if src.rd == nil {
		in.mu.Lock()
		off := src.consumed
		in.mu.Unlock()
		r, err := in.c.w.space.Attach(ctx, in.c.pairName(s, in.c.rank), off)
		if err != nil {
			return err
		}
		src.rd = newFrameReader(r, off, in.c.w.cfg.MaxMessageBytes)
	}
	fr := src.rd
	h, start, err := fr.header(ctx)
	if err != nil {
		return err
	}
	if me == nil && h.n > readAheadMax && in.park(s) {
		return errParked
	}
	if h.n >= directMin {
		cur, err := in.takeDirect(s, h, me)
		if err != nil {
			return err
		}
		if cur != nil {
			if _, err := fr.payload(ctx, cur.buf[:h.n]); err != nil {
				return err
			}
			in.mu.Lock()
			src.nextSeq++
			src.consumed = fr.off
			src.cur = nil
			in.maybeTrim(s)
			in.mu.Unlock()
			cur.fillDirect(s, h)
			return nil
		}
	}
	p, err := fr.payload(ctx, nil)
	if err != nil {
		return err
	}
	return in.deliver(s, h, p, start, fr)
}

// trimEvery: with Config.TrimConsumed, a source's channel is trimmed each
// time another trimEvery bytes of it were consumed (four of the space's
// 1 MiB segments: one round trip to the server per 4 MiB received).
const trimEvery = 4 << 20

// chanTrimmer is a ChanReader whose space can discard the bytes in a
// range of offsets (comm.Reader; the in-process space keeps everything).
type chanTrimmer interface {
	Trim(ctx context.Context, from, to int64) (int64, error)
}

// maybeTrim lets the space discard what was consumed of source s's
// channel, once trimEvery more bytes were, when nobody can replay it
// (Config.TrimConsumed). The frames taken are in the process by then, in a
// receive's buffer or the unexpected queue. The trim goes on a goroutine
// of its own, one per source at a time: a failed one is tried again at
// the next step. Callers hold mu.
func (in *inbox) maybeTrim(s int) {
	src := &in.srcs[s]
	if !in.c.w.cfg.TrimConsumed || src.trimming || src.consumed-src.trimmed < trimEvery {
		return
	}
	t, ok := src.rd.r.(chanTrimmer)
	if !ok {
		return
	}
	src.trimming = true
	off := src.consumed
	in.c.wg.Go(func() {
		_, err := t.Trim(in.c.life, 0, off) // from 0: the segment the last one cut goes now
		in.mu.Lock()
		defer in.mu.Unlock()
		src.trimming = false
		if err == nil {
			src.trimmed = off
		}
	})
}

// takeDirect returns the receive the frame with header h goes to when its
// payload can be read straight into that receive's buffer: the source's
// current receive, or the first matching posted one if it is me or an
// Irecv (whose waiter does not need the buffer back on cancellation) and
// takes the payload as it is; that one is taken off the posted list.
func (in *inbox) takeDirect(s int, h header, me *Request) (*Request, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	src := &in.srcs[s]
	if src.cur != nil {
		return src.cur, nil
	}
	if h.seq != src.nextSeq {
		return nil, fmt.Errorf("%w: sequence %d, want %d", ErrCorrupt, h.seq, src.nextSeq)
	}
	if src.skip[h.seq] {
		return nil, nil
	}
	for i, r := range in.posted {
		if !r.matches(s, h.tag) {
			continue
		}
		if r != me && r.pooled || r.reject(h) != nil {
			return nil, nil
		}
		in.posted = slices.Delete(in.posted, i, i+1)
		src.cur = r
		return r, nil
	}
	return nil, nil
}

// dropCur detaches source s's current receive, moving what was read of its
// payload aside, and returns it (or nil) for the caller to complete.
// Callers hold mu.
func (in *inbox) dropCur(s int) *Request {
	src := &in.srcs[s]
	r := src.cur
	if r != nil {
		src.rd.abandon()
		src.cur = nil
	}
	return r
}

func (in *inbox) wantsFrom(s int) bool {
	if in.srcs[s].cur != nil {
		return true
	}
	for _, r := range in.posted {
		if r.src == s || r.src == AnySource {
			return true
		}
	}
	return false
}

// deliver hands one frame of source s to a posted receive or the queue.
func (in *inbox) deliver(s int, h header, p []byte, start int64, fr *frameReader) error {
	in.mu.Lock()
	src := &in.srcs[s]
	if h.seq != src.nextSeq {
		in.mu.Unlock()
		return fmt.Errorf("%w: sequence %d, want %d", ErrCorrupt, h.seq, src.nextSeq)
	}
	src.nextSeq++
	src.consumed = fr.off
	in.maybeTrim(s)
	if src.skip[h.seq] {
		delete(src.skip, h.seq)
		in.mu.Unlock()
		return nil
	}
	for i, r := range in.posted {
		if r.matches(s, h.tag) {
			in.posted = slices.Delete(in.posted, i, i+1)
			in.mu.Unlock()
			r.fill(s, h, p)
			return nil
		}
	}
	in.queue = append(in.queue, &message{src: s, h: h, off: start, payload: fr.owned(p)})
	src.queued += h.n
	in.mu.Unlock()
	return nil
}

// stopped records why reading source s failed and fails the receives
// that can no longer be satisfied.
func (in *inbox) stopped(s int, err error) {
	if errors.Is(err, io.EOF) {
		err = ErrPeerClosed
	}
	in.mu.Lock()
	in.srcs[s].err = err
	var dead []*Request
	var errs []error
	if r := in.dropCur(s); r != nil {
		dead, errs = append(dead, r), append(errs, rankErr(s, "recv", err))
	}
	keep := in.posted[:0]
	for _, r := range in.posted {
		if e := in.deadFor(r); e != nil && !in.queuedFor(r) {
			dead, errs = append(dead, r), append(errs, e)
			continue
		}
		keep = append(keep, r)
	}
	clear(in.posted[len(keep):])
	in.posted = keep
	in.mu.Unlock()
	for i, r := range dead {
		r.failWith(errs[i])
	}
}

// queuedFor reports whether an unexpected message matches r.
func (in *inbox) queuedFor(r *Request) bool {
	for _, m := range in.queue {
		if r.matches(m.src, m.h.tag) {
			return true
		}
	}
	return false
}

// failAll makes every posted and future receive fail with err.
func (in *inbox) failAll(err error) {
	in.mu.Lock()
	in.failErr = err
	posted := in.posted
	in.posted = nil
	in.mu.Unlock()
	for _, r := range posted {
		r.failWith(rankErr(in.c.rank, "recv", err))
	}
}

// stopPumps stops every reader, waits for them and closes them, so that
// reading starts again from the sources' recorded offsets; Restore uses
// it. It fails with ErrPending while receives are posted.
func (in *inbox) stopPumps() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pending() {
		return ErrPending
	}
	in.stopping = true
	for s := range in.srcs {
		src := &in.srcs[s]
		src.ahead = false
		if src.busy {
			src.rcancel()
			in.signal(s)
		}
	}
	for in.anyBusy() {
		in.idle.Wait()
	}
	in.closeReaders()
	in.stopping = false
	return nil
}

// pending reports whether a receive is posted or being read into. Callers
// hold mu.
func (in *inbox) pending() bool {
	if len(in.posted) > 0 {
		return true
	}
	for s := range in.srcs {
		if in.srcs[s].cur != nil {
			return true
		}
	}
	return false
}

func (in *inbox) anyBusy() bool {
	for s := range in.srcs {
		if in.srcs[s].busy {
			return true
		}
	}
	return false
}

// closeReaders closes every source's reader; none may be busy. Callers
// hold mu.
func (in *inbox) closeReaders() {
	in.unwatchAll()
	for s := range in.srcs {
		src := &in.srcs[s]
		if src.timer != nil {
			src.timer.Stop()
		}
		if src.rd != nil {
			src.rd.r.Close()
			src.rd = nil
		}
		if src.rcancel != nil {
			src.rcancel()
			src.rctx, src.rcancel = nil, nil
		}
	}
}

// shutdown closes the readers once Comm.Shutdown has stopped them all.
func (in *inbox) shutdown() {
	in.mu.Lock()
	var dead []*Request
	for s := range in.srcs {
		if r := in.dropCur(s); r != nil {
			dead = append(dead, r)
		}
	}
	in.closeReaders()
	in.mu.Unlock()
	for _, r := range dead {
		r.failWith(rankErr(r.src, "recv", ErrClosed))
	}
}
