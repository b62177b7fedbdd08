package comm_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, addr string, mod ...func(*comm.Config)) *comm.Client {
	t.Helper()
	cfg := comm.Config{Servers: []string{addr}}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := comm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func openSpace(t *testing.T, c *comm.Client, name string) *comm.Space {
	t.Helper()
	s, err := c.OpenSpace(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func readAll(t *testing.T, r *comm.Reader) []byte {
	t.Helper()
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil {
		t.Fatalf("reading: %v", err)
	}
	return out.Bytes()
}

func TestLateReaderReadsFromCache(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	want := payload(1, 3<<20+17)
	w := openSpace(t, newClient(t, addr), "late")
	wr, err := w.Create(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wr.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := openSpace(t, newClient(t, addr), "late").Attach(ctx, "data")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, differ from the %d written", len(got), len(want))
	}
}

func TestDirectPathWhileWriting(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	sw := openSpace(t, newClient(t, addr), "live")
	counting := &commtest.CutDialer{Match: func(string) bool { return true }, After: 1 << 62}
	var writerAddr string
	sr := openSpace(t, newClient(t, addr, func(c *comm.Config) { c.Dialer = counting.Dial }), "live")
	wr, err := sw.Create(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	_ = writerAddr
	r, err := sr.Attach(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	want := payload(2, 1<<20)
	got := make(chan []byte, 1)
	go func() {
		var out bytes.Buffer
		io.Copy(&out, r)
		got <- out.Bytes()
	}()
	for i := 0; i < len(want); i += 4096 {
		if _, err := wr.Write(want[i : i+4096]); err != nil {
			t.Fatal(err)
		}
	}
	if err := wr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d identical", len(b), len(want))
	}
}

// TestDirectLinkCut: the direct link is cut mid-stream by a faulty network
// (test 3 of the issue): the writer neither blocks nor errors, and the
// reader resumes from the cache, byte-identical.
func TestDirectLinkCut(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	sw := openSpace(t, newClient(t, addr), "cut")
	cutter := &commtest.CutDialer{Match: func(a string) bool { return a != addr }, After: 300 << 10}
	sr := openSpace(t, newClient(t, addr, func(c *comm.Config) { c.Dialer = cutter.Dial }), "cut")
	wr, err := sw.Create(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sr.Attach(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	want := payload(3, 4<<20)
	got := make(chan []byte, 1)
	errc := make(chan error, 1)
	go func() {
		var out bytes.Buffer
		_, err := io.Copy(&out, r)
		errc <- err
		got <- out.Bytes()
	}()
	// Wait until the reader is on the direct path before streaming.
	commtest.Eventually(t, 10*time.Second, func() bool {
		if _, err := wr.Write(want[:0]); err != nil {
			t.Fatal(err)
		}
		return cutter.BytesRead() > 0
	}, "reader never dialled the writer")
	for i := 0; i < len(want); i += 8192 {
		if _, err := wr.Write(want[i : i+8192]); err != nil {
			t.Fatalf("writer failed at %d: %v", i, err)
		}
	}
	if err := wr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d identical", len(b), len(want))
	}
	if cutter.Cuts() == 0 {
		t.Fatal("the direct link was never cut: the test proved nothing")
	}
}

func TestFIFOAndMulticast(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "fifo")
	for i, text := range []string{"first", "second"} {
		w, err := s.Create(ctx, "name")
		if err != nil {
			t.Fatal(err)
		}
		if w.Info().Instance != uint64(i+1) {
			t.Fatalf("instance %d, want %d", w.Info().Instance, i+1)
		}
		w.Write([]byte(text))
		if err := w.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Two readers attach the oldest unread instance: both get all of it.
	r1, err := s.Attach(ctx, "name")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Attach(ctx, "name")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := string(readAll(t, r1)), string(readAll(t, r2)); a != "first" || b != "first" {
		t.Fatalf("readers got %q and %q, want first twice", a, b)
	}
	// The first instance is now read: the next attach gets the second.
	r3, err := s.Attach(ctx, "name")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, r3)); got != "second" {
		t.Fatalf("third attach got %q, want second", got)
	}
	// AttachAny still returns the oldest.
	r4, err := s.AttachAny(ctx, "name")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, r4)); got != "first" {
		t.Fatalf("AttachAny got %q, want first", got)
	}
}

func TestAttachWaitsForCreate(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "wait")
	type res struct {
		b   []byte
		err error
	}
	out := make(chan res, 2)
	attached := make(chan struct{}, 2)
	for range 2 {
		go func() {
			r, err := s.Attach(ctx, "later")
			attached <- struct{}{}
			if err != nil {
				out <- res{err: err}
				return
			}
			b, err := io.ReadAll(r)
			out <- res{b, err}
		}()
	}
	w, err := openSpace(t, newClient(t, addr), "wait").Create(ctx, "later")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello"))
	// Close only once both readers hold the instance: a reader that reached
	// the end before the other attached would mark it read, and the other's
	// Attach would rightly wait for the next instance.
	<-attached
	<-attached
	w.Close(ctx)
	for range 2 {
		r := <-out
		if r.err != nil || string(r.b) != "hello" {
			t.Fatalf("waiting reader got %q, %v", r.b, r.err)
		}
	}
}

