package rt_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// BenchmarkPingPong measures an 8-byte round trip between two ranks over
// the in-memory space (the runtime's own overhead, no network).
func BenchmarkPingPong(b *testing.B) {
	b.ReportAllocs()
	ctx := context.Background()
	err := runPlain(ctx, 2, func(ctx context.Context, c *rt.Comm) error {
		buf := make([]float64, 1)
		peer := 1 - c.Rank()
		return benchRoundTrips(b, c.Rank(),
			func() error { return rt.Send(ctx, c, peer, 0, buf) },
			func() error { _, err := rt.Recv(ctx, c, peer, 0, buf); return err })
	})
	if err != nil {
		b.Fatal(err)
	}
}

// benchRoundTrips runs rank's side of b.N round trips between ranks 0 and 1
// (rank 0 sends first, rank 1 answers), timed from rank 0's start.
func benchRoundTrips(b *testing.B, rank int, send, recv func() error) error {
	if rank == 0 {
		b.ResetTimer()
	}
	for range b.N {
		if rank == 0 {
			if err := send(); err != nil {
				return err
			}
		}
		if err := recv(); err != nil {
			return err
		}
		if rank == 1 {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return nil
}

// runPlain runs ranks over a bare in-memory space (no rttest fault
// wrapper), so allocation counts are the runtime's own.
func runPlain(ctx context.Context, n int, fn rttest.Func) error {
	sp := rt.NewMemSpace()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rt.New(ctx, sp, rt.Config{Rank: r, Size: n})
			if err == nil {
				err = errors.Join(fn(ctx, c), c.Close())
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// BenchmarkAllreduce measures Allreduce of float64 vectors on 4 ranks. (The
// in-memory space keeps every byte ever written, so large vectors measure
// its memory growth more than the runtime.)
func BenchmarkAllreduce(b *testing.B) {
	for _, k := range []int{1, 1 << 10} {
		b.Run(fmt.Sprint(k), func(b *testing.B) {
			b.SetBytes(int64(8 * k))
			err := runPlain(context.Background(), 4, func(ctx context.Context, c *rt.Comm) error {
				in, out := make([]float64, k), make([]float64, k)
				for range b.N {
					if err := rt.Allreduce(ctx, c, in, out, rt.Sum[float64]()); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
