package rt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// outChan is this rank's writer to one peer. mu serialises whole frames,
// so concurrent sends to one peer never interleave; it is held during the
// Write, which never waits for the reader.
type outChan struct {
	mu      sync.Mutex
	w       ChanWriter
	off     int64  // bytes written (or replayed) so far
	seq     uint64 // next frame's sequence number
	err     error  // sticky: after a failed write the stream may be torn
	scratch []byte // header + small payload, sent in one Write
}

// copyLimit: payloads up to this size are copied behind the header and
// written in one Write; larger ones go in two.
const copyLimit = 32 << 10

// writePiece bounds one Write of a large payload. Comm hands a Write to a
// direct reader from the writer's goroutine, without a copy, only while
// the bytes the reader has not acknowledged stay within its window
// (comm.Config.DirectWindow, 4 MiB); a larger Write is copied into the
// reader's queue instead, and two queued 4 MiB messages overflow the
// queue (comm.Config.SinkQueue, 8 MiB), which moves the reader to the
// slower cache path.
const writePiece = 1 << 20

// send writes one frame to dst. The payload may be reused on return.
func (c *Comm) send(ctx context.Context, dst int, tag int32, op opCode, code elemCode, p []byte) error {
	if int64(len(p)) > c.w.cfg.MaxMessageBytes {
		return rankErr(dst, "send", fmt.Errorf("%w: %d bytes", ErrTooLarge, len(p)))
	}
	o := &c.outs[dst]
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return rankErr(dst, "send", o.err)
	}
	if o.w == nil {
		name := c.pairName(c.rank, dst)
		w, err := c.w.space.Create(ctx, name, name, o.off)
		if err != nil {
			return rankErr(dst, "send", err)
		}
		o.w = w
	}
	h := header{code: code, op: op, tag: tag, seq: o.seq, n: int64(len(p))}
	if err := o.write(h, p); err != nil {
		o.err = err
		return rankErr(dst, "send", err)
	}
	o.seq++
	return nil
}

func (o *outChan) write(h header, p []byte) error {
	if cap(o.scratch) < hdrSize+min(len(p), copyLimit) {
		o.scratch = make([]byte, hdrSize, hdrSize+copyLimit)
	}
	buf := o.scratch[:hdrSize]
	putHeader(buf, h)
	if len(p) <= copyLimit {
		buf = append(buf, p...)
		p = nil
	}
	if err := o.writeAll(buf); err != nil {
		return err
	}
	return o.writeAll(p)
}

func (o *outChan) writeAll(b []byte) error {
	for len(b) > 0 {
		p := b[:min(len(b), writePiece)]
		n, err := o.w.Write(p)
		o.off += int64(n)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// closeWriters seals every channel c wrote, making it durable.
func (c *Comm) closeWriters(ctx context.Context) error {
	var errs []error
	for i := range c.outs {
		o := &c.outs[i]
		o.mu.Lock()
		if o.w != nil {
			if err := o.w.Close(ctx); err != nil {
				errs = append(errs, rankErr(i, "close", err))
			}
			o.w = nil
		}
		if o.err == nil {
			o.err = ErrClosed
		}
		o.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Send sends buf to rank dst of c with tag (>= 0). It returns once the
// message is in dst's channel; it never waits for dst to receive, or even
// to exist, and buf may be reused as soon as it returns. Messages from one
// rank to another with one tag are received in the order sent.
//
// Errors (inside a *RankError): ErrRank, ErrTag, ErrTooLarge, ErrClosed,
// the context's error, or the space's.
func Send[T Elem](ctx context.Context, c *Comm, dst, tag int, buf []T) error {
	return c.sendUser(ctx, dst, tag, codeOf[T](), wireBytes(buf))
}

// SendBytes sends raw bytes (element type "bytes"); it is [Send] for
// programs that frame their own data. Receive with [RecvBytes].
func SendBytes(ctx context.Context, c *Comm, dst, tag int, buf []byte) error {
	return c.sendUser(ctx, dst, tag, codeBytes, buf)
}

func (c *Comm) sendUser(ctx context.Context, dst, tag int, code elemCode, p []byte) error {
	if err := c.check(ctx, "send"); err != nil {
		return err
	}
	if err := c.checkPeer(dst, "send"); err != nil {
		return err
	}
	if tag < 0 || tag > maxTag {
		return rankErr(dst, "send", fmt.Errorf("%w: %d", ErrTag, tag))
	}
	return c.send(ctx, dst, int32(tag), opP2P, code, p)
}

// maxTag is the largest user tag.
const maxTag = 1<<31 - 1

// Isend starts a send and returns its request. Because a send never waits
// for the receiver, the message is already in the channel when Isend
// returns: buf may be reused at once and the request is complete (Wait
// returns the send's result; its Status.Source is dst).
func Isend[T Elem](ctx context.Context, c *Comm, dst, tag int, buf []T) (*Request, error) {
	err := Send(ctx, c, dst, tag, buf)
	if err != nil {
		return nil, err
	}
	r := &Request{done: closedChan, st: Status{Source: dst, Tag: tag, Count: len(buf)}}
	return r, nil
}

var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()
