package rt_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// Four ranks (goroutines here, processes under pirun) pass a token around
// a ring and then sum their ranks.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := rttest.Run(ctx, 4, func(ctx context.Context, c *rt.Comm) error {
		n, r := c.Size(), c.Rank()
		token := []int64{0}
		if r == 0 {
			token[0] = 100
			if err := rt.Send(ctx, c, 1, 0, token); err != nil {
				return err
			}
			if _, err := rt.Recv(ctx, c, n-1, 0, token); err != nil {
				return err
			}
			fmt.Println("token back at rank 0:", token[0])
		} else {
			if _, err := rt.Recv(ctx, c, r-1, 0, token); err != nil {
				return err
			}
			token[0] += int64(r)
			if err := rt.Send(ctx, c, (r+1)%n, 0, token); err != nil {
				return err
			}
		}
		sum := make([]int64, 1)
		if err := rt.Allreduce(ctx, c, []int64{int64(r)}, sum, rt.Sum[int64]()); err != nil {
			return err
		}
		if r == 0 {
			fmt.Println("sum of ranks:", sum[0])
		}
		return nil
	}, rttest.Options{})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// token back at rank 0: 106
	// sum of ranks: 6
}

// A rank program run by pirun: Init reads the environment (here, without
// pirun, it is a world of one rank).
func ExampleInit() {
	ctx := context.Background()
	world, err := rt.Init(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer world.Close()
	step, _, ok, err := world.Restore(ctx)
	fmt.Println(world.Rank(), world.Size(), step, ok, err)
	// Output: 0 1 0 false <nil>
}
