package shm

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRawCopy: the raw pread and pwrite copy at most rawCopyMax bytes a
// call, pwriteAll loops to the end, errors come back as errnos, and
// nothing is copied for an empty buffer.
func TestRawCopy(t *testing.T) {
	fd, err := unix.MemfdCreate("pispace-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	p := make([]byte, 2*rawCopyMax+rawCopyMax/2)
	for i := range p {
		p[i] = byte(i*7 + i>>12)
	}
	if n, err := pwrite(fd, p, 100); err != nil || n != rawCopyMax {
		t.Fatalf("pwrite of %d bytes: %d, %v; want %d", len(p), n, err, rawCopyMax)
	}
	if err := pwriteAll(fd, p, 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(p))
	for done := 0; done < len(got); {
		n, err := pread(fd, got[done:], int64(100+done))
		if err != nil || n <= 0 || n > rawCopyMax {
			t.Fatalf("pread at %d: %d, %v", done, n, err)
		}
		done += n
	}
	if !bytes.Equal(got, p) {
		t.Fatal("bytes read back differ from those written")
	}
	if n, err := pread(fd, nil, 0); n != 0 || err != nil {
		t.Fatalf("pread into nothing: %d, %v", n, err)
	}
	if _, err := pread(-1, got, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("pread of a bad descriptor: %v, want EBADF", err)
	}
	if err := pwriteAll(-1, p, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("pwriteAll to a bad descriptor: %v, want EBADF", err)
	}
}
