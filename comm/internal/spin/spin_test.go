package spin

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// spinPair returns a spinning reader over one end of a Unix socket pair
// and the other end.
func spinPair(t *testing.T, budget time.Duration) (*Reader, net.Conn) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	rc, err := a.(*net.UnixConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return &Reader{nc: a, raw: syscall.Read, rc: rc, budget: budget}, b
}

// TestSpinReader: bytes arriving within and after the spin budget are
// read, a spin that finds nothing makes the next reads park at once
// (doubling with each miss), a hit resets that, a deadline still cuts a
// read, and the peer's close is io.EOF.
func TestSpinReader(t *testing.T) {
	s, peer := spinPair(t, 200*time.Microsecond)
	buf := make([]byte, 16)
	read := func(want string) {
		t.Helper()
		if n, err := s.Read(buf); err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}
	late := func(msg string) {
		go func() {
			time.Sleep(20 * time.Millisecond) // well past the budget: the read parks
			peer.Write([]byte(msg))
		}()
	}

	peer.Write([]byte("now"))
	read("now")
	if s.misses != 0 || s.skip != 0 {
		t.Fatalf("after a hit: misses %d skip %d", s.misses, s.skip)
	}
	late("later")
	read("later")
	if s.misses != 1 || s.skip != 1 {
		t.Fatalf("after one miss: misses %d skip %d, want 1 1", s.misses, s.skip)
	}
	late("parked") // this read does not spin
	read("parked")
	late("again") // this one spins and misses again
	read("again")
	if s.misses != 2 || s.skip != 2 {
		t.Fatalf("after two misses: misses %d skip %d, want 2 2", s.misses, s.skip)
	}
	for range 2 {
		peer.Write([]byte("x"))
		read("x")
	}
	peer.Write([]byte("hit"))
	read("hit")
	if s.misses != 0 {
		t.Fatalf("a hit leaves misses at %d", s.misses)
	}

	s.nc.(net.Conn).SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a deadline error", err)
	}
	s.nc.(net.Conn).SetReadDeadline(time.Time{})

	peer.Close()
	if _, err := s.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
}
