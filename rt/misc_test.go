package rt_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

func TestSplit(t *testing.T) {
	const n = 8
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		r := c.Rank()
		color := r % 3
		if r == 7 {
			color = -1 // not a member of any group
		}
		sub, err := c.Split(ctx, color, -r) // reverse order inside a group
		if err != nil {
			return err
		}
		if r == 7 {
			if sub != nil {
				return errors.New("negative color got a communicator")
			}
			return c.Barrier(ctx)
		}
		defer sub.Close()
		var members []int
		for m := n - 1; m >= 0; m-- {
			if m%3 == color && m != 7 {
				members = append(members, m)
			}
		}
		if sub.Size() != len(members) || members[sub.Rank()] != r {
			return fmt.Errorf("sub rank %d of %d, members %v", sub.Rank(), sub.Size(), members)
		}
		// Allgather of world ranks in sub-rank order, and a Scan.
		all := make([]int32, sub.Size())
		if err := rt.Allgather(ctx, sub, []int32{int32(r)}, all); err != nil {
			return err
		}
		for i, m := range members {
			if all[i] != int32(m) {
				return fmt.Errorf("allgather %v, members %v", all, members)
			}
		}
		// Split of a split, and point-to-point inside it.
		sub2, err := sub.Split(ctx, 0, sub.Rank())
		if err != nil {
			return err
		}
		defer sub2.Close()
		if sub2.Size() > 1 {
			next, prev := (sub2.Rank()+1)%sub2.Size(), (sub2.Rank()-1+sub2.Size())%sub2.Size()
			got := make([]int32, 1)
			if _, err := rt.Sendrecv(ctx, sub2, []int32{int32(r)}, next, 0, got, prev, 0); err != nil {
				return err
			}
			if got[0] != int32(members[prev]) {
				return fmt.Errorf("ring in sub2: got %d", got[0])
			}
		}
		return c.Barrier(ctx)
	})
}

func TestNamedChannels(t *testing.T) {
	run(t, 3, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		name := fmt.Sprintf("halo/%d", c.Rank())
		w, err := c.Create(ctx, name)
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("from " + name)); err != nil {
			return err
		}
		if err := w.Close(ctx); err != nil {
			return err
		}
		// Read the neighbour's channel, whenever it appears.
		peer := fmt.Sprintf("halo/%d", (c.Rank()+1)%c.Size())
		r, err := c.Attach(ctx, peer)
		if err != nil {
			return err
		}
		defer r.Close()
		var got []byte
		buf := make([]byte, 4)
		for {
			k, err := r.ReadContext(ctx, buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if string(got) != "from "+peer {
			return fmt.Errorf("read %q", got)
		}
		length, sealed, found, err := c.Stat(ctx, peer)
		if err != nil || !found || !sealed || length != int64(len(got)) {
			return fmt.Errorf("stat: %d %v %v %v", length, sealed, found, err)
		}
		return nil
	})
}

func TestWaitForMin(t *testing.T) {
	const n = 4
	var mu sync.Mutex
	var started time.Time
	opts := rttest.Options{Delay: map[int]time.Duration{2: 300 * time.Millisecond}}
	run(t, n, opts, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 2 {
			mu.Lock()
			started = time.Now()
			mu.Unlock()
		}
		if err := c.WaitForMin(ctx); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if started.IsZero() {
			return errors.New("WaitForMin returned before rank 2 started")
		}
		return nil
	})
	// Min below Size: returns without the late rank.
	opts.Config = func(c *rt.Config) { c.Min = 3 }
	opts.Delay = map[int]time.Duration{3: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = rttest.Run(ctx, n, func(ctx context.Context, c *rt.Comm) error {
			defer func() {
				if c.Rank() == 0 {
					cancel() // rank 0 got through: stop the late rank's wait
				}
			}()
			return c.WaitForMin(ctx)
		}, opts)
	}()
	wg.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("WaitForMin with Min=3 did not return")
	}
}

func TestCheckpointRestoreLatest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp := rt.NewMemSpace()
	c, err := rt.New(ctx, sp, rt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := c.Restore(ctx); ok || err != nil {
		t.Fatalf("restore with no checkpoint: ok=%v err=%v", ok, err)
	}
	for step := range int64(5) {
		if err := c.Checkpoint(ctx, step*10, []byte(fmt.Sprint("state ", step))); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for inc := 1; inc <= 2; inc++ {
		c, err := rt.New(ctx, sp, rt.Config{Incarnation: inc})
		if err != nil {
			t.Fatal(err)
		}
		step, state, ok, err := c.Restore(ctx)
		want := int64(40 + inc - 1)
		if inc == 1 {
			want = 40
		}
		if err != nil || !ok || step != want {
			t.Fatalf("incarnation %d restore: step %d ok=%v err=%v, want step %d", inc, step, ok, err, want)
		}
		if inc == 1 && string(state) != "state 4" {
			t.Fatalf("state %q", state)
		}
		if err := c.Checkpoint(ctx, 41, []byte("after restart")); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInitSingleRank(t *testing.T) {
	for _, k := range []string{"PIRUN_JOB", "PIRUN_RANK", "PIRUN_SIZE", "PIRUN_INCARNATION", "PIRUN_MIN", "PIRUN_MAX_RESTARTS", "PIRUN_COMM", "PIRUN_SPACE"} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := rt.Init(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.Rank() != 0 || w.Size() != 1 || w.Incarnation() != 0 {
		t.Fatalf("world %d/%d inc %d", w.Rank(), w.Size(), w.Incarnation())
	}
	out := make([]float64, 2)
	if err := rt.Allreduce(ctx, w, []float64{1, 2}, out, rt.Sum[float64]()); err != nil || out[1] != 2 {
		t.Fatalf("allreduce on one rank: %v %v", out, err)
	}
	if err := w.WaitForMin(ctx); err != nil {
		t.Fatal(err)
	}

	t.Setenv("PIRUN_SIZE", "4")
	t.Setenv("PIRUN_RANK", "2")
	if _, err := rt.Init(ctx); !errors.Is(err, rt.ErrEnv) {
		t.Fatalf("size 4 without PIRUN_COMM: %v", err)
	}
	// An unreachable space fails (ErrNoTransport if no adapter is linked).
	t.Setenv("PIRUN_COMM", "127.0.0.1:1")
	short, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	defer cancel2()
	if w, err := rt.Init(short); err == nil {
		w.Close()
		t.Fatal("Init with an unreachable PIRUN_COMM succeeded")
	}
	t.Setenv("PIRUN_RANK", "4")
	if _, err := rt.Init(ctx); !errors.Is(err, rt.ErrEnv) {
		t.Fatalf("rank 4 of 4: %v", err)
	}
	t.Setenv("PIRUN_RANK", "x")
	if _, err := rt.Init(ctx); !errors.Is(err, rt.ErrEnv) {
		t.Fatalf("rank x: %v", err)
	}
}
