package rt_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// refReduce folds the inputs of ranks lo..hi-1 left to right.
func refReduce[T rt.Elem](ins [][]T, hi int, f func(a, b []T) []T) []T {
	acc := append([]T(nil), ins[0]...)
	for r := 1; r < hi; r++ {
		acc = f(acc, ins[r])
	}
	return acc
}

func elementwise[T rt.Elem](g func(x, y T) T) func(a, b []T) []T {
	return func(a, b []T) []T {
		out := make([]T, len(a))
		for i := range a {
			out[i] = g(a[i], b[i])
		}
		return out
	}
}

// matmul multiplies packed 2x2 int64 matrices pairwise (non-commutative).
func matmul(dst, a, b []int64) {
	for i := 0; i+4 <= len(dst); i += 4 {
		a0, a1, a2, a3 := a[i], a[i+1], a[i+2], a[i+3]
		b0, b1, b2, b3 := b[i], b[i+1], b[i+2], b[i+3]
		dst[i], dst[i+1] = a0*b0+a1*b2, a0*b1+a1*b3
		dst[i+2], dst[i+3] = a2*b0+a3*b2, a2*b1+a3*b3
	}
}

// compose composes affine maps x -> a*x+b stored as one whole vector:
// only element pairs (2i, 2i+1) interact, but the op declares block 0 so
// the runtime never splits it.
func compose(dst, f, g []float64) {
	for i := 0; i+2 <= len(dst); i += 2 {
		// (f then g)(x) = g.a*(f.a*x+f.b)+g.b
		a, b := g[i]*f[i], g[i]*f[i+1]+g[i+1]
		dst[i], dst[i+1] = a, b
	}
}

func refOp(f func(dst, a, b []int64)) func(a, b []int64) []int64 {
	return func(a, b []int64) []int64 { out := make([]int64, len(a)); f(out, a, b); return out }
}

func refOpF(f func(dst, a, b []float64)) func(a, b []float64) []float64 {
	return func(a, b []float64) []float64 { out := make([]float64, len(a)); f(out, a, b); return out }
}

// configs: the defaults (latency algorithms for these sizes) and one that
// forces every bandwidth algorithm.
var configs = map[string]func(*rt.Config){
	"small": nil,
	"large": func(c *rt.Config) {
		c.BcastLargeBytes, c.ReduceLargeBytes, c.GatherLargeBytes = 1, 1, 1
	},
}

func TestCollectivesAgainstReference(t *testing.T) {
	for name, cfg := range configs {
		for n := 1; n <= 9; n++ {
			t.Run(fmt.Sprintf("%s/n=%d", name, n), func(t *testing.T) {
				run(t, n, rttest.Options{Config: cfg}, func(ctx context.Context, c *rt.Comm) error {
					for _, k := range []int{0, 1, 5, 24, 300} {
						if err := battery[float64](ctx, c, k, true); err != nil {
							return fmt.Errorf("float64 k=%d: %w", k, err)
						}
						if err := battery[int32](ctx, c, k, true); err != nil {
							return fmt.Errorf("int32 k=%d: %w", k, err)
						}
						if err := battery[uint8](ctx, c, k, true); err != nil {
							return fmt.Errorf("uint8 k=%d: %w", k, err)
						}
						if err := battery[complex128](ctx, c, k, false); err != nil {
							return fmt.Errorf("complex128 k=%d: %w", k, err)
						}
						if err := nonCommutative(ctx, c, k); err != nil {
							return fmt.Errorf("non-commutative k=%d: %w", k, err)
						}
						if err := vcollectives[int16](ctx, c, k); err != nil {
							return fmt.Errorf("v-collectives k=%d: %w", k, err)
						}
					}
					return c.Barrier(ctx)
				})
			})
		}
	}
}

// battery runs every collective on T with per-rank blocks of k elements
// and checks the results against sequential references.
func battery[T rt.Elem](ctx context.Context, c *rt.Comm, k int, ordered bool) error {
	n, r := c.Size(), c.Rank()
	ins := make([][]T, n)
	for i := range n {
		ins[i] = vec[T](i, k, 1)
	}
	if err := c.Barrier(ctx); err != nil {
		return err
	}
	for _, root := range roots(n) {
		buf := make([]T, k)
		if r == root {
			copy(buf, ins[root])
		}
		if err := rt.Bcast(ctx, c, root, buf); err != nil {
			return err
		}
		if err := check(fmt.Sprintf("bcast root %d", root), buf, ins[root]); err != nil {
			return err
		}
		if err := reduceChecks(ctx, c, root, ins, ordered); err != nil {
			return err
		}
		if err := gatherChecks(ctx, c, root, ins); err != nil {
			return err
		}
	}
	sum := refReduce(ins, n, elementwise(func(x, y T) T { return x + y }))
	out := make([]T, k)
	if err := rt.Allreduce(ctx, c, ins[r], out, rt.Sum[T]()); err != nil {
		return err
	}
	if err := check("allreduce sum", out, sum); err != nil {
		return err
	}
	if err := rt.Scan(ctx, c, ins[r], out, rt.Sum[T]()); err != nil {
		return err
	}
	if err := check("scan sum", out, refReduce(ins, r+1, elementwise(func(x, y T) T { return x + y }))); err != nil {
		return err
	}
	all := make([]T, n*k)
	if err := rt.Allgather(ctx, c, ins[r], all); err != nil {
		return err
	}
	for i := range n {
		if err := check(fmt.Sprintf("allgather block %d", i), all[i*k:(i+1)*k], ins[i]); err != nil {
			return err
		}
	}
	return alltoallCheck[T](ctx, c, k)
}