func TestTypedChannels(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "typed")
	w, err := comm.CreateTyped[float64](ctx, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{1.5, -2.25, 3e300, 0}
	if err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	if _, err := comm.AttachTyped[int32](ctx, s, "x"); !errors.Is(err, comm.ErrElemType) {
		t.Fatalf("attach as int32: got %v, want ErrElemType", err)
	} else if !strings.Contains(err.Error(), "float64") {
		t.Fatalf("error %q does not name the channel's type", err)
	}
	r, err := comm.AttachTyped[float64](ctx, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float64, len(want))
	if err := r.ReadFull(ctx, got); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("element %d: %v, want %v", i, got[i], want[i])
		}
	}
	raw, err := s.AttachAny(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comm.NewTypedReader[int32](raw); !errors.Is(err, comm.ErrElemType) {
		t.Fatalf("NewTypedReader[int32] on float64: %v", err)
	}
}

func TestAttachCancelAndNoWait(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	s := openSpace(t, newClient(t, addr), "cancel")
	ctx := ctxT(t, 10*time.Second)
	if _, err := s.Attach(ctx, "none", comm.NoWait()); !errors.Is(err, comm.ErrNotFound) {
		t.Fatalf("NoWait: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Attach(cctx, "none"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled attach: %v", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	if _, err := s.Attach(dctx, "none"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("attach with deadline: %v", err)
	}
	// The space still works after the cancelled attaches.
	w, err := s.Create(ctx, "none")
	if err != nil {
		t.Fatal(err)
	}
	w.Close(ctx)
	if _, err := s.Attach(ctx, "none"); err != nil {
		t.Fatal(err)
	}
}

func TestResumeByWriterKey(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "resume")
	data := payload(5, 100000)
	w, err := s.Create(ctx, "ch", comm.WithWriterKey("rank-1"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data[:60000])
	w.Detach() // the writer "crashes"
	// A restarted writer replays from an earlier checkpoint: the overlap is
	// dropped, not duplicated.
	s2 := openSpace(t, newClient(t, addr), "resume")
	commtest.Eventually(t, 5*time.Second, func() bool {
		info, err := s2.Stat(ctx, "ch")
		return err == nil && info.Length == 60000
	}, "cache never held the first writer's bytes")
	w2, err := s2.Create(ctx, "ch", comm.WithWriterKey("rank-1"), comm.WithOffset(40000))
	if err != nil {
		t.Fatal(err)
	}
	if w2.Info().Instance != w.Info().Instance {
		t.Fatalf("resumed instance %d, want %d", w2.Info().Instance, w.Info().Instance)
	}
	if _, err := w2.Write(data[40000:]); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := s.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r); !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, want %d identical", len(got), len(data))
	}
	// Replaying different bytes is refused.
	w3, err := s2.Create(ctx, "ch2", comm.WithWriterKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	w3.Write([]byte("abc"))
	w3.Detach()
	// Detach writes what is queued but does not wait for the server to
	// take it: until that session has, a new writer's bytes on another
	// connection would come first and nothing would diverge.
	commtest.Eventually(t, 5*time.Second, func() bool {
		info, err := s2.Stat(ctx, "ch2")
		return err == nil && info.Length == 3
	}, "cache never held the first writer's bytes")
	w4, err := s2.Create(ctx, "ch2", comm.WithWriterKey("k"))
	if err != nil {
		t.Fatal(err)
	}
	w4.Write([]byte("xyz"))
	err = w4.Close(ctx)
	if !errors.Is(err, comm.ErrDiverged) {
		t.Fatalf("divergent replay: %v, want ErrDiverged", err)
	}
}

func TestReaderResumesAtOffset(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	s := openSpace(t, newClient(t, addr), "offset")
	data := payload(6, 50000)
	w, _ := s.Create(ctx, "ch")
	w.Write(data)
	w.Close(ctx)
	r, err := s.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 12345)
	io.ReadFull(r, part)
	id, off := r.Info().Instance, r.Offset()
	r.Close()
	r2, err := s.AttachAny(ctx, "ch", comm.AtInstance(id), comm.AtOffset(off))
	if err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, r2)
	if !bytes.Equal(append(part, rest...), data) {
		t.Fatal("resumed read differs")
	}
}

