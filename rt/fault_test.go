package rt_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// TestLateRank: rank 3 starts 2 s after the others; their sends wait in
// the space and the loop of Allreduce calls completes with right results.
func TestLateRank(t *testing.T) {
	const n, iters = 5, 20
	var mu sync.Mutex
	started := map[int]time.Time{}
	opts := rttest.Options{Delay: map[int]time.Duration{3: 2 * time.Second}}
	run(t, n, opts, func(ctx context.Context, c *rt.Comm) error {
		mu.Lock()
		started[c.Rank()] = time.Now()
		mu.Unlock()
		out := make([]int64, 3)
		for i := range iters {
			in := []int64{int64(c.Rank()), int64(i), int64(c.Rank() * i)}
			if err := rt.Allreduce(ctx, c, in, out, rt.Sum[int64]()); err != nil {
				return err
			}
			want := []int64{n * (n - 1) / 2, int64(n * i), int64(i * n * (n - 1) / 2)}
			if err := check(fmt.Sprintf("iteration %d", i), out, want); err != nil {
				return err
			}
		}
		return nil
	})
	if d := started[3].Sub(started[0]); d < 2*time.Second {
		t.Fatalf("rank 3 started only %v after rank 0", d)
	}
}

const faultSteps = 24

// stepProgram is a loop of p2p ring exchange + Allreduce + a checkpoint
// every third step. Each rank's final vector goes to results.
// crash, if set, makes the rank crash at the start of a step.
func stepProgram(results [][]float64, crash func(c *rt.Comm, step int64) bool) rttest.Func {
	return func(ctx context.Context, c *rt.Comm) error {
		n, r := c.Size(), c.Rank()
		x := make([]float64, 6)
		for i := range x {
			x[i] = float64(r + i)
		}
		start := int64(0)
		step, state, ok, err := c.Restore(ctx)
		if err != nil {
			return err
		}
		if ok {
			x, start = decodeFloats(state), step+1
		}
		left := make([]float64, 1)
		local := make([]float64, len(x))
		for s := start; s < faultSteps; s++ {
			if crash != nil && crash(c, s) {
				return rttest.ErrCrashed
			}
			tag := int(s % 3)
			if err := rt.Send(ctx, c, (r+1)%n, tag, x[:1]); err != nil {
				return err
			}
			if _, err := rt.Recv(ctx, c, (r-1+n)%n, tag, left); err != nil {
				return err
			}
			for i := range local {
				local[i] = x[i]/3 + float64(r)*math.Sqrt(float64(s+1)) + left[0]/7
			}
			if err := rt.Allreduce(ctx, c, local, x, rt.Sum[float64]()); err != nil {
				return err
			}
			if s%3 == 2 {
				if err := c.Checkpoint(ctx, s, encodeFloats(x)); err != nil {
					return err
				}
			}
		}
		results[r] = x
		return nil
	}
}

func encodeFloats(x []float64) []byte {
	b := make([]byte, 0, 8*len(x))
	for _, v := range x {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func decodeFloats(b []byte) []float64 {
	x := make([]float64, len(b)/8)
	for i := range x {
		x[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return x
}

// TestCrashRestore: rank 2 dies in the middle of the loop (at several
// points, including inside checkpoints and collectives; the fatal write is
// torn), is restarted with incarnation 1 on the same space, restores, and
// every rank ends with exactly the results of a run without the fault.
func TestCrashRestore(t *testing.T) {
	const n = 4
	want := make([][]float64, n)
	run(t, n, rttest.Options{}, stepProgram(want, nil))
	for _, at := range []int{1, 2, 9, 17, 31, 46, 60, 77} {
		t.Run(fmt.Sprintf("write%d", at), func(t *testing.T) {
			got := make([][]float64, n)
			var incs [n]int
			var mu sync.Mutex
			prog := stepProgram(got, nil)
			opts := rttest.Options{CrashAfterWrites: map[int]int{2: at}}
			run(t, n, opts, func(ctx context.Context, c *rt.Comm) error {
				mu.Lock()
				incs[c.Rank()] = c.Incarnation()
				mu.Unlock()
				return prog(ctx, c)
			})
			if incs[2] != 1 {
				t.Fatalf("rank 2 ended in incarnation %d, want 1 (crash not reached?)", incs[2])
			}
			for r := range n {
				if err := check(fmt.Sprintf("rank %d", r), got[r], want[r]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestCrashOnPurpose: rank 1 abandons everything at chosen steps (just
// after a checkpoint, and between checkpoints) in two incarnations in a
// row; the results still match a run without faults.
func TestCrashOnPurpose(t *testing.T) {
	const n = 3
	want := make([][]float64, n)
	run(t, n, rttest.Options{}, stepProgram(want, nil))
	got := make([][]float64, n)
	crash := func(c *rt.Comm, s int64) bool {
		return c.Rank() == 1 && ((c.Incarnation() == 0 && s == 9) || (c.Incarnation() == 1 && s == 16))
	}
	run(t, n, rttest.Options{}, stepProgram(got, crash))
	for r := range n {
		if err := check(fmt.Sprintf("rank %d", r), got[r], want[r]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestoreOutOfOrder: a checkpoint taken after a later tag was received
// while an earlier message still waited in the unexpected queue. After the
// restart the waiting message is delivered, and the one already consumed
// is not delivered twice.
func TestRestoreOutOfOrder(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			for _, m := range []struct {
				tag int
				v   int64
			}{{1, 'A'}, {2, 'B'}, {2, 'C'}} {
				if err := rt.Send(ctx, c, 1, m.tag, []int64{m.v}); err != nil {
					return err
				}
			}
			_, err := rt.Recv(ctx, c, 1, 9, make([]int64, 1))
			return err
		}
		buf := make([]int64, 1)
		if c.Incarnation() == 0 {
			if _, err := rt.Recv(ctx, c, 0, 2, buf); err != nil || buf[0] != 'B' {
				return fmt.Errorf("first tag-2 receive: %c %v", rune(buf[0]), err)
			}
			if err := c.Checkpoint(ctx, 1, nil); err != nil {
				return err
			}
			return rttest.ErrCrashed
		}
		step, _, ok, err := c.Restore(ctx)
		if err != nil || !ok || step != 1 {
			return fmt.Errorf("restore: %d %v %v", step, ok, err)
		}
		if _, err := rt.Recv(ctx, c, 0, 1, buf); err != nil || buf[0] != 'A' {
			return fmt.Errorf("tag 1 after restore: %c %v", rune(buf[0]), err)
		}
		if _, err := rt.Recv(ctx, c, 0, 2, buf); err != nil || buf[0] != 'C' {
			return fmt.Errorf("tag 2 after restore: %c %v", rune(buf[0]), err)
		}
		return rt.Send(ctx, c, 0, 9, []int64{1})
	})
}
