package comm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

// readToEnd writes a byte to a new channel name in s, closes it and reads
// it to its end, so that nothing in the space is left unread.
func readToEnd(t *testing.T, ctx context.Context, s *comm.Space, name string) {
	t.Helper()
	w, _ := s.Create(ctx, name)
	w.Write([]byte("x"))
	w.Close(ctx)
	r, _ := s.Attach(ctx, name)
	readAll(t, r)
	r.Close()
	commtest.Eventually(t, 5*time.Second, func() bool {
		info, err := s.Stat(ctx, name)
		return err == nil && info.Sealed
	}, "instance never sealed")
}

// The last user's close deletes a space only when nothing unread is left;
// otherwise the space lives until its lease runs out.
func TestSpaceCloseAndLease(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{Lease: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	ctx := ctxT(t, 20*time.Second)
	c := newClient(t, addr)

	// Read to the end, then closed by its only user: deleted at once.
	s := openSpace(t, c, "tidy")
	readToEnd(t, ctx, s, "ch")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := openSpace(t, c, "tidy")
	if _, err := s2.Stat(ctx, "ch"); !errors.Is(err, comm.ErrNotFound) {
		t.Fatalf("space with nothing unread survived its last close: stat gave %v", err)
	}
	s2.Close(ctx)

	// Unread data keeps the space after its last close...
	s3 := openSpace(t, c, "unread")
	w, _ := s3.Create(ctx, "ch")
	w.Write([]byte("keep me"))
	w.Close(ctx)
	s3.Close(ctx)
	s4 := openSpace(t, c, "unread")
	r, err := s4.Attach(ctx, "ch", comm.NoWait())
	if err != nil {
		t.Fatalf("unread data lost at last close: %v", err)
	}
	if got := string(readAll(t, r)); got != "keep me" {
		t.Fatalf("got %q", got)
	}
	r.Close()

	// ...until the lease reclaims an abandoned space.
	s5 := openSpace(t, c, "abandoned")
	w, _ = s5.Create(ctx, "ch")
	w.Write([]byte("nobody reads this"))
	w.Close(ctx)
	s5.Close(ctx)
	time.Sleep(600 * time.Millisecond) // two leases: the point of the test is the passing of time
	s6 := openSpace(t, c, "abandoned")
	if _, err := s6.Attach(ctx, "ch", comm.NoWait()); !errors.Is(err, comm.ErrNotFound) {
		t.Fatalf("abandoned space not reclaimed after its lease: %v", err)
	}
}

func TestAttributes(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 10*time.Second)
	s := openSpace(t, newClient(t, addr), "attrs")
	w, err := s.Create(ctx, "ch", comm.WithAttrs(map[string]string{"units": "m/s"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetAttr(ctx, w.Info().Instance, "step", "10"); err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	r, err := s.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	if a := r.Info().Attrs; a["units"] != "m/s" || a["step"] != "10" {
		t.Fatalf("attributes %v", a)
	}
	if err := s.SetAttr(ctx, 999, "k", "v"); !errors.Is(err, comm.ErrNotFound) {
		t.Fatalf("attribute of unknown instance: %v", err)
	}
}

// Flush makes every byte written so far durable: a writer that vanishes
// right after it (Detach, as a crash would) loses nothing.
func TestWriterFlush(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 10*time.Second)
	s := openSpace(t, newClient(t, addr), "flush")
	w, err := s.Create(ctx, "ch", comm.WithWriterKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	// A direct reader makes the writer batch small cache writes.
	rd, err := s.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	data := payload(9, 3000)
	for i := 0; i < len(data); i += 100 {
		w.Write(data[i : i+100])
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stat(ctx, "ch")
	if err != nil || info.Length != int64(len(data)) {
		t.Fatalf("after Flush the cache holds %d bytes (%v), want %d", info.Length, err, len(data))
	}
	w.Detach()
	if err := w.Flush(ctx); !errors.Is(err, comm.ErrClosed) {
		t.Fatalf("Flush after Detach: %v", err)
	}
}

// TestSpaceSurvivesCancelledCall: a call on the space's control
// connection cut by its context (which leaves that connection out of
// step, to be replaced) does not make this client leave the space: with
// everything read, its server would otherwise delete the space, data and
// all, under a user that never closed it.
func TestSpaceSurvivesCancelledCall(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "kept")
	readToEnd(t, ctx, s, "ch")

	info, err := s.Stat(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.SetAttr(cancelled, info.Instance, "k", "v"); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetAttr with a cancelled context: %v", err)
	}
	// The next call replaces the control connection and lets the old one
	// go. The server notices that end at its own pace, and what is tested
	// is that nothing follows from it: a margin of time, then the space
	// must still be there, and still ours.
	for range 2 {
		if info, err := s.Stat(ctx, "ch"); err != nil || !info.Sealed {
			t.Fatalf("after a cancelled call: Stat = %+v, %v; want the sealed channel", info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close after a cancelled call: %v", err)
	}
}