func TestConcurrentSpaceOpen(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 20*time.Second)
	var wg sync.WaitGroup
	spaces := make([]*comm.Space, 8)
	for i := range spaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := newClient(t, addr).OpenSpace(ctx, "race")
			if err != nil {
				t.Error(err)
			}
			spaces[i] = s
		}()
	}
	wg.Wait()
	w, err := spaces[3].Create(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	w.Close(ctx)
	for _, s := range spaces {
		if _, err := s.AttachAny(ctx, "c", comm.NoWait()); err != nil {
			t.Fatalf("a racing opener does not see the channel: %v", err)
		}
	}
}

func TestUnknownSpace(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 10*time.Second)
	c := newClient(t, addr)
	s := openSpace(t, c, "gone")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// The last user closed an empty space: it is deleted.
	s2 := openSpace(t, c, "other")
	_ = s2
	if _, err := s.Create(ctx, "x"); err == nil {
		t.Fatal("create in a closed space succeeded")
	}
}

// A reader dropped from the direct path for falling behind catches up from
// the cache and then returns to the direct path.
func TestDroppedReaderReturnsToDirectPath(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	ctx := ctxT(t, 30*time.Second)
	sw := openSpace(t, newClient(t, addr, func(c *comm.Config) { c.SinkQueue = 256 << 10 }), "return")
	counter := &commtest.CutDialer{Match: func(a string) bool { return a != addr }, After: 1 << 62}
	sr := openSpace(t, newClient(t, addr, func(c *comm.Config) { c.Dialer = counter.Dial }), "return")
	w, err := sw.Create(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	r, err := sr.Attach(ctx, "ch")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	w.Write([]byte{1})
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	// The reader stalls while 8 MiB go by: far more than its sink holds.
	big := payload(21, 8<<20)
	if _, err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(big))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("burst: %v", err)
	}
	before := counter.BytesRead()
	for i := range 50 {
		w.Write([]byte{byte(i)})
		if _, err := io.ReadFull(r, buf); err != nil || buf[0] != byte(i) {
			t.Fatalf("message %d: %v %v", i, buf, err)
		}
	}
	if counter.BytesRead() == before {
		t.Fatal("after the burst every message came through the cache: the reader never returned to the direct path")
	}
	w.Close(ctx)
}
