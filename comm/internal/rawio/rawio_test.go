package rawio

import (
	"bytes"
	"errors"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopyAt: Pread and Pwrite copy at most Max bytes a call, errors come
// back as errnos, and nothing is copied for an empty buffer.
func TestCopyAt(t *testing.T) {
	fd, err := unix.MemfdCreate("pispace-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	p := make([]byte, 2*Max+Max/2)
	for i := range p {
		p[i] = byte(i*7 + i>>12)
	}
	if n, err := Pwrite(fd, p, 100); err != nil || n != Max {
		t.Fatalf("pwrite of %d bytes: %d, %v; want %d", len(p), n, err, Max)
	}
	for done := 0; done < len(p); {
		n, err := Pwrite(fd, p[done:], int64(100+done))
		if err != nil || n <= 0 || n > Max {
			t.Fatalf("pwrite at %d: %d, %v", done, n, err)
		}
		done += n
	}
	got := make([]byte, len(p))
	for done := 0; done < len(got); {
		n, err := Pread(fd, got[done:], int64(100+done))
		if err != nil || n <= 0 || n > Max {
			t.Fatalf("pread at %d: %d, %v", done, n, err)
		}
		done += n
	}
	if !bytes.Equal(got, p) {
		t.Fatal("bytes read back differ from those written")
	}
	if n, err := Pread(fd, nil, 0); n != 0 || err != nil {
		t.Fatalf("pread into nothing: %d, %v", n, err)
	}
	if _, err := Pread(-1, got, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("pread of a bad descriptor: %v, want EBADF", err)
	}
	if _, err := Pwrite(-1, p, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("pwrite to a bad descriptor: %v, want EBADF", err)
	}
}

// TestSocketCalls: on a non-blocking socket pair, Writev writes at most
// MaxIovecs buffers and Max bytes, skipping empty ones; Read and Recvmsg
// read at most Max bytes, report EAGAIN when there is nothing, and a
// closed peer as 0 bytes; errors are errnos.
func TestSocketCalls(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fds[0], fds[1]
	defer unix.Close(b)
	unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 8*Max)
	unix.SetsockoptInt(b, unix.SOL_SOCKET, unix.SO_RCVBUF, 8*Max)
	if _, err := Read(b, make([]byte, 8)); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	var v net.Buffers
	var want []byte
	for i := range MaxIovecs + 10 {
		p := []byte{byte(i)}
		v = append(v, nil, p) // the empty ones do not count
		want = append(want, p...)
	}
	if n, err := Writev(a, v); n != MaxIovecs || err != nil {
		t.Fatalf("writev of %d one-byte buffers: %d, %v; want %d", MaxIovecs+10, n, err, MaxIovecs)
	}
	big := bytes.Repeat([]byte{9}, Max+5)
	if n, err := Writev(a, net.Buffers{big}); n != Max || err != nil {
		t.Fatalf("writev of %d bytes: %d, %v; want %d", len(big), n, err, Max)
	}
	want = append(want[:MaxIovecs], big[:Max]...)
	got := make([]byte, 0, len(want))
	buf := make([]byte, 2*Max)
	for i := 0; len(got) < len(want); i++ {
		var n int
		var err error
		if i%2 == 0 {
			n, err = Read(b, buf)
		} else {
			n, _, _, err = Recvmsg(b, buf, nil)
		}
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil || n <= 0 || n > Max {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes read differ from those written")
	}
	unix.Close(a)
	if n, err := Read(b, buf); n != 0 || err != nil {
		t.Fatalf("read after the peer closed: %d, %v", n, err)
	}
	if _, err := Read(-1, buf); !errors.Is(err, unix.EBADF) {
		t.Fatalf("read of a bad descriptor: %v, want EBADF", err)
	}
	if _, _, _, err := Recvmsg(-1, buf, nil); !errors.Is(err, unix.EBADF) {
		t.Fatalf("recvmsg of a bad descriptor: %v, want EBADF", err)
	}
}
