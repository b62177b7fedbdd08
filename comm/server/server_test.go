package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/server"
	"github.com/pispace/pispace/comm/wire"
)

func start(t *testing.T) (*server.Server, string) {
	s, err := server.New(server.Config{MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	return s, l.Addr().String()
}

func hello() []byte {
	return proto.AppendMsg(nil, proto.THello, 1, &proto.Hello{Magic: proto.Magic, Version: proto.Version})
}

// exchange sends b on a fresh connection and returns everything the server
// sent back before closing it.
func exchange(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(b)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	out, _ := io.ReadAll(c)
	return out
}

// awaitError sends b on a fresh connection, keeps it open, and returns the
// first Error frame the server sends.
func awaitError(t *testing.T, addr string, b []byte) proto.Error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(b)
	r := wire.NewReader(c, 1<<20)
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("no error frame before %v", err)
		}
		if f.Type == proto.TError {
			var e proto.Error
			if err := proto.Unmarshal(f.Payload, &e); err != nil {
				t.Fatal(err)
			}
			return e
		}
	}
}

// lastError decodes the last frame of a server's answer, which must be an
// Error frame.
func lastError(t *testing.T, out []byte) proto.Error {
	t.Helper()
	r := wire.NewReader(bytes.NewReader(out), 1<<20)
	var last wire.Frame
	for {
		f, err := r.Next()
		if err != nil {
			break
		}
		last = wire.Frame{Type: f.Type, Req: f.Req, Payload: bytes.Clone(f.Payload)}
	}
	if last.Type != proto.TError {
		t.Fatalf("server's last frame is type %d, want an error (answer %d bytes)", last.Type, len(out))
	}
	var e proto.Error
	if err := proto.Unmarshal(last.Payload, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// healthy is a client writing a channel while bad input hits its server.
type healthy struct {
	cl   *comm.Client
	sp   *comm.Space
	want int
	done chan error
}

// startHealthy starts a client writing n writes of size bytes (a
// millisecond apart when small) on channel "ch" of space "healthy", then
// closing it.
func startHealthy(t *testing.T, ctx context.Context, addr string, n, size int) *healthy {
	t.Helper()
	cl, err := comm.New(comm.Config{Servers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	sp, err := cl.OpenSpace(ctx, "healthy")
	if err != nil {
		t.Fatal(err)
	}
	w, err := sp.Create(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	h := &healthy{cl: cl, sp: sp, want: n * size, done: make(chan error, 1)}
	go func() {
		for i := range n {
			if _, err := w.Write(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
				h.done <- err
				return
			}
			if size < 64<<10 {
				time.Sleep(time.Millisecond)
			}
		}
		h.done <- w.Close(ctx)
	}()
	return h
}

// check waits for the writer to finish and reads the channel back whole.
func (h *healthy) check(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := <-h.done; err != nil {
		t.Fatalf("healthy client failed: %v", err)
	}
	r, err := h.sp.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != int64(h.want) {
		t.Fatalf("healthy channel: %d bytes, %v; want %d", n, err, h.want)
	}
}

// TestBadInput is the test 6: random and truncated frames, an
// oversized length, an unknown space or channel: each gets a clear error,
// only its own connection closes, a healthy client keeps being served, and
// no goroutine is left behind.
func TestBadInput(t *testing.T) {
	before := runtime.NumGoroutine()
	s, addr := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A healthy client streams through a channel the whole time.
	h := startHealthy(t, ctx, addr, 200, 1000)

	t.Run("garbage", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 1))
		for range 20 {
			b := make([]byte, 1+r.IntN(200))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			exchange(t, addr, b) // must not crash the server
		}
	})
	t.Run("bad first frame", func(t *testing.T) {
		e := lastError(t, exchange(t, addr, proto.AppendMsg(nil, proto.TStat, 1, &proto.Stat{Space: "x", Name: "y"})))
		if e.Code != proto.CodeProtocol || !strings.Contains(e.Msg, "hello") {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		b := append(hello(), wire.AppendHeader(nil, proto.TWrite, 0, 0, 1<<30)...)
		e := lastError(t, exchange(t, addr, b))
		if e.Code != proto.CodeTooLarge {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("truncated payload", func(t *testing.T) {
		f := proto.AppendMsg(nil, proto.TOpenSpace, 2, &proto.SpaceReq{Space: "abc"})
		exchange(t, addr, append(hello(), f[:len(f)-2]...)) // server just sees EOF mid-frame
	})
	t.Run("malformed payload", func(t *testing.T) {
		f := wire.AppendFrame(nil, wire.Frame{Type: proto.TCreate, Req: 2, Payload: []byte{0xff, 0xff}})
		e := lastError(t, exchange(t, addr, append(hello(), f...)))
		if e.Code != proto.CodeProtocol {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("unknown frame type", func(t *testing.T) {
		f := wire.AppendFrame(nil, wire.Frame{Type: 200, Req: 2})
		e := lastError(t, exchange(t, addr, append(hello(), f...)))
		if e.Code != proto.CodeProtocol || !strings.Contains(e.Msg, "200") {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("unknown space and channel", func(t *testing.T) {
		c2, err := comm.New(comm.Config{Servers: []string{addr}})
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		s2, err := c2.OpenSpace(ctx, "other")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s2.Attach(ctx, "nope", comm.NoWait()); !errors.Is(err, comm.ErrNotFound) {
			t.Fatalf("unknown channel: %v", err)
		}
		if _, err := s2.Stat(ctx, "nope"); !errors.Is(err, comm.ErrNotFound) {
			t.Fatalf("stat unknown channel: %v", err)
		}
		f := proto.AppendMsg(nil, proto.TCreate, 2, &proto.Create{Space: "never-opened", Name: "x"})
		if e := awaitError(t, addr, append(hello(), f...)); e.Code != proto.CodeUnknownSpace {
			t.Fatalf("unknown space: %+v", e)
		}
	})
	t.Run("write to an instance not created", func(t *testing.T) {
		f := proto.AppendDataHeader(nil, proto.TWrite, 3, "healthy", 1, 0, 3)
		if e := awaitError(t, addr, append(append(hello(), f...), "abc"...)); e.Code != proto.CodeNotWriter {
			t.Fatalf("got %+v", e)
		}
	})

	h.check(t, ctx)
	h.cl.Close()
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestCloseIsIdempotentAndServeReturns(t *testing.T) {
	s, err := server.New(server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	done := make(chan error)
	go func() { done <- s.Serve(l) }()
	s.Close()
	s.Close()
	if err := <-done; !errors.Is(err, server.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(l2); !errors.Is(err, server.ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}
