package comm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/internal/fdconn"
	"github.com/pispace/pispace/comm/internal/local"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/server"
)

// These tests cover the same-host transport (Unix sockets found through
// the servers' welcome and the writers' advertised endpoints) and the
// busy-polling reads.

func needHost(t *testing.T) {
	if local.HostID() == "" {
		t.Skip("no host identity: every connection is TCP")
	}
}

func isUnix(c *conn) bool {
	_, ok := c.c.(shm.UnixConn)
	return ok
}

// exchange writes payload on a new channel of sw and reads it back
// through sr on the direct path, returning both ends (closed).
func exchange(t *testing.T, sw, sr *Space, name string, payload []byte) (*Writer, *Reader) {
	t.Helper()
	w, r := openPair(t, sw, sr, name)
	got := make([]byte, len(payload))
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, got)
		errc <- err
	}()
	if _, err := w.Write(payload); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload differs")
	}
	return w, r
}

// TestSameHostUsesUnixSockets: once a client has heard a server's welcome,
// its connections to that server, and its readers' connections to writers
// of this host, are Unix sockets; the bytes are the same.
func TestSameHostUsesUnixSockets(t *testing.T) {
	needHost(t)
	sw, sr, _, _ := pipeline(t, nil)
	if isUnix(sw.ctl) {
		t.Fatal("the first connection to a server is TCP: its address is all the client knows")
	}
	w, r := exchange(t, sw, sr, "ux", bytesOf(3, 300<<10))
	defer r.Close()
	if !isUnix(w.c) {
		t.Errorf("writer's cache connection is %T, want a Unix socket", w.c.c)
	}
	if r.src != srcDirect || r.dc == nil || !isUnix(r.dc) {
		t.Errorf("reader on source %d with direct connection %v, want a direct Unix socket", r.src, r.dc)
	}
	// The direct connection is out of the runtime's poller (directConn);
	// the server's stays in it.
	if _, ok := r.dc.c.(*fdconn.Conn); !ok {
		t.Errorf("reader's direct connection is %T, want an fdconn.Conn", r.dc.c)
	}
	if _, ok := w.c.c.(*net.UnixConn); !ok {
		t.Errorf("writer's cache connection is %T, want a *net.UnixConn", w.c.c)
	}
	if err := w.Close(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestDialerMeansTCP: a client given a Dialer makes every connection
// through it, so that a fault-injecting dialer sees them all.
func TestDialerMeansTCP(t *testing.T) {
	needHost(t)
	var dials atomic.Int32
	sw, sr, _, _ := pipeline(t, func(c *Config) {
		c.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	})
	w, r := exchange(t, sw, sr, "tcp", bytesOf(4, 64<<10))
	defer r.Close()
	defer w.Close(testCtx(t))
	if isUnix(w.c) || r.dc == nil || isUnix(r.dc) {
		t.Fatal("a connection bypassed the dialer")
	}
	if dials.Load() < 4 { // two spaces, the writer, the reader's attach and direct connection
		t.Fatalf("%d dials through the dialer", dials.Load())
	}
}

// TestServerWithoutLocalSocket: a server with Local "off" welcomes
// clients with no endpoint; they stay on TCP.
func TestServerWithoutLocalSocket(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{Local: "off"})
	c, err := New(Config{Servers: []string{addr}, DirectAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.OpenSpace(testCtx(t), "tcp-only")
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(testCtx(t), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(testCtx(t))
	if isUnix(w.c) {
		t.Fatal("Unix socket used against a server that has none")
	}
}

// TestForeignEndpointUsesTCP: a Unix endpoint of another host (or network
// namespace) is never dialled.
func TestForeignEndpointUsesTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	nc, err := dialEndpoints(testCtx(t), Config{}, l.Addr().String()+",unix:another.1:@pispace-nowhere")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, ok := nc.(*net.TCPConn); !ok {
		t.Fatalf("dialled %T, want TCP", nc)
	}
}

// TestWatcher: one registration serves every read with the same context
// (no allocation per read), the context's end cuts a blocked read, and a
// read begun after the end does not start.
func TestWatcher(t *testing.T) {
	a, peer := net.Pipe()
	defer a.Close()
	c := newConn(a, 1<<20, 0)
	var w watcher
	defer w.release()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := testing.AllocsPerRun(100, func() {
		if !w.begin(ctx, c) || w.end(ctx) {
			t.Fatal("a live context cut the read")
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per read with the same context", allocs)
	}

	if !w.begin(ctx, c) {
		t.Fatal("begin refused a live context")
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	buf := make([]byte, 4)
	if _, err := c.c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read returned %v, want the cut's deadline error", err)
	}
	if !w.end(ctx) {
		t.Fatal("end does not report the cut")
	}
	if w.begin(ctx, c) {
		t.Fatal("a read began on an ended context")
	}
	peer.Close()
}