func roots(n int) []int {
	if n == 1 {
		return []int{0}
	}
	return []int{0, n - 1, n / 2}
}

type redCase[T rt.Elem] struct {
	name string
	op   rt.Op[T]
	ref  func(a, b []T) []T
	in   func(i int) []T
}

func reduceChecks[T rt.Elem](ctx context.Context, c *rt.Comm, root int, ins [][]T, ordered bool) error {
	n, r, k := c.Size(), c.Rank(), len(ins[0])
	small := func(i int) []T { // 1s and 2s: products stay exact
		v := make([]T, k)
		for j := range v {
			v[j] = mk[T](1 + (i+j)%2)
		}
		return v
	}
	cases := []redCase[T]{
		{"sum", rt.Sum[T](), elementwise(func(x, y T) T { return x + y }), func(i int) []T { return ins[i] }},
		{"prod", rt.Prod[T](), elementwise(func(x, y T) T { return x * y }), small},
	}
	if ordered {
		cases = append(cases, orderedCases(ins)...)
	}
	for _, tc := range cases {
		local := make([][]T, n)
		for i := range n {
			local[i] = tc.in(i)
		}
		out := make([]T, k)
		if err := rt.Reduce(ctx, c, root, local[r], out, tc.op); err != nil {
			return err
		}
		if r == root {
			if err := check("reduce "+tc.name, out, refReduce(local, n, tc.ref)); err != nil {
				return err
			}
		}
		if err := rt.Allreduce(ctx, c, local[r], out, tc.op); err != nil {
			return err
		}
		if err := check("allreduce "+tc.name, out, refReduce(local, n, tc.ref)); err != nil {
			return err
		}
	}
	return nil
}

// orderedCases builds min and max cases for the ordered types the battery
// uses (Min and Max need an Ordered type argument).
func orderedCases[T rt.Elem](ins [][]T) []redCase[T] {
	var mn, mx rt.Op[T]
	switch any(mn).(type) {
	case rt.Op[float64]:
		mn, mx = any(rt.Min[float64]()).(rt.Op[T]), any(rt.Max[float64]()).(rt.Op[T])
	case rt.Op[int32]:
		mn, mx = any(rt.Min[int32]()).(rt.Op[T]), any(rt.Max[int32]()).(rt.Op[T])
	case rt.Op[uint8]:
		mn, mx = any(rt.Min[uint8]()).(rt.Op[T]), any(rt.Max[uint8]()).(rt.Op[T])
	default:
		return nil
	}
	in := func(i int) []T { return ins[i] }
	pick := func(wantLess bool) func(x, y T) T {
		return func(x, y T) T {
			if lessAny(any(y), any(x)) == wantLess {
				return y
			}
			return x
		}
	}
	return []redCase[T]{
		{"min", mn, elementwise(pick(true)), in},
		{"max", mx, elementwise(pick(false)), in},
	}
}

func lessAny(x, y any) bool {
	switch x := x.(type) {
	case float64:
		return x < y.(float64)
	case int32:
		return x < y.(int32)
	case uint8:
		return x < y.(uint8)
	}
	panic("unordered")
}

func gatherChecks[T rt.Elem](ctx context.Context, c *rt.Comm, root int, ins [][]T) error {
	n, r, k := c.Size(), c.Rank(), len(ins[0])
	var all []T
	if r == root {
		all = make([]T, n*k)
	}
	if err := rt.Gather(ctx, c, root, ins[r], all); err != nil {
		return err
	}
	if r == root {
		for i := range n {
			if err := check(fmt.Sprintf("gather root %d block %d", root, i), all[i*k:(i+1)*k], ins[i]); err != nil {
				return err
			}
		}
	}
	var src []T
	if r == root {
		src = make([]T, 0, n*k)
		for i := range n {
			src = append(src, ins[(i+1)%n]...)
		}
	}
	got := make([]T, k)
	if err := rt.Scatter(ctx, c, root, src, got); err != nil {
		return err
	}
	return check(fmt.Sprintf("scatter root %d", root), got, ins[(r+1)%n])
}

