package rt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// wantErr checks err against a sentinel and, if rank >= 0, the RankError's
// rank.
func wantErr(err, target error, rank int) error {
	if !errors.Is(err, target) {
		return fmt.Errorf("got error %v, want %v", err, target)
	}
	var re *rt.RankError
	if rank >= 0 && (!errors.As(err, &re) || re.Rank != rank) {
		return fmt.Errorf("error %v: want a RankError for rank %d", err, rank)
	}
	return nil
}

func TestMisuseTypeMismatch(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			if err := rt.Send(ctx, c, 1, 0, []float64{1}); err != nil {
				return err
			}
			return rt.Bcast(ctx, c, 0, []float64{1, 2})
		}
		_, err := rt.Recv(ctx, c, 0, 0, make([]int32, 4))
		if err := wantErr(err, rt.ErrType, 0); err != nil {
			return fmt.Errorf("p2p: %w", err)
		}
		err = rt.Bcast(ctx, c, 0, []int32{0, 0})
		if err := wantErr(err, rt.ErrType, 0); err != nil {
			return fmt.Errorf("bcast: %w", err)
		}
		var re *rt.RankError
		if errors.As(err, &re); re.Op != "bcast" {
			return fmt.Errorf("op %q, want bcast", re.Op)
		}
		return nil
	})
}

func TestMisuseCollectiveMismatch(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			if err := rt.Bcast(ctx, c, 0, []int64{1}); err != nil {
				return err
			}
			// Lengths differ between ranks.
			err := rt.Allreduce(ctx, c, []int64{1, 2, 3}, make([]int64, 3), rt.Sum[int64]())
			return wantErr(err, rt.ErrCount, 1)
		}
		err := rt.Allreduce(ctx, c, []int64{1}, make([]int64, 1), rt.Sum[int64]())
		if err := wantErr(err, rt.ErrMismatch, 0); err != nil {
			return err
		}
		err = rt.Allreduce(ctx, c, []int64{1}, make([]int64, 1), rt.Sum[int64]())
		return wantErr(err, rt.ErrCount, 0)
	})
}

func TestMisuseRankTagAndLengths(t *testing.T) {
	run(t, 3, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		buf := []uint32{1}
		checks := []struct {
			name   string
			err    error
			target error
		}{
			{"send to 3", rt.Send(ctx, c, 3, 0, buf), rt.ErrRank},
			{"send to -1", rt.Send(ctx, c, -1, 0, buf), rt.ErrRank},
			{"send tag -3", rt.Send(ctx, c, 0, -3, buf), rt.ErrTag},
			{"recv tag -2", errOf(rt.Recv(ctx, c, 0, -2, buf)), rt.ErrTag},
			{"recv from 7", errOf(rt.Recv(ctx, c, 7, 0, buf)), rt.ErrRank},
			{"bcast root 3", rt.Bcast(ctx, c, 3, buf), rt.ErrRank},
			{"reduce root -1", rt.Reduce(ctx, c, -1, buf, buf, rt.Sum[uint32]()), rt.ErrRank},
			{"zero op", rt.Allreduce(ctx, c, buf, buf, rt.Op[uint32]{}), rt.ErrOp},
			{"allreduce lengths", rt.Allreduce(ctx, c, buf, make([]uint32, 2), rt.Sum[uint32]()), rt.ErrCount},
			{"allgather lengths", rt.Allgather(ctx, c, buf, make([]uint32, 2)), rt.ErrCount},
			{"alltoall lengths", rt.Alltoall(ctx, c, buf, buf), rt.ErrCount},
			{"reserved name", errOf(c.Create(ctx, "_rt/up/0")), rt.ErrName},
		}
		for _, ch := range checks {
			if err := wantErr(ch.err, ch.target, -1); err != nil {
				return fmt.Errorf("%s: %w", ch.name, err)
			}
		}
		// Truncation: the message is consumed and reported.
		if err := rt.Send(ctx, c, c.Rank(), 9, []uint32{1, 2, 3}); err != nil {
			return err
		}
		st, err := rt.Recv(ctx, c, c.Rank(), 9, make([]uint32, 2))
		if err := wantErr(err, rt.ErrTruncated, c.Rank()); err != nil {
			return err
		}
		if st.Count != 3 {
			return fmt.Errorf("truncated status %+v", st)
		}
		return c.Barrier(ctx)
	})
}

func errOf[T any](_ T, err error) error { return err }

func TestMisuseContext(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		done, cancel := context.WithCancel(ctx)
		cancel()
		buf := []float32{0}
		for name, err := range map[string]error{
			"send":      rt.Send(done, c, 1-c.Rank(), 0, buf),
			"recv":      errOf(rt.Recv(done, c, 1-c.Rank(), 0, buf)),
			"barrier":   c.Barrier(done),
			"allreduce": rt.Allreduce(done, c, buf, buf, rt.Sum[float32]()),
		} {
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s with a cancelled context: %v", name, err)
			}
		}
		// Nobody sends tag 5: the receive gives up at its deadline.
		short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel2()
		start := time.Now()
		_, err := rt.Recv(short, c, rt.AnySource, 5, buf)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			return fmt.Errorf("recv past deadline: %v after %v", err, time.Since(start))
		}
		// Only rank 0 enters the barrier: it times out, no hang.
		if c.Rank() == 0 {
			short, cancel3 := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel3()
			if err := c.Barrier(short); !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("lonely barrier: %v", err)
			}
		}
		return nil
	})
}

func TestMisuseClosedAndPending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rt.New(ctx, rt.NewMemSpace(), rt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := rt.Irecv(ctx, c, 0, 1, make([]byte, 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Checkpoint(ctx, 1, nil); !errors.Is(err, rt.ErrPending) {
		t.Fatalf("checkpoint with a posted receive: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Wait(ctx); !errors.Is(err, rt.ErrClosed) {
		t.Fatalf("posted receive after Close: %v", err)
	}
	if err := rt.Send(ctx, c, 0, 0, []int8{1}); !errors.Is(err, rt.ErrClosed) {
		t.Fatalf("send after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestPeerClosed: a receive from a rank that closed without sending fails
// with ErrPeerClosed instead of hanging.
func TestPeerClosed(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			return rt.Send(ctx, c, 1, 0, []int8{1})
		}
		buf := make([]int8, 1)
		if _, err := rt.Recv(ctx, c, 0, 0, buf); err != nil {
			return err
		}
		_, err := rt.Recv(ctx, c, 0, 0, buf)
		return wantErr(err, rt.ErrPeerClosed, 0)
	})
}
