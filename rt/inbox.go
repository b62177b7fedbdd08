package rt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// inbox demultiplexes the channels from every peer of a communicator. One
// pump goroutine per source (started on the first receive that needs it)
// reads frames in channel order and either completes the earliest matching
// posted receive or queues the message as unexpected. A receive first
// searches the unexpected queue (arrival order), then posts itself. That
// keeps messages of one (source, tag) in order.
//
// Payload copies into receive buffers happen outside mu, by whichever
// goroutine took the request off the posted list.
type inbox struct {
	c       *Comm
	mu      sync.Mutex
	posted  []*Request
	queue   []*message // unexpected messages, arrival order
	srcs    []source
	failErr error // set by failAll: every receive fails with it
}

// source is the read side of one pair channel.
type source struct {
	started bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when the pump exits

	consumed int64           // channel offset after the last frame taken
	nextSeq  uint64          // sequence number of the next frame
	skip     map[uint64]bool // frames consumed before a restore: drop on replay
	queued   int64           // bytes of this source's unexpected messages
	err      error           // why the pump stopped (nil while it may run)
	wake     chan struct{}   // cap 1: flow control
}

type message struct {
	src     int
	h       header
	off     int64 // channel offset of the frame
	payload []byte
}

func (in *inbox) init(c *Comm) {
	in.c = c
	in.srcs = make([]source, c.size)
	for i := range in.srcs {
		in.srcs[i].wake = make(chan struct{}, 1)
	}
}

// post matches r against the unexpected queue or posts it.
func (in *inbox) post(r *Request) {
	in.mu.Lock()
	if in.failErr != nil {
		in.mu.Unlock()
		r.failWith(rankErr(in.c.rank, "recv", in.failErr))
		return
	}
	for i, m := range in.queue {
		if r.matches(m.src, m.h.tag) {
			in.queue = slices.Delete(in.queue, i, i+1)
			in.srcs[m.src].queued -= m.h.n
			in.signal(m.src)
			in.mu.Unlock()
			r.fill(m.src, m.h, m.payload)
			return
		}
	}
	if err := in.deadFor(r); err != nil {
		in.mu.Unlock()
		r.failWith(err)
		return
	}
	in.posted = append(in.posted, r)
	if r.src == AnySource {
		for s := range in.srcs {
			in.start(s)
			in.signal(s)
		}
	} else {
		in.start(r.src)
		in.signal(r.src)
	}
	in.mu.Unlock()
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

// start launches the pump of source s if needed. Callers hold mu.
func (in *inbox) start(s int) {
	src := &in.srcs[s]
	if src.started || src.err != nil {
		return
	}
	c := in.c
	ctx, cancel := context.WithCancel(c.life)
	src.started, src.cancel, src.done = true, cancel, make(chan struct{})
	c.wg.Add(1)
	go func(off int64, done chan struct{}) {
		defer c.wg.Done()
		defer close(done)
		defer cancel()
		in.pump(ctx, s, off)
	}(src.consumed, src.done)
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

// pump reads source s's channel from offset off until ctx ends or the
// channel fails.
func (in *inbox) pump(ctx context.Context, s int, off int64) {
	c := in.c
	r, err := c.w.space.Attach(ctx, c.pairName(s, c.rank), off)
	if err != nil {
		in.stopped(ctx, s, err)
		return
	}
	defer r.Close()
	fr := newFrameReader(r, off, c.w.cfg.MaxMessageBytes)
	for {
		if err := in.waitRoom(ctx, s); err != nil {
			return
		}
		h, p, start, err := fr.next(ctx)
		if err == nil {
			err = in.deliver(s, h, p, start, fr)
		}
		if err != nil {
			in.stopped(ctx, s, err)
			return
		}
	}
}

// waitRoom blocks while source s has more than its share of unexpected
// bytes queued and no posted receive could take its next message.
func (in *inbox) waitRoom(ctx context.Context, s int) error {
	max := in.c.w.cfg.MaxUnexpectedBytes
	for {
		in.mu.Lock()
		full := in.srcs[s].queued >= max && !in.wantsFrom(s)
		in.mu.Unlock()
		if !full {
			return nil
		}
		select {
		case <-in.srcs[s].wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (in *inbox) wantsFrom(s int) bool {
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

// stopped records why source s's pump ended and fails the receives that
// can no longer be satisfied. A pump stopped by its context records nothing.
func (in *inbox) stopped(ctx context.Context, s int, err error) {
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		err = ErrPeerClosed
	}
	in.mu.Lock()
	in.srcs[s].err = err
	var dead []*Request
	var errs []error
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

// stopPumps stops every pump and waits for them; Restore uses it. It fails
// with ErrPending while receives are posted.
func (in *inbox) stopPumps() error {
	in.mu.Lock()
	if len(in.posted) > 0 {
		in.mu.Unlock()
		return ErrPending
	}
	var dones []chan struct{}
	for i := range in.srcs {
		src := &in.srcs[i]
		if src.started {
			src.cancel()
			dones = append(dones, src.done)
			src.started = false
		}
	}
	in.mu.Unlock()
	for _, d := range dones {
		<-d
	}
	return nil
}
