package shm

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// TestPwriteAll: pwriteAll writes past one raw call's rawio.Max bytes to
// the end, and an error comes back as its errno.
func TestPwriteAll(t *testing.T) {
	fd, err := unix.MemfdCreate("pispace-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	p := make([]byte, 2*rawio.Max+rawio.Max/2)
	for i := range p {
		p[i] = byte(i*7 + i>>12)
	}
	if err := pwriteAll(fd, p, 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	if n, err := unix.Pread(fd, got, 100); n != len(p) || err != nil {
		t.Fatalf("pread: %d, %v", n, err)
	}
	if !bytes.Equal(got, p) {
		t.Fatal("bytes read back differ from those written")
	}
	if err := pwriteAll(-1, p, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("pwriteAll to a bad descriptor: %v, want EBADF", err)
	}
}