func alltoallCheck[T rt.Elem](ctx context.Context, c *rt.Comm, k int) error {
	n, r := c.Size(), c.Rank()
	send := make([]T, 0, n*k)
	for j := range n {
		send = append(send, vec[T](r*n+j, k, 2)...)
	}
	recv := make([]T, n*k)
	if err := rt.Alltoall(ctx, c, send, recv); err != nil {
		return err
	}
	for j := range n {
		if err := check(fmt.Sprintf("alltoall from %d", j), recv[j*k:(j+1)*k], vec[T](j*n+r, k, 2)); err != nil {
			return err
		}
	}
	return nil
}

// nonCommutative checks reductions whose result depends on operand order.
func nonCommutative(ctx context.Context, c *rt.Comm, k int) error {
	n, r := c.Size(), c.Rank()
	mats := make([][]int64, n)
	for i := range n {
		m := vec[int64](i, 4*k, 3)
		mats[i] = m
	}
	mm := rt.NewOp("matmul", 4, matmul)
	out := make([]int64, 4*k)
	want := refReduce(mats, n, refOp(matmul))
	if err := rt.Allreduce(ctx, c, mats[r], out, mm); err != nil {
		return err
	}
	if err := check("allreduce matmul", out, want); err != nil {
		return err
	}
	root := n - 1
	if err := rt.Reduce(ctx, c, root, mats[r], out, mm); err != nil {
		return err
	}
	if r == root {
		if err := check("reduce matmul", out, want); err != nil {
			return err
		}
	}
	if err := rt.Scan(ctx, c, mats[r], out, mm); err != nil {
		return err
	}
	if err := check("scan matmul", out, refReduce(mats, r+1, refOp(matmul))); err != nil {
		return err
	}
	maps := make([][]float64, n)
	for i := range n {
		maps[i] = vec[float64](i, 2*k, 4)
	}
	aff := rt.NewOp("compose", 0, compose)
	fout := make([]float64, 2*k)
	if err := rt.Allreduce(ctx, c, maps[r], fout, aff); err != nil {
		return err
	}
	return check("allreduce compose", fout, refReduce(maps, n, refOpF(compose)))
}

func vcollectives[T rt.Elem](ctx context.Context, c *rt.Comm, k int) error {
	n, r := c.Size(), c.Rank()
	counts := make([]int, n)
	total := 0
	for i := range n {
		counts[i] = (i*k + i) % (k + 2)
		total += counts[i]
	}
	root := n / 2
	mine := vec[T](r, counts[r], 5)
	var all []T
	if r == root {
		all = make([]T, total)
	}
	if err := rt.Gatherv(ctx, c, root, mine, all, counts); err != nil {
		return err
	}
	var want []T
	for i := range n {
		want = append(want, vec[T](i, counts[i], 5)...)
	}
	if r == root {
		if err := check("gatherv", all, want); err != nil {
			return err
		}
	}
	got := make([]T, counts[r])
	if err := rt.Scatterv(ctx, c, root, all, counts, got); err != nil {
		return err
	}
	return check("scatterv", got, mine)
}

// TestAllreduceHalvingBuffers: on the halving path (power-of-two rank
// counts read send in their first step instead of copying it into recv)
// the result never depends on what recv held, and send and recv may be
// the same vector or overlap in part (then copied first).
func TestAllreduceHalvingBuffers(t *testing.T) {
	for _, n := range []int{2, 3, 4, 8} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			run(t, n, rttest.Options{Config: configs["large"]}, func(ctx context.Context, c *rt.Comm) error {
				const k = 96
				r := c.Rank()
				ins := make([][]float64, n)
				for i := range n {
					ins[i] = vec[float64](i, k, 1)
				}
				want := refReduce(ins, n, elementwise(func(x, y float64) float64 { return x + y }))
				out := make([]float64, k)
				for i := range out {
					out[i] = 1e300 // garbage the result must not see
				}
				if err := rt.Allreduce(ctx, c, ins[r], out, rt.Sum[float64]()); err != nil {
					return err
				}
				if err := check("recv full of garbage", out, want); err != nil {
					return err
				}
				same := slices.Clone(ins[r])
				if err := rt.Allreduce(ctx, c, same, same, rt.Sum[float64]()); err != nil {
					return err
				}
				if err := check("in place", same, want); err != nil {
					return err
				}
				buf := make([]float64, k+8)
				copy(buf[8:], ins[r])
				if err := rt.Allreduce(ctx, c, buf[8:], buf[:k], rt.Sum[float64]()); err != nil {
					return err
				}
				return check("overlapping in part", buf[:k], want)
			})
		})
	}
}
