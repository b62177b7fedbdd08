// Command hello is the smallest pispace program: every rank says hello,
// then the ranks sum their rank numbers with Allreduce and rank 0 broadcasts
// a message. Run it with pirun (go run ./cmd/pirun -n 4 ./examples/hello)
// or alone, as a world of one.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/pispace/pispace/rt"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	w, err := rt.Init(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Printf("hello from rank %d of %d\n", w.Rank(), w.Size())

	sum := []int64{0}
	if err := rt.Allreduce(ctx, w, []int64{int64(w.Rank())}, sum, rt.Sum[int64]()); err != nil {
		return err
	}
	n := int64(w.Size())
	if want := n * (n - 1) / 2; sum[0] != want {
		return fmt.Errorf("allreduce gave %d, want %d", sum[0], want)
	}
	msg := make([]float64, 3)
	if w.Rank() == 0 {
		copy(msg, []float64{3.14, 2.72, 1.41})
	}
	if err := rt.Bcast(ctx, w, 0, msg); err != nil {
		return err
	}
	fmt.Printf("rank %d: sum of ranks = %d, broadcast from rank 0 = %v\n", w.Rank(), sum[0], msg)
	return nil
}
