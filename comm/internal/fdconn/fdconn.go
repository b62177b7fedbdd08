// Package fdconn is a Unix stream connection whose descriptor the Go
// runtime's poller does not watch.
//
// A net.Conn's descriptor sits in the runtime's epoll set, edge-triggered
// for reading and writing. While a goroutine busy-polls such a socket
// (package spin) and the process's other Ps are idle, one of their
// threads sleeps in epoll_wait, and every frame that arrives wakes it, as
// does every read by the peer (the socket becomes writable): a wake-up
// and a context switch per message, which finds nothing to do. A
// two-process ping-pong of 8 bytes that spins on non-blocking reads took
// 20-31 µs one way on the PVM guest with its sockets in the poller, and
// 6.2-6.7 µs with descriptors the poller never saw; leaving out only the
// reading ends, or only the writing ends, was not enough (20-23 µs).
//
// A Conn takes the socket out of the poller (New dups the descriptor and
// closes the net.Conn, which removes it from the epoll set). To wait, an
// operation arms a one-shot registration of the socket in an epoll
// instance of the Conn's own, whose descriptor is in the runtime's poller
// (an os.File): the goroutine parks there as on any socket, its P free for
// others, and the socket's readiness reaches the runtime's poller only
// while someone waits for it. Waiting in poll(2) instead, in a system
// call, kept the P until sysmon took it back, up to 10 ms later: a rank
// with one P stalled (the 4-rank 1 Mi-element Allreduce 43-59 -> 51-68
// ms).
//
// Its reads and writes are raw system calls (package rawio); so is the
// recvmsg of ReadMsgUnix, but not the sendmsg of WriteMsgUnix, which
// carries a ring's offer once per connection.
package fdconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// Conn is a Unix stream connection outside the runtime's poller. It is a
// net.Conn and a syscall.Conn, and reads and writes descriptors as a
// *net.UnixConn does. Reads may run concurrently with writes; Close and
// the deadline setters may be called from any goroutine.
type Conn struct {
	fd           int
	laddr, raddr net.Addr
	rd, wr       *waiter // for reads and for writes

	mu     sync.Mutex
	refs   int  // operations using fd
	closed bool // fd closes when refs drops to zero

	rdl, wdl atomic.Int64 // deadlines in Unix nanoseconds, 0 for none
}

// waiter is an epoll instance of a Conn's own that holds its socket with
// a one-shot registration, armed only to wait; the instance's descriptor
// is in the runtime's poller, so a goroutine waiting on it parks and
// frees its P. Reads and writes have one each, so that both may wait at
// once.
type waiter struct {
	ep     *os.File
	rc     syscall.RawConn
	events uint32
}

func newWaiter(fd int, events uint32) (*waiter, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Registered disarmed: a one-shot registration that has not fired
	// reports nothing until wait arms it.
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLONESHOT, Fd: int32(fd)}); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil { // so that os.NewFile puts it in the poller
		unix.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(epfd), "fdconn-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	return &waiter{ep: ep, rc: rc, events: events}, nil
}

// wait arms the registration of fd and parks until it fires: the socket
// is ready (or has an error or hang-up). The epoll file's read deadline
// ends the wait with os.ErrDeadlineExceeded, and closing the file ends it
// with an error.
func (w *waiter) wait(fd int) error {
	armed := false
	var err error
	rerr := w.rc.Read(func(epfd uintptr) bool {
		if !armed {
			armed = true
			// Modifying re-checks the socket: readiness that came since
			// the caller's EAGAIN is queued at once.
			if err = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: w.events | unix.EPOLLONESHOT, Fd: int32(fd)}); err != nil {
				err = os.NewSyscallError("epoll_ctl", err)
				return true
			}
		}
		var ev [1]unix.EpollEvent
		n, e := unix.EpollWait(int(epfd), ev[:], 0)
		return n > 0 || (e != nil && e != unix.EINTR)
	})
	if rerr != nil {
		return rerr
	}
	return err
}

// New takes c's socket out of the runtime's poller: the returned Conn
// holds a duplicate of its descriptor, and c is closed.
func New(c *net.UnixConn) (*Conn, error) {
	sc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := sc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("dup", derr)
	}
	rd, err := newWaiter(fd, unix.EPOLLIN|unix.EPOLLRDHUP)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	wr, err := newWaiter(fd, unix.EPOLLOUT)
	if err != nil {
		rd.ep.Close()
		unix.Close(fd)
		return nil, err
	}
	// The duplicate shares the open file, and so its flags: the runtime
	// made it non-blocking, and New makes sure it still is (every read
	// and write here relies on EAGAIN). Closing c removes the socket from
	// the runtime's epoll set.
	fc := &Conn{fd: fd, rd: rd, wr: wr, laddr: c.LocalAddr(), raddr: c.RemoteAddr()}
	c.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		fc.Close()
		return nil, os.NewSyscallError("setnonblock", err)
	}
	return fc, nil
}

// deadline returns the read or write deadline, zero for none.
func (c *Conn) deadline(read bool) int64 {
	if read {
		return c.rdl.Load()
	}
	return c.wdl.Load()
}

