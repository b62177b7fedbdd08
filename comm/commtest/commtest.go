// Package commtest provides helpers for tests of code that uses package
// comm: an in-process server on loopback, and a dialer that injects faults
// into the connections it makes.
package commtest

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/server"
)

// StartServer starts a comm server on 127.0.0.1:0 with cfg and stops it
// when the test ends. It returns the server and its address.
func StartServer(t testing.TB, cfg server.Config) (*server.Server, string) {
	t.Helper()
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, server.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return s, l.Addr().String()
}

// CutDialer dials TCP, and cuts (closes) a connection to an address
// accepted by Match once more than After bytes have been read from it.
type CutDialer struct {
	Match func(addr string) bool
	After int64

	mu    sync.Mutex
	conns []*cutConn
	cut   atomic.Int64 // connections cut so far
	read  atomic.Int64 // bytes read through matched connections
}

// Dial implements comm.Dialer.
func (d *CutDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil || d.Match == nil || !d.Match(addr) {
		return c, err
	}
	cc := &cutConn{Conn: c, d: d}
	d.mu.Lock()
	d.conns = append(d.conns, cc)
	d.mu.Unlock()
	return cc, nil
}

// Cuts reports how many connections were cut.
func (d *CutDialer) Cuts() int64 { return d.cut.Load() }

// BytesRead reports the bytes read through matched connections.
func (d *CutDialer) BytesRead() int64 { return d.read.Load() }

type cutConn struct {
	net.Conn
	d    *CutDialer
	n    int64
	once sync.Once
}

func (c *cutConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	c.d.read.Add(int64(n))
	if c.n > c.d.After {
		c.once.Do(func() {
			c.d.cut.Add(1)
			c.Conn.Close()
		})
	}
	return n, err
}

// Eventually polls cond every few milliseconds until it holds or total
// elapses, then fails the test with msg.
func Eventually(t testing.TB, total time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", total, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
