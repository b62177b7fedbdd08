package rt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
	"github.com/pispace/pispace/rt"
)

// These benchmarks and tests run ranks as goroutines of one process over a
// real comm server on loopback, each rank with its own comm client (so
// messages take the direct path between clients, as between processes).

// commSpaces returns n spaces of one job, one client each.
func commSpaces(tb testing.TB, n int) []*comm.Space {
	tb.Helper()
	_, spaces := commServer(tb, n)
	return spaces
}

// commServer starts a comm server and returns it with n spaces of one job
// on it, one client each.
func commServer(tb testing.TB, n int) (*server.Server, []*comm.Space) {
	tb.Helper()
	srv, addr := commtest.StartServer(tb, server.Config{Dir: tb.TempDir()})
	ctx := context.Background()
	out := make([]*comm.Space, n)
	for i := range out {
		c, err := comm.New(comm.Config{Servers: []string{addr}})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		if out[i], err = c.OpenSpace(ctx, "job/bench"); err != nil {
			tb.Fatal(err)
		}
	}
	return srv, out
}

// runComm runs fn on n ranks over a real comm server.
func runComm(tb testing.TB, n int, cfg func(*rt.Config), fn func(ctx context.Context, c *rt.Comm) error) {
	tb.Helper()
	runOn(tb, commSpaces(tb, n), cfg, fn)
}

// runOn runs fn on a rank for each of spaces.
func runOn(tb testing.TB, spaces []*comm.Space, cfg func(*rt.Config), fn func(ctx context.Context, c *rt.Comm) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := len(spaces)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conf := rt.Config{Rank: r, Size: n}
			if cfg != nil {
				cfg(&conf)
			}
			c, err := rt.New(ctx, rt.CommSpace(spaces[r]), conf)
			if err == nil {
				err = errors.Join(fn(ctx, c), c.Close())
			}
			if err != nil {
				cancel() // the others may wait for this rank
				err = fmt.Errorf("rank %d: %w", r, err)
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
}

var pingPongSizes = []int{8, 64 << 10, 1 << 20}

// BenchmarkCommPingPong: a round trip through rt over comm.
func BenchmarkCommPingPong(b *testing.B) {
	for _, size := range pingPongSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) { commPingPong(b, size) })
	}
}

func commPingPong(b *testing.B, size int) {
	b.ReportAllocs()
	b.SetBytes(int64(2 * size))
	runComm(b, 2, nil, func(ctx context.Context, c *rt.Comm) error {
		buf := make([]byte, size)
		peer := 1 - c.Rank()
		if err := c.Barrier(ctx); err != nil {
			return err
		}
		return benchRoundTrips(b, c.Rank(),
			func() error { return rt.SendBytes(ctx, c, peer, 0, buf) },
			func() error { _, err := rt.RecvBytes(ctx, c, peer, 0, buf); return err })
	})
}

// BenchmarkRawCommPingPong: the same round trips with comm alone (rt's
// frame length each way), the floor for BenchmarkCommPingPong.
func BenchmarkRawCommPingPong(b *testing.B) {
	for _, size := range pingPongSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) { rawCommPingPong(b, size+24) })
	}
}

func rawCommPingPong(b *testing.B, size int) {
	b.ReportAllocs()
	b.SetBytes(int64(2 * size))
	sp := commSpaces(b, 2)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = rawPingPong(ctx, b, sp[r], r, size)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

func rawPingPong(ctx context.Context, b *testing.B, sp *comm.Space, r, size int) error {
	names := []string{"raw/0-1", "raw/1-0"}
	w, err := sp.Create(ctx, names[r])
	if err != nil {
		return err
	}
	defer w.Close(ctx)
	rd, err := sp.Attach(ctx, names[1-r])
	if err != nil {
		return err
	}
	defer rd.Close()
	buf := make([]byte, size)
	return benchRoundTrips(b, r,
		func() error { _, err := w.Write(buf); return err },
		func() error {
			for got := 0; got < len(buf); {
				n, err := rd.ReadContext(ctx, buf[got:])
				if err != nil {
					return err
				}
				got += n
			}
			return nil
		})
}

// TestTrimConsumed: with Config.TrimConsumed (a job that never restarts
// ranks) the receivers let the space discard what they consumed, so a
// stream of 48 MiB leaves the server holding a few MiB; without it the
// server keeps every byte. Messages of every size path (small, read
// ahead, read straight into the receive's buffer) arrive intact.
func TestTrimConsumed(t *testing.T) {
	const total = 48 << 20
	for _, trim := range []bool{false, true} {
		t.Run(fmt.Sprint("trim=", trim), func(t *testing.T) {
			srv, spaces := commServer(t, 2)
			runOn(t, spaces, func(c *rt.Config) { c.TrimConsumed = trim }, func(ctx context.Context, c *rt.Comm) error {
				sizes := []int{100, 300 << 10, 1 << 20, 2<<20 + 3}
				for i, sent := 0, 0; sent < total; i++ {
					size := sizes[i%len(sizes)]
					if c.Rank() == 0 {
						if err := rt.SendBytes(ctx, c, 1, 7, pattern(i, size)); err != nil {
							return err
						}
					} else {
						buf := make([]byte, size)
						if _, err := rt.RecvBytes(ctx, c, 0, 7, buf); err != nil {
							return err
						}
						if !bytes.Equal(buf, pattern(i, size)) {
							return fmt.Errorf("message %d (%d bytes) differs", i, size)
						}
					}
					sent += size
				}
				return c.Barrier(ctx)
			})
			st := srv.CacheStats()
			held := st.MemoryBytes + st.SpilledBytes
			switch {
			case !trim && (st.TrimmedBytes != 0 || held < total):
				t.Fatalf("without trimming: %+v; want every byte held", st)
			case trim && (st.TrimmedBytes < total-8<<20 || held > 16<<20):
				t.Fatalf("trimming: %+v; want all but the last few MiB trimmed", st)
			}
		})
	}
}

// pattern is message i's n bytes.
func pattern(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j>>9)
	}
	return b
}