// expired is os.ErrDeadlineExceeded once the deadline has passed: as on
// a net.Conn, an operation then fails even when it could proceed.
func (c *Conn) expired(read bool) error {
	if dl := c.deadline(read); dl != 0 && time.Now().UnixNano() >= dl {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// acquire counts an operation on fd; false once the Conn is closed.
func (c *Conn) acquire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.refs++
	return true
}

func (c *Conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs--; c.refs == 0 && c.closed {
		c.closeFds()
	}
}

func (c *Conn) closeFds() {
	unix.Close(c.fd)
	c.fd = -1
}

// wait parks until fd is ready for reading (read) or writing, or has an
// error or hang-up; a nil return means "try the operation again". The
// caller holds a reference.
func (c *Conn) wait(read bool) error {
	if err := c.expired(read); err != nil {
		return err
	}
	w := c.wr
	if read {
		w = c.rd
	}
	if err := w.wait(c.fd); err != nil {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return net.ErrClosed
		}
		return err
	}
	return nil
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.acquire() {
		return 0, net.ErrClosed
	}
	defer c.release()
	if err := c.expired(true); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := rawio.Read(c.fd, p)
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			return 0, io.EOF
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, os.NewSyscallError("read", err)
		}
		if err := c.wait(true); err != nil {
			return 0, err
		}
	}
}

// Write implements net.Conn: it returns once all of p is written, or on
// an error.
func (c *Conn) Write(p []byte) (int, error) {
	v := net.Buffers{p}
	n, err := c.WriteBuffers(&v)
	return int(n), err
}

// WriteBuffers writes every buffer of v with writev(2), consuming v as
// net.Buffers.WriteTo does.
func (c *Conn) WriteBuffers(v *net.Buffers) (int64, error) {
	if !c.acquire() {
		return 0, net.ErrClosed
	}
	defer c.release()
	if err := c.expired(false); err != nil {
		return 0, err
	}
	var total int64
	for consume(v, 0); len(*v) > 0; {
		n, err := rawio.Writev(c.fd, *v)
		if n > 0 {
			total += int64(n)
			consume(v, n)
			continue
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return total, os.NewSyscallError("writev", err)
		}
		if err := c.wait(false); err != nil {
			return total, err
		}
	}
	return total, nil
}

// consume drops the first n bytes of v, and the empty buffers that lead it.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		b := (*v)[0]
		if n < len(b) {
			(*v)[0] = b[n:]
			if len((*v)[0]) > 0 {
				return
			}
		} else {
			n -= len(b)
		}
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}

// ReadMsgUnix reads as (*net.UnixConn).ReadMsgUnix does: a message and its
// control data (the descriptors a peer sent, close-on-exec); the address
// is nil.
func (c *Conn) ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error) {
	if !c.acquire() {
		return 0, 0, 0, nil, net.ErrClosed
	}
	defer c.release()
	if err := c.expired(true); err != nil {
		return 0, 0, 0, nil, err
	}
	for {
		n, oobn, flags, err = rawio.Recvmsg(c.fd, b, oob)
		switch {
		case err == nil && n == 0 && oobn == 0 && len(b) > 0:
			return 0, 0, flags, nil, io.EOF
		case err == nil:
			return n, oobn, flags, nil, nil
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, 0, 0, nil, os.NewSyscallError("recvmsg", err)
		}
		if err := c.wait(true); err != nil {
			return 0, 0, 0, nil, err
		}
	}
}

// WriteMsgUnix writes as (*net.UnixConn).WriteMsgUnix does, to the
// connected peer (addr must be nil).
func (c *Conn) WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error) {
	if addr != nil {
		return 0, 0, errors.New("fdconn: WriteMsgUnix to an address on a connected socket")
	}
	if !c.acquire() {
		return 0, 0, net.ErrClosed
	}
	defer c.release()
	if err := c.expired(false); err != nil {
		return 0, 0, err
	}
	for {
		n, err = unix.SendmsgN(c.fd, b, oob, nil, unix.MSG_NOSIGNAL)
		switch {
		case err == nil:
			return n, len(oob), nil
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, 0, os.NewSyscallError("sendmsg", err)
		}
		if err := c.wait(false); err != nil {
			return 0, 0, err
		}
	}
}

// Close implements net.Conn: goroutines waiting in an operation return
// net.ErrClosed, and the descriptor closes when the last of them is out.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	c.rd.ep.Close() // wakes a waiting read
	c.wr.ep.Close()
	if c.refs == 0 {
		c.closeFds()
	}
	return nil
}

// LocalAddr implements net.Conn.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.setDeadline(t, true, true) }

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, true, false) }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

func (c *Conn) setDeadline(t time.Time, read, write bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	var ns int64
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	// The waiters' epoll files wait with their read deadlines.
	if read {
		c.rdl.Store(ns)
		c.rd.ep.SetReadDeadline(t)
	}
	if write {
		c.wdl.Store(ns)
		c.wr.ep.SetReadDeadline(t)
	}
	return nil
}

// SetWriteBuffer sets the socket's send buffer (SO_SNDBUF).
func (c *Conn) SetWriteBuffer(n int) error {
	if !c.acquire() {
		return net.ErrClosed
	}
	defer c.release()
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n))
}

// SyscallConn implements syscall.Conn. Its Read and Write wait as the
// Conn's own operations do.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	if !r.c.acquire() {
		return net.ErrClosed
	}
	defer r.c.release()
	f(uintptr(r.c.fd))
	return nil
}

func (r rawConn) Read(f func(fd uintptr) bool) error  { return r.do(f, true) }
func (r rawConn) Write(f func(fd uintptr) bool) error { return r.do(f, false) }

func (r rawConn) do(f func(fd uintptr) bool, read bool) error {
	if !r.c.acquire() {
		return net.ErrClosed
	}
	defer r.c.release()
	if err := r.c.expired(read); err != nil {
		return err
	}
	for !f(uintptr(r.c.fd)) {
		if err := r.c.wait(read); err != nil {
			return err
		}
	}
	return nil
}
