package comm

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/commtest"
)

// These tests cover the reuse of connections to a server: a writer's
// after its Close was answered, a reader's after the sealed end.

// TestChannelsReuseConnections: once a channel has been written, closed,
// read and closed, the next channels of the space use the same
// connections: no dial, and the bytes are right.
func TestChannelsReuseConnections(t *testing.T) {
	var dials atomic.Int32
	sw, sr, _, _ := pipeline(t, func(c *Config) {
		c.DirectAddr = "off"
		c.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	})
	round := func(i int) {
		t.Helper()
		ctx := testCtx(t)
		payload := bytesOf(byte(i), 100<<10+i)
		publish(t, sw, "reuse", payload)
		r, err := sr.Attach(ctx, "reuse")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != string(payload) {
			t.Fatalf("round %d: read %d bytes (%v), want the %d written", i, len(got), err, len(payload))
		}
		r.Close()
	}
	round(0)
	after := dials.Load()
	for i := 1; i < 5; i++ {
		round(i)
	}
	if n := dials.Load() - after; n != 0 {
		t.Fatalf("%d dials for four more channels, want none (connections reused)", n)
	}
}

// TestDirectReaderLeavesCacheConnection: a reader that stops reading on
// the direct path, before the end, has no stream on its cache connection,
// which goes back to the pool; one that stops in the middle of a cache
// stream closes it.
func TestDirectReaderLeavesCacheConnection(t *testing.T) {
	sw, sr, _, rcl := pipeline(t, nil)
	ctx := testCtx(t)
	w, r := openPair(t, sw, sr, "live")
	defer w.Close(ctx)
	w.Write([]byte("hello"))
	var b [5]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		t.Fatal(err)
	}
	if r.src != srcDirect {
		t.Fatalf("reader on source %d, want the direct path", r.src)
	}
	cc := r.cc
	r.Close()
	if got := rcl.takeIdle(sr.addr, false); got != cc {
		t.Fatal("the cache connection of a reader on the direct path was not pooled")
	}

	// A reader in the middle of a cache stream: its connection is busy.
	publish(t, sw, "sealed", bytesOf(3, 4<<20))
	r2, err := sr.Attach(ctx, "sealed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r2, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cc2 := r2.cc
	r2.Close()
	if got := rcl.takeIdle(sr.addr, false); got == cc2 {
		t.Fatal("the connection of a reader stopped mid-stream was pooled")
	}
}

// TestDetachedWriterConnectionNotReused: a writer that detaches leaves the
// instance open on its session, so its connection is closed, not pooled.
func TestDetachedWriterConnectionNotReused(t *testing.T) {
	sw, _, cl, _ := pipeline(t, func(c *Config) { c.DirectAddr = "off" })
	w, err := sw.Create(testCtx(t), "detach")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abc"))
	w.Detach()
	if c := cl.takeIdle(sw.addr, false); c != nil {
		t.Fatal("a detached writer's connection went to the pool")
	}
}

// TestReusable: an idle connection is reusable while its peer is quiet;
// not once the peer has sent something nobody asked for, or closed it.
func TestReusable(t *testing.T) {
	c, peer := tcpPair(t)
	if !c.reusable() {
		t.Fatal("a quiet connection is not reusable")
	}
	peer.Write([]byte{1})
	commtest.Eventually(t, 5*time.Second, func() bool { return !c.reusable() }, "a connection with unread bytes stays reusable")
	c2, peer2 := tcpPair(t)
	peer2.Close()
	commtest.Eventually(t, 5*time.Second, func() bool { return !c2.reusable() }, "a connection its peer closed stays reusable")
}

// TestClosedDirectReaderPoolsItsConnection: a reader closed before the
// end of its direct stream drains it briefly: when its writer has closed,
// the end of stream comes and the connection to the writer is pooled; when
// the writer goes on, it is closed.
func TestClosedDirectReaderPoolsItsConnection(t *testing.T) {
	sw, sr, _, rcl := pipeline(t, nil)
	ctx := testCtx(t)
	for _, writerCloses := range []bool{true, false} {
		name := fmt.Sprint("drain-", writerCloses)
		w, r := openPair(t, sw, sr, name)
		w.Write(bytesOf(1, 200<<10))
		if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil { // the rest stays unread
			t.Fatal(err)
		}
		if r.src != srcDirect {
			t.Fatalf("reader on source %d, want the direct path", r.src)
		}
		if writerCloses {
			w.mu.Lock()
			sk := w.sinks[0]
			w.mu.Unlock()
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			<-sk.done // the end of stream is on its way to the reader
		}
		dc, addr := r.dc, r.directAddr
		r.Close()
		got := rcl.takeIdle(addr, false)
		if writerCloses && got != dc {
			t.Fatal("a drained direct connection was not pooled")
		}
		if !writerCloses && got == dc {
			t.Fatal("a direct connection still carrying a stream was pooled")
		}
		if got != nil {
			got.close()
		}
		w.Close(ctx)
	}
}

// TestPoolKeepsRingsForWriters: a writer takes the idle connection that
// has its ring to the server, a reader the one that has the server's ring
// to it or else one with none, whichever was pooled last, so that rings
// (which count against the process's budget while their connections
// live) stay with as few connections as need them.
func TestPoolKeepsRingsForWriters(t *testing.T) {
	needHost(t)
	ctx := testCtx(t)
	sw, _, _, _ := pipeline(t, nil)
	w0, w1 := mustCreate(t, sw, "zero"), mustCreate(t, sw, "first")
	w0c, w1c := w0.c, w1.c
	mustClose(t, w0)
	mustWrite(t, w1, bytesOf(1, 3<<20))
	if err := w1.Flush(ctx); err != nil { // the connection's next write offers a ring
		t.Fatal(err)
	}
	mustClose(t, w1)
	if w1c.fitness(true) != 2 || w0c.fitness(true) != 1 {
		t.Fatal("want a ring to the server after 3 MiB, and none on a connection that carried nothing")
	}
	// Pooled: w0's connection, then w1's.
	r1 := mustAttach(t, sw, "first")
	if r1.cc != w0c {
		t.Fatal("a reader did not get the idle connection without a ring")
	}
	if _, err := io.Copy(io.Discard, r1); err != nil {
		t.Fatal(err)
	}
	r1.Close()
	if w0c.fitness(false) != 2 {
		t.Fatal("the reader's connection has no ring from the server after 3 MiB")
	}
	// Pooled: w1's connection, then the reader's.
	w2 := mustCreate(t, sw, "second")
	if w2.c != w1c {
		t.Fatal("a writer did not get the idle connection with a ring")
	}
	mustWrite(t, w2, []byte("x"))
	mustClose(t, w2)
	// Pooled: the reader's connection, then the writer's.
	r3 := mustAttach(t, sw, "second")
	defer r3.Close()
	if r3.cc != w0c {
		t.Fatal("a reader did not get the idle connection with the server's ring to it")
	}
}
