package shm

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// maxPending bounds the descriptors received and not yet taken: a peer
// sends two per ring it offers, plus an arena's stripes, and offers one.
const maxPending = 2 + ArenaStripes

// ErrDescriptors reports descriptors a peer sent that were not asked for.
var ErrDescriptors = errors.New("shm: unexpected descriptors")

// Reader reads a Unix connection with recvmsg, so that descriptors sent
// with the bytes (a ring offered by [Tx.Offer]) are kept instead of being
// dropped by a plain read. A descriptor arrives with the first byte of the
// frame it was sent with, so it is here by the time that frame is parsed:
// the frame's handler takes it with [Reader.TakeRing]. It is an [io.Reader]
// for one goroutine.
type Reader struct {
	c   UnixConn
	oob []byte
	fds []int
	err error
}

// NewReader returns a Reader on c.
func NewReader(c UnixConn) *Reader {
	return &Reader{c: c, oob: make([]byte, unix.CmsgSpace(4*maxPending))}
}

// Read reads bytes, keeping any descriptors that come with them. Too many
// untaken descriptors, or a truncated control message, is an error
// wrapping [ErrDescriptors].
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, oobn, flags, _, err := r.c.ReadMsgUnix(p, r.oob)
	return r.done(n, oobn, flags, err)
}

// ReadFd is Read on the connection's descriptor, for a caller that polls
// it itself (package spin): the descriptor is non-blocking, so nothing to
// read is EAGAIN. Descriptors come close-on-exec, as ReadMsgUnix makes
// them.
func (r *Reader) ReadFd(fd int, p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, oobn, flags, err := rawio.Recvmsg(fd, p, r.oob)
	return r.done(n, oobn, flags, err)
}

// done finishes a recvmsg of n bytes and oobn bytes of control message:
// it keeps the descriptors, and a descriptor error becomes the read's
// (sticky) when no bytes came.
func (r *Reader) done(n, oobn, flags int, err error) (int, error) {
	n = max(n, 0) // a failed recvmsg reports -1
	if oobn > 0 {
		if e := r.collect(r.oob[:oobn]); e != nil {
			r.err = e
		}
	}
	if flags&syscall.MSG_CTRUNC != 0 && r.err == nil {
		r.err = fmt.Errorf("%w: control message truncated", ErrDescriptors)
	}
	if err == nil && r.err != nil && n == 0 {
		err = r.err
	}
	return n, err
}

func (r *Reader) collect(oob []byte) error {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDescriptors, err)
	}
	var bad error
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue // credentials or the like: nothing to keep
		}
		for _, fd := range fds {
			if len(r.fds) >= maxPending {
				unix.Close(fd)
				bad = fmt.Errorf("%w: more than %d not taken", ErrDescriptors, maxPending)
				continue
			}
			r.fds = append(r.fds, fd)
		}
	}
	return bad
}

// TakeRing returns the two oldest descriptors received and not yet taken,
// a ring's header and data as [Tx.Offer] sends them; the caller owns
// them. With fewer than two there, it takes nothing.
func (r *Reader) TakeRing() (hfd, dfd int, ok bool) {
	if len(r.fds) < 2 {
		return -1, -1, false
	}
	hfd, dfd = r.fds[0], r.fds[1]
	r.fds = append(r.fds[:0], r.fds[2:]...)
	return hfd, dfd, true
}

// Accept is [Lazy.Accept] on a Reader: it takes the ring's two
// descriptors and, when more came with them (they come in one message,
// and a connection carries one offer), the producer's arena's stripes.
func (r *Reader) Accept(cur *Rx) (*Rx, error) {
	hfd, dfd, ok := r.TakeRing()
	if !ok {
		return nil, errors.New("shm: a shared ring offered without its descriptors")
	}
	afds := r.fds
	r.fds = nil
	if cur != nil {
		Close(hfd, dfd)
		Close(afds...)
		return nil, errors.New("shm: a second shared ring offered")
	}
	rx, err := Map(hfd, dfd, MaxRing)
	if err != nil {
		Close(afds...)
		return nil, err
	}
	if len(afds) > 0 {
		if err := rx.mapArena(afds); err != nil {
			rx.Close()
			return nil, err
		}
	}
	return rx, nil
}

// Close closes the descriptors not taken. It does not close the
// connection.
func (r *Reader) Close() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}

// Close closes descriptors that will not be used.
func Close(fds ...int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// switchAfter is how many bytes a [Lazy] reads before it reads with
// recvmsg; each plain read takes at most this many. It is a quarter of
// After, and a producer offers a ring only once it has sent After bytes:
// so the read that crosses it ends before the offer, and every read from
// the offer on keeps descriptors.
const switchAfter = After / 4

// Lazy reads a Unix connection with read(2) until it has read switchAfter
// bytes, and from then on as a [Reader], with recvmsg(2). A spinning read
// polls with many system calls, and recvmsg costs a little more than read
// (~0.7 µs per round trip measured): most connections never carry enough
// for a ring and never pay it. It is an [io.Reader] for one goroutine,
// with ReadFd for a caller that polls the descriptor itself.
type Lazy struct {
	c   UnixConn
	n   int
	fds *Reader
}

// NewLazy returns a Lazy on c.
func NewLazy(c UnixConn) *Lazy { return &Lazy{c: c} }

// Read reads from the connection.
func (l *Lazy) Read(p []byte) (int, error) {
	if l.fds != nil {
		return l.fds.Read(p)
	}
	n, err := l.c.Read(p[:min(len(p), switchAfter)])
	l.count(n)
	return n, err
}

// ReadFd is Read on the connection's (non-blocking) descriptor.
func (l *Lazy) ReadFd(fd int, p []byte) (int, error) {
	if l.fds != nil {
		return l.fds.ReadFd(fd, p)
	}
	n, err := rawio.Read(fd, p[:min(len(p), switchAfter)])
	l.count(n)
	return n, err
}

func (l *Lazy) count(n int) {
	if l.n += max(n, 0); l.n >= switchAfter {
		l.fds = NewReader(l.c)
	}
}

// Switch makes the reads from now on keep descriptors, before a peer
// asked for a ring (a TArena request) may offer one. It must not be
// called while a read is in progress.
func (l *Lazy) Switch() {
	if l != nil && l.fds == nil {
		l.fds = NewReader(l.c)
	}
}

// TakeRing is [Reader.TakeRing]; before the switch nothing can have come.
func (l *Lazy) TakeRing() (hfd, dfd int, ok bool) {
	if l.fds == nil {
		return -1, -1, false
	}
	return l.fds.TakeRing()
}

// Accept maps the ring of the offer (a TRing frame) just read, whose
// descriptors came with it; cur is the ring the connection already has,
// if any: a connection has one. A nil Lazy is a connection that carries
// no descriptors (TCP): an offer there is an error.
func (l *Lazy) Accept(cur *Rx) (*Rx, error) {
	if l == nil {
		return nil, errors.New("shm: a shared ring offered over TCP")
	}
	if l.fds == nil {
		return nil, errors.New("shm: a shared ring offered without its descriptors")
	}
	return l.fds.Accept(cur)
}

// Close closes the descriptors received and not taken.
func (l *Lazy) Close() {
	if l.fds != nil {
		l.fds.Close()
	}
}
