// Package unixtest gives tests a connected pair of Unix sockets: the
// transport that carries shared rings. It is its own package so that the
// tests of package shm and of package comm (which shm must not import,
// nor anything that imports shm) share it.
package unixtest

import (
	"net"
	"path/filepath"
	"testing"
)

// Pair returns both ends of a connected Unix stream socket, closed when
// the test ends.
func Pair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := net.DialUnix("unix", nil, l.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AcceptUnix()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}
