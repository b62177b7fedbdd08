package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/internal/shm"
	"github.com/pispace/pispace/comm/wire"
)

// startUnix starts a server on a Unix socket of the test's directory and
// returns its TCP address and the socket.
func startUnix(t *testing.T) (string, *net.UnixAddr) {
	t.Helper()
	s, addr := start(t)
	t.Cleanup(func() { s.Close() })
	ua := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"}
	l, err := net.ListenUnix("unix", ua)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	return addr, ua
}

// unixError sends the hello, then (unless early) shm.After bytes of
// padding, then offers rings rings with their descriptors, then sends b;
// it returns the first error frame the server sends and checks that the
// server closes the connection after it.
func unixError(t *testing.T, ua *net.UnixAddr, early bool, rings int, b []byte) proto.Error {
	t.Helper()
	c, err := net.DialUnix("unix", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(hello())
	// A ring may be offered only after shm.After bytes (the server reads
	// descriptors only from a share of that on): cancels of nothing, which
	// get no answer, make up the distance.
	if !early {
		c.Write(padding())
	}
	for range rings {
		tx, err := shm.NewTx(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		if err := tx.Offer(c, proto.AppendMsg(nil, proto.TRing, 0, nil)); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(b)
	r := wire.NewReader(c, 1<<20)
	var e *proto.Error
	for {
		f, err := r.Next()
		if err != nil {
			if e == nil {
				t.Fatalf("no error frame before %v", err)
			}
			if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the error: %v, want the server to close", err)
			}
			return *e
		}
		if f.Type == proto.TError && e == nil {
			e = new(proto.Error)
			if err := proto.Unmarshal(f.Payload, e); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// padding returns shm.After bytes of frames the server answers with
// nothing.
func padding() []byte {
	var b []byte
	for len(b) < shm.After {
		b = proto.AppendMsg(b, proto.TCancel, 0, &proto.Cancel{Req: 1 << 30})
	}
	return b
}

// TestBadRingInput: misuse of shared rings (offers without descriptors or
// over TCP, a second offer, references before a ring or outside it, flags
// where they mean nothing) closes that one connection with a protocol
// error; a client using a ring meanwhile is served throughout.
func TestBadRingInput(t *testing.T) {
	addr, ua := startUnix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h := startHealthy(t, ctx, addr, 64, 256<<10) // large writes: through a ring

	ringFrame := proto.AppendMsg(nil, proto.TRing, 0, nil)
	shared := func(pos uint64, n int) []byte {
		return proto.AppendSharedData(nil, proto.TWrite, 5, "healthy", 1, 0, pos, n)
	}
	for _, c := range []struct {
		name  string
		early bool
		rings int
		b     []byte
		want  string
	}{
		{"offer without descriptors", false, 0, ringFrame, "without its descriptors"},
		{"offer before shm.After bytes", true, 1, nil, "without its descriptors"},
		{"second offer", false, 2, nil, "second shared ring"},
		{"shared data before a ring", false, 0, shared(0, 100), "before any shared ring"},
		{"reference past the ring", false, 1, shared(0, 2<<20), "bad reference"},
		{"reference wrapping the ring", false, 1, shared(1<<20-10, 100), "bad reference"},
		{"empty reference", false, 1, shared(0, 0), "shared data reference"},
		{"flags on a control frame", false, 0, wire.AppendFrame(nil, wire.Frame{Type: proto.TOpenSpace, Flags: proto.FlagShared, Req: 2,
			Payload: proto.AppendMsg(nil, proto.TOpenSpace, 2, &proto.SpaceReq{Space: "x"})[wire.HeaderSize:]}), "flags"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := unixError(t, ua, c.early, c.rings, c.b)
			if e.Code != proto.CodeProtocol || !strings.Contains(e.Msg, c.want) {
				t.Fatalf("got %+v, want a protocol error saying %q", e, c.want)
			}
		})
	}
	t.Run("offer over TCP", func(t *testing.T) {
		e := lastError(t, exchange(t, addr, append(hello(), ringFrame...)))
		if e.Code != proto.CodeProtocol || !strings.Contains(e.Msg, "TCP") {
			t.Fatalf("got %+v", e)
		}
	})
	h.check(t, ctx)
}
