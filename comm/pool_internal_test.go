package comm

import (
	"context"
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
		w, err := sw.Create(ctx, "reuse")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(payload); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
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
	if c := cl.takeIdle(sw.addr); c != nil {
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
