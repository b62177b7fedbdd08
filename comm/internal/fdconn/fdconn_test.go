package fdconn

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// pair returns two connected Conns over a Unix stream socket pair.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "sock")
		nc, err := net.FileConn(f)
		f.Close() // FileConn dup'd it
		if err != nil {
			t.Fatal(err)
		}
		if conns[i], err = New(nc.(*net.UnixConn)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// within fails the test unless f returns within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

// TestReadWrite: bytes written in pieces larger than the socket's buffers
// arrive whole and in order while the reader waits for them, and the
// peer's Close reads as EOF.
func TestReadWrite(t *testing.T) {
	a, b := pair(t)
	src := make([]byte, 4<<20)
	for i := range src {
		src[i] = byte(i*7 + i>>10)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := a.Write(src)
		if err == nil {
			err = a.Close()
		}
		errc <- err
	}()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("read %d bytes (equal %v), %v", len(got), bytes.Equal(got, src), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestWriteBuffers: writev of many buffers, some empty, writes them all
// and consumes the slice.
func TestWriteBuffers(t *testing.T) {
	a, b := pair(t)
	var want []byte
	var v net.Buffers
	for i := range 3000 { // past one writev's buffers and bytes (rawio.MaxIovecs, rawio.Max)
		p := bytes.Repeat([]byte{byte(i)}, i%700)
		if i == 1500 {
			p = bytes.Repeat([]byte{1, 2, 3}, rawio.Max)
		}
		v = append(v, p)
		want = append(want, p...)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := a.WriteBuffers(&v)
		if err == nil && (n != int64(len(want)) || len(v) != 0) {
			err = errors.New("short writev, or the buffers not consumed")
		}
		a.Close()
		errc <- err
	}()
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d of %d bytes, %v", len(got), len(want), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestDeadlines: a read with a deadline in the future times out then; one
// waiting when the deadline is moved into the past returns at once; past
// its deadline a read fails even with bytes to read, and reads them once
// the deadline is cleared; so do writes. The error is a timeout, as a
// net.Conn's.
func TestDeadlines(t *testing.T) {
	a, b := pair(t)
	buf := make([]byte, 8)
	b.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	start := time.Now()
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("the read timed out after %v, before its deadline", d)
	}
	b.SetReadDeadline(time.Time{})
	within(t, 10*time.Second, "a read cut by a deadline moved into the past", func() {
		go func() {
			time.Sleep(20 * time.Millisecond)
			b.SetReadDeadline(time.Unix(1, 0))
		}()
		var ne net.Error
		if _, err := b.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("read cut by its deadline: %v, want a timeout", err)
		}
	})
	a.Write([]byte("after"))
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline with bytes waiting: %v, want a timeout as a net.Conn's", err)
	}
	b.SetReadDeadline(time.Time{})
	if n, err := b.Read(buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("read after the deadline was cleared: %q, %v", buf[:n], err)
	}
	a.SetWriteDeadline(time.Unix(1, 0))
	if _, err := a.Write(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past its deadline: %v", err)
	}
}

// TestCloseWakesWaiters: Close returns a read and a write that are waiting
// (the write on a full socket) with net.ErrClosed, and every later call
// fails the same way.
func TestCloseWakesWaiters(t *testing.T) {
	a, _ := pair(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, err := a.Read(make([]byte, 8))
		errs <- err
	}()
	go func() {
		defer wg.Done()
		_, err := a.Write(make([]byte, 64<<20)) // the peer never reads
		errs <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	within(t, 10*time.Second, "the waiting read and write", wg.Wait)
	for range 2 {
		if err := <-errs; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("a waiting call after Close: %v, want net.ErrClosed", err)
		}
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if err := a.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SetDeadline after Close: %v", err)
	}
}

// TestDescriptorsTravel: a descriptor written with WriteMsgUnix is read
// with ReadMsgUnix, close-on-exec, with its bytes.
func TestDescriptorsTravel(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, _, err := a.WriteMsgUnix([]byte("fd"), unix.UnixRights(int(w.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 8), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := b.ReadMsgUnix(buf, oob)
	if err != nil || string(buf[:n]) != "fd" {
		t.Fatalf("ReadMsgUnix: %q, %v", buf[:n], err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %d, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("descriptors: %v, %v", fds, err)
	}
	got := os.NewFile(uintptr(fds[0]), "w")
	defer got.Close()
	if flags, err := unix.FcntlInt(got.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("received descriptor not close-on-exec: %#x, %v", flags, err)
	}
	got.Write([]byte("x"))
	one := make([]byte, 1)
	if _, err := r.Read(one); err != nil || one[0] != 'x' {
		t.Fatalf("the received descriptor is not the pipe: %q, %v", one, err)
	}
	if _, _, err := a.WriteMsgUnix(nil, nil, &net.UnixAddr{Name: "x", Net: "unix"}); err == nil {
		t.Fatal("WriteMsgUnix to an address on a connected socket")
	}
}

// TestRawConn: the RawConn's Read calls f again once the socket is
// readable, and Control sees the descriptor.
func TestRawConn(t *testing.T) {
	a, b := pair(t)
	rc, err := b.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Write([]byte("raw"))
	}()
	buf := make([]byte, 8)
	var n, calls int
	if err := rc.Read(func(fd uintptr) bool {
		calls++
		var err error
		n, err = unix.Read(int(fd), buf)
		return err != unix.EAGAIN
	}); err != nil || string(buf[:n]) != "raw" || calls < 2 {
		t.Fatalf("RawConn.Read: %q after %d calls, %v", buf[:n], calls, err)
	}
	var typ int
	rc.Control(func(fd uintptr) { typ, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE) })
	if typ != unix.SOCK_STREAM {
		t.Fatalf("Control saw socket type %d", typ)
	}
	if err := b.SetWriteBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
}

// TestNewLeavesThePoller: New closes the net.Conn it took the socket
// from, and the Conn keeps the connection.
func TestNewLeavesThePoller(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	f := os.NewFile(uintptr(fds[0]), "sock")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(nc.(*net.UnixConn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := nc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the net.Conn after New: %v, want closed", err)
	}
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := unix.Read(fds[1], one); err != nil || one[0] != 'y' {
		t.Fatalf("peer read %q, %v", one, err)
	}
}
