package rt

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Status describes a received message.
type Status struct {
	// Source is the sender's rank in the communicator.
	Source int
	// Tag is the message's tag.
	Tag int
	// Count is the number of elements in the message (bytes for raw-byte
	// messages). On ErrTruncated it is the full message's count.
	Count int
}

// Request is a pending non-blocking operation from [Isend] or [Irecv].
// Its methods may be called from any goroutine.
type Request struct {
	in    *inbox // nil for sends
	src   int
	tag   int
	op    opCode
	code  elemCode
	buf   []byte
	exact bool // collectives: the message must fill buf exactly

	// done is closed once st and err are final; for pooled requests (the
	// runtime's own blocking receives, which have a single waiter) it has
	// capacity 1 and receives one value instead, so it can be reused.
	done   chan struct{}
	pooled bool
	st     Status
	err    error
}

// Wait blocks until the request completes or ctx ends. If ctx ends first
// it returns the context's error and the receive stays posted: Wait again,
// or [Request.Cancel] it. For a send request Status.Source is the
// destination.
func (r *Request) Wait(ctx context.Context) (Status, error) {
	select {
	case <-r.done:
		return r.st, r.err
	case <-ctx.Done():
		return Status{}, rankErr(r.src, "wait", ctx.Err())
	}
}

// Test reports whether the request has completed, without blocking.
func (r *Request) Test() (Status, bool, error) {
	select {
	case <-r.done:
		return r.st, true, r.err
	default:
		return Status{}, false, nil
	}
}

// Cancel withdraws a receive that no message has matched yet and reports
// whether it did; the request then completes with context.Canceled. It
// returns false once a message has matched (Wait then returns it promptly).
func (r *Request) Cancel() bool {
	if r.in == nil {
		return false
	}
	return r.in.cancel(r, context.Canceled)
}