// TestTrimCheckpointed: a rank that checkpoints lets the space discard
// what it read between its first checkpoint and the one before its latest,
// and an incarnation restarted from the latest checkpoint still gets every
// message from there on, intact.
func TestTrimCheckpointed(t *testing.T) {
	const msgs, size, crashAt = 40, 1<<20 + 100, 30
	srv, spaces := commServer(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		c, err := rt.New(ctx, rt.CommSpace(spaces[0]), rt.Config{Rank: 0, Size: 2})
		if err != nil {
			sent <- err
			return
		}
		for i := range msgs {
			if err := rt.SendBytes(ctx, c, 1, 3, pattern(i, size)); err != nil {
				sent <- err
				return
			}
		}
		sent <- c.Close()
	}()
	// receive reads messages from..to-1 on c, checkpointing after every
	// third with the next message's number as state.
	receive := func(c *rt.Comm, from, to int) {
		t.Helper()
		buf := make([]byte, size)
		for i := from; i < to; i++ {
			if _, err := rt.RecvBytes(ctx, c, 0, 3, buf); err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if !bytes.Equal(buf, pattern(i, size)) {
				t.Fatalf("message %d differs", i)
			}
			if (i+1)%3 == 0 {
				if err := c.Checkpoint(ctx, int64(i+1), []byte{byte(i + 1)}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	c1, err := rt.New(ctx, rt.CommSpace(spaces[1]), rt.Config{Rank: 1, Size: 2})
	if err != nil {
		t.Fatal(err)
	}
	receive(c1, 0, crashAt)
	// Checkpoints at 3, 6, ..., 30: trimmed from the first one's position
	// (3 messages in) up to the 27th message's end at least.
	if st := srv.CacheStats(); st.TrimmedBytes < 20*size {
		t.Fatalf("after %d messages and checkpoints: %+v; want most of them trimmed", crashAt, st)
	}
	c1.Close()

	c2, err := rt.New(ctx, rt.CommSpace(spaces[2]), rt.Config{Rank: 1, Size: 2, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	step, state, ok, err := c2.Restore(ctx)
	if err != nil || !ok || step != crashAt || state[0] != crashAt {
		t.Fatalf("Restore = %d, %v, %v, %v; want step %d", step, state, ok, err, crashAt)
	}
	receive(c2, crashAt, msgs)
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestTrimOldStates: a rank that checkpoints a large state keeps the
// latest two in the space, not every one it saved, and a new incarnation
// restores the latest.
func TestTrimOldStates(t *testing.T) {
	const state, ckpts = 2<<20 + 7, 6
	srv, spaces := commServer(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := rt.New(ctx, rt.CommSpace(spaces[0]), rt.Config{Rank: 0, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ckpts {
		if err := c.Checkpoint(ctx, int64(i), pattern(i, state)); err != nil {
			t.Fatal(err)
		}
	}
	// Checkpoints 2..5 each let go of the one two before: 0..3.
	if st := srv.CacheStats(); st.TrimmedBytes < (ckpts-2)*state {
		t.Fatalf("after %d checkpoints of %d bytes: %+v; want all but two states trimmed", ckpts, state, st)
	}
	c.Close()
	c2, err := rt.New(ctx, rt.CommSpace(spaces[1]), rt.Config{Rank: 0, Size: 1, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	step, got, ok, err := c2.Restore(ctx)
	if err != nil || !ok || step != ckpts-1 || !bytes.Equal(got, pattern(ckpts-1, state)) {
		t.Fatalf("Restore = step %d, %d bytes, %v, %v; want step %d and its state", step, len(got), ok, err, ckpts-1)
	}
}
