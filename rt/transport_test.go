package rt_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

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
	_, addr := commtest.StartServer(tb, server.Config{Dir: tb.TempDir()})
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
	return out
}

// runComm runs fn on n ranks over a real comm server.
func runComm(tb testing.TB, n int, cfg func(*rt.Config), fn func(ctx context.Context, c *rt.Comm) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spaces := commSpaces(tb, n)
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