// WaitAll waits for every request. It returns their statuses in order and
// the errors of those that failed, joined; if ctx ends first it returns the
// context's error and leaves unfinished receives posted.
func WaitAll(ctx context.Context, reqs ...*Request) ([]Status, error) {
	sts := make([]Status, len(reqs))
	var errs []error
	for i, r := range reqs {
		st, err := r.Wait(ctx)
		if err != nil && ctx.Err() != nil {
			return sts, err
		}
		sts[i] = st
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sts, errors.Join(errs...)
}

// matches reports whether a message (src, tag) satisfies r.
func (r *Request) matches(src int, tag int32) bool {
	if r.src != AnySource && r.src != src {
		return false
	}
	if r.tag == AnyTag {
		return tag >= 0
	}
	return int32(r.tag) == tag
}

// fill completes r with a message. Only the goroutine that took r off the
// posted list (or matched it on posting) calls it.
func (r *Request) fill(src int, h header, p []byte) {
	if err := r.reject(h); err != nil {
		r.st = status(src, h)
		r.failWith(rankErr(src, "recv", err))
		return
	}
	copy(r.buf, p)
	r.fillDirect(src, h)
}

// fillDirect completes r with a message whose payload is already in r.buf
// (read straight into it, or copied by fill); r.reject(h) is nil.
func (r *Request) fillDirect(src int, h header) {
	r.st = status(src, h)
	fromWire(r.buf[:h.n], h.code)
	r.complete()
}

// reject returns why a message with header h cannot complete r, or nil.
func (r *Request) reject(h header) error {
	switch {
	case h.op != r.op:
		return fmt.Errorf("%w: got %s, want %s", ErrMismatch, h.op, r.op)
	case h.code != r.code:
		return fmt.Errorf("%w: message of %s, receive of %s", ErrType, h.code, r.code)
	case r.exact && h.n != int64(len(r.buf)):
		return fmt.Errorf("%w: message of %d %s, buffer of %d", ErrCount,
			h.n/int64(h.code.size()), h.code, len(r.buf)/r.code.size())
	case h.n > int64(len(r.buf)):
		return fmt.Errorf("%w: message of %d %s, buffer of %d", ErrTruncated,
			h.n/int64(h.code.size()), h.code, len(r.buf)/r.code.size())
	}
	return nil
}

func status(src int, h header) Status {
	return Status{Source: src, Tag: int(h.tag), Count: int(h.n) / h.code.size()}
}

// failWith completes r with err.
func (r *Request) failWith(err error) {
	r.err = err
	r.complete()
}

// complete signals r's waiter; r must not be touched afterwards by the
// completing goroutine.
func (r *Request) complete() {
	if r.pooled {
		r.done <- struct{}{}
	} else {
		close(r.done)
	}
}

var reqPool = sync.Pool{New: func() any {
	return &Request{done: make(chan struct{}, 1), pooled: true}
}}

// Recv receives into buf a message from rank src (or AnySource) of c with
// tag (or AnyTag), blocking until one arrives or ctx ends. The message's
// element type must be T (else ErrType) and it must fit in buf (else
// ErrTruncated; the message is consumed). buf[:Status.Count] holds it.
//
// Errors (inside a *RankError): ErrRank, ErrTag, ErrType, ErrTruncated,
// ErrPeerClosed, ErrCorrupt, ErrClosed, the context's error, or the space's.
func Recv[T Elem](ctx context.Context, c *Comm, src, tag int, buf []T) (Status, error) {
	return c.recvUser(ctx, src, tag, codeOf[T](), asBytes(buf))
}

// RecvBytes receives a raw-byte message sent with [SendBytes].
func RecvBytes(ctx context.Context, c *Comm, src, tag int, buf []byte) (Status, error) {
	return c.recvUser(ctx, src, tag, codeBytes, buf)
}

func (c *Comm) recvUser(ctx context.Context, src, tag int, code elemCode, buf []byte) (Status, error) {
	if err := c.checkRecv(ctx, src, tag); err != nil {
		return Status{}, err
	}
	return c.recvPooled(ctx, src, tag, opP2P, code, buf, false)
}

// Irecv posts a receive into buf and returns its request; buf must not be
// touched until the request completes. Matching is as for [Recv]; posted
// receives are matched in the order they were posted.
func Irecv[T Elem](ctx context.Context, c *Comm, src, tag int, buf []T) (*Request, error) {
	return c.irecvUser(ctx, src, tag, codeOf[T](), asBytes(buf))
}

func (c *Comm) irecvUser(ctx context.Context, src, tag int, code elemCode, buf []byte) (*Request, error) {
	if err := c.checkRecv(ctx, src, tag); err != nil {
		return nil, err
	}
	r := &Request{in: &c.in, src: src, tag: tag, op: opP2P, code: code, buf: buf,
		done: make(chan struct{})}
	c.in.post(r, false)
	return r, nil
}

func (c *Comm) checkRecv(ctx context.Context, src, tag int) error {
	if err := c.check(ctx, "recv"); err != nil {
		return err
	}
	if src != AnySource {
		if err := c.checkPeer(src, "recv"); err != nil {
			return err
		}
	}
	if tag < AnyTag {
		return rankErr(src, "recv", fmt.Errorf("%w: %d", ErrTag, tag))
	}
	return nil
}

// recvPooled receives with a request from reqPool. A receive from one
// source reads that source itself when nobody else does (see inbox).
func (c *Comm) recvPooled(ctx context.Context, src, tag int, op opCode, code elemCode, buf []byte, exact bool) (Status, error) {
	r := reqPool.Get().(*Request)
	r.in, r.src, r.tag, r.op, r.code, r.buf, r.exact = &c.in, src, tag, op, code, buf, exact
	if c.in.post(r, src != AnySource) {
		c.in.drive(ctx, r)
	}
	return r.waitOrCancel(ctx)
}

// waitOrCancel waits for a pooled request; if ctx ends first it withdraws
// r, or, if a message already matched it, waits for the (prompt) copy to
// finish. r goes back to the pool.
func (r *Request) waitOrCancel(ctx context.Context) (Status, error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		r.in.cancel(r, ctx.Err())
		<-r.done
	}
	st, err := r.st, r.err
	*r = Request{done: r.done, pooled: true}
	reqPool.Put(r)
	return st, err
}

// recv is the runtime's own receive (collectives): definite source, exact
// length.
func (c *Comm) recv(ctx context.Context, src int, op opCode, code elemCode, buf []byte) error {
	_, err := c.recvPooled(ctx, src, collTag, op, code, buf, true)
	return err
}
