package rt_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// TestBcast64MiB broadcasts 64 MiB (scatter + ring allgather) to 5 ranks
// and an odd-sized large vector through Allreduce (Rabenseifner).
func TestBcast64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("large payload")
	}
	const n, size, root = 5, 64 << 20, 2
	want := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(want)
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		buf := make([]uint8, size)
		if c.Rank() == root {
			copy(buf, want)
		}
		if err := rt.Bcast(ctx, c, root, buf); err != nil {
			return err
		}
		if !bytes.Equal(buf, want) {
			return fmt.Errorf("64 MiB broadcast differs")
		}
		const k = 1<<18 + 3
		in := make([]float64, k)
		for i := range in {
			in[i] = float64(c.Rank() + i%1000)
		}
		out := make([]float64, k)
		if err := rt.Allreduce(ctx, c, in, out, rt.Sum[float64]()); err != nil {
			return err
		}
		for i := range out {
			if w := float64(n*(n-1)/2 + n*(i%1000)); out[i] != w {
				return fmt.Errorf("allreduce[%d] = %v, want %v", i, out[i], w)
			}
		}
		return nil
	})
}
