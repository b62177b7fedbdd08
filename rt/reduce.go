package rt

import "context"

// Reduce combines send from every rank with op into recv at root: recv =
// send(0) op send(1) op ... op send(n-1). Every rank passes a send of the
// same length; recv matters only at root, where it must have that length
// too (it may be send itself). Small vectors, and ops that cannot be split
// (NewOp with block 0), go up a binomial tree to rank 0 in rank order and
// then to root; vectors of at least Config.ReduceLargeBytes use
// reduce-scatter by recursive halving and a direct gather of the pieces.
func Reduce[T Elem](ctx context.Context, c *Comm, root int, send, recv []T, op Op[T]) error {
	if err := c.begin(ctx, opReduce, root); err != nil {
		return err
	}
	if err := checkReduce(c, opReduce, send, recv, op, c.rank == root); err != nil {
		return err
	}
	if c.size == 1 {
		copy(recv, send)
		return nil
	}
	if nb, ok := largeReduce(c, send, op); ok {
		return collErr(opReduce, reduceHalving(ctx, c, root, send, recv, op, nb))
	}
	return collErr(opReduce, reduceBinomial(ctx, c, root, send, recv, op))
}

// Allreduce combines send from every rank with op and leaves the result in
// recv on every rank, bit-identical everywhere: recv = send(0) op ... op
// send(n-1). send and recv have the same length on every rank and may be
// the same slice. Small vectors and unsplittable ops use recursive
// doubling (ceil(log2 n) exchanges of the whole vector); vectors of at
// least Config.ReduceLargeBytes use Rabenseifner's algorithm
// (reduce-scatter by recursive halving, allgather by recursive doubling).
// Rank counts that are not a power of two fold adjacent pairs first.
func Allreduce[T Elem](ctx context.Context, c *Comm, send, recv []T, op Op[T]) error {
	if err := c.begin(ctx, opAllreduce, noRoot); err != nil {
		return err
	}
	if err := checkReduce(c, opAllreduce, send, recv, op, true); err != nil {
		return err
	}
	f := newFold(c)
	nb, large := largeReduce(c, send, op)
	// Halving over a power-of-two count reads send itself in its first
	// step and writes every element of recv, so send need not be copied
	// into recv first (a fifth of the copying of a 4-rank 1 Mi-element
	// Allreduce); partly overlapping vectors are copied as before.
	var src []T
	if large && c.size > 1 && f.rem == 0 && !partlyOverlap(send, recv) {
		src = send
	} else {
		copy(recv, send)
	}
	if c.size == 1 {
		return nil
	}
	tmp, scratch := getScratch[T](len(recv))
	err := foldIn(ctx, f, opAllreduce, recv, tmp, op)
	if err == nil && f.vr >= 0 {
		if large {
			err = allreduceHalving(ctx, c, f, src, recv, tmp, op, nb)
		} else {
			err = allreduceDoubling(ctx, c, f, recv, tmp, op)
		}
	}
	if err == nil {
		putScratch(scratch) // every receive into it is complete
		err = foldOut(ctx, f, opAllreduce, recv)
	}
	return collErr(opAllreduce, err)
}

func checkReduce[T Elem](c *Comm, op opCode, send, recv []T, o Op[T], hasRecv bool) error {
	if o.fn == nil {
		return &RankError{Rank: c.rank, Op: op.String(), Err: ErrOp}
	}
	if hasRecv && len(recv) != len(send) {
		return countErr(op, c.rank, "send of %d, recv of %d", len(send), len(recv))
	}
	return nil
}

// largeReduce says whether to use the halving algorithms, and with how many
// op blocks.
func largeReduce[T Elem](c *Comm, send []T, op Op[T]) (int, bool) {
	if len(send)*sizeOf[T]() < c.w.cfg.ReduceLargeBytes {
		return 0, false
	}
	return op.splittable(len(send), pow2floor(c.size))
}

func reduceBinomial[T Elem](ctx context.Context, c *Comm, root int, send, recv []T, op Op[T]) error {
	n, r := c.size, c.rank
	acc := make([]T, len(send))
	copy(acc, send)
	var tmp []T
	for mask := 1; mask < n; mask <<= 1 {
		if r&mask != 0 {
			if err := csend(ctx, c, r-mask, opReduce, acc); err != nil {
				return err
			}
			break
		}
		if r+mask < n {
			if tmp == nil {
				tmp = make([]T, len(send))
			}
			if err := crecv(ctx, c, r+mask, opReduce, tmp); err != nil {
				return err
			}
			op.apply(acc, acc, tmp, 0, len(acc))
		}
	}
	switch {
	case root == 0 && r == 0:
		copy(recv, acc)
	case r == 0:
		return csend(ctx, c, root, opReduce, acc)
	case r == root:
		return crecv(ctx, c, 0, opReduce, recv)
	}
	return nil
}

// fold maps a rank count n onto the largest power of two p <= n by
// pairing ranks 2i and 2i+1 for i < n-p: the even rank of a pair holds the
// pair's partial result, the odd one idles. Virtual ranks keep rank order.
type fold struct {
	c   *Comm
	p   int // power of two
	rem int // n - p
	vr  int // this rank's virtual rank, -1 if idle
}

func newFold(c *Comm) fold {
	n, r := c.size, c.rank
	f := fold{c: c, p: pow2floor(n)}
	f.rem = n - f.p
	switch {
	case r >= 2*f.rem:
		f.vr = r - f.rem
	case r%2 == 0:
		f.vr = r / 2
	default:
		f.vr = -1
	}
	return f
}

// real returns the rank of virtual rank v.
func (f fold) real(v int) int {
	if v < f.rem {
		return 2 * v
	}
	return v + f.rem
}

// foldIn folds the odd ranks' vectors into their even neighbours.
func foldIn[T Elem](ctx context.Context, f fold, op opCode, acc, tmp []T, o Op[T]) error {
	r := f.c.rank
	if r >= 2*f.rem {
		return nil
	}
	if f.vr < 0 {
		return csend(ctx, f.c, r-1, op, acc)
	}
	if err := crecv(ctx, f.c, r+1, op, tmp); err != nil {
		return err
	}
	o.apply(acc, acc, tmp, 0, len(acc))
	return nil
}

// foldOut gives the idle odd ranks the result.
func foldOut[T Elem](ctx context.Context, f fold, op opCode, acc []T) error {
	r := f.c.rank
	if r >= 2*f.rem {
		return nil
	}
	if f.vr < 0 {
		return crecv(ctx, f.c, r-1, op, acc)
	}
	return csend(ctx, f.c, r+1, op, acc)
}

// allreduceDoubling: at step k, virtual ranks v and v^2^k exchange whole
// vectors; each combines lower-group op upper-group, so both get the same
// bits.
func allreduceDoubling[T Elem](ctx context.Context, c *Comm, f fold, acc, tmp []T, op Op[T]) error {
	for mask := 1; mask < f.p; mask <<= 1 {
		pv := f.vr ^ mask
		peer := f.real(pv)
		if err := csend(ctx, c, peer, opAllreduce, acc); err != nil {
			return err
		}
		if err := crecv(ctx, c, peer, opAllreduce, tmp); err != nil {
			return err
		}
		if pv < f.vr {
			op.apply(acc, tmp, acc, 0, len(acc))
		} else {
			op.apply(acc, acc, tmp, 0, len(acc))
		}
	}
	return nil
}

// span is a range of op blocks.
type span struct{ lo, hi int }

// halve runs reduce-scatter by recursive halving with distance doubling
// (so every combine joins two adjacent rank groups in order) and returns
// the block range this virtual rank ends up owning, plus the ranges it
// held before each step (for the allgather that undoes it).
func halve[T Elem](ctx context.Context, c *Comm, f fold, op opCode, src, acc, tmp []T, o Op[T], nb int) (span, []span, error) {
	b := o.block
	cur := span{0, nb}
	var stack []span
	in := acc // the vector the step sends from and reduces
	if src != nil {
		in = src
	}
	for mask := 1; mask < f.p; mask <<= 1 {
		keep, give := splitSpan(cur, f.vr&mask != 0)
		peer := f.real(f.vr ^ mask)
		if err := csend(ctx, c, peer, op, in[give.lo*b:give.hi*b]); err != nil {
			return cur, nil, err
		}
		if err := crecv(ctx, c, peer, op, tmp[keep.lo*b:keep.hi*b]); err != nil {
			return cur, nil, err
		}
		if f.vr&mask == 0 {
			o.apply(acc, in, tmp, keep.lo*b, keep.hi*b)
		} else {
			o.apply(acc, tmp, in, keep.lo*b, keep.hi*b)
		}
		stack = append(stack, cur)
		cur, in = keep, acc
	}
	return cur, stack, nil
}

// splitSpan halves s: the lower half is kept unless upper.
func splitSpan(s span, upper bool) (keep, give span) {
	mid := s.lo + (s.hi-s.lo)/2
	if upper {
		return span{mid, s.hi}, span{s.lo, mid}
	}
	return span{s.lo, mid}, span{mid, s.hi}
}

// ownedSpan is the span virtual rank v owns after halve.
func ownedSpan(v, p, nb int) span {
	cur := span{0, nb}
	for mask := 1; mask < p; mask <<= 1 {
		cur, _ = splitSpan(cur, v&mask != 0)
	}
	return cur
}

// allreduceHalving: reduce-scatter by recursive halving, then allgather by
// recursive doubling, which writes every element of acc. The first step
// reads src when it is not nil (acc need not hold the input then).
func allreduceHalving[T Elem](ctx context.Context, c *Comm, f fold, src, acc, tmp []T, op Op[T], nb int) error {
	b := op.block
	cur, stack, err := halve(ctx, c, f, opAllreduce, src, acc, tmp, op, nb)
	if err != nil {
		return err
	}
	for mask := f.p >> 1; mask >= 1; mask >>= 1 {
		parent := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		other := span{parent.lo, cur.lo}
		if cur.lo == parent.lo {
			other = span{cur.hi, parent.hi}
		}
		peer := f.real(f.vr ^ mask)
		if err := csend(ctx, c, peer, opAllreduce, acc[cur.lo*b:cur.hi*b]); err != nil {
			return err
		}
		if err := crecv(ctx, c, peer, opAllreduce, acc[other.lo*b:other.hi*b]); err != nil {
			return err
		}
		cur = parent
	}
	return nil
}

// reduceHalving: fold, reduce-scatter, then every virtual rank sends its
// finished span to root.
func reduceHalving[T Elem](ctx context.Context, c *Comm, root int, send, recv []T, op Op[T], nb int) error {
	acc, accs := getScratch[T](len(send))
	tmp, tmps := getScratch[T](len(send))
	copy(acc, send)
	err := reduceHalvingWith(ctx, c, root, recv, op, nb, acc, tmp)
	if err == nil {
		putScratch(accs)
		putScratch(tmps)
	}
	return err
}

// reduceHalvingWith is reduceHalving with its scratch vectors: acc holds
// this rank's input.
func reduceHalvingWith[T Elem](ctx context.Context, c *Comm, root int, recv []T, op Op[T], nb int, acc, tmp []T) error {
	f := newFold(c)
	if err := foldIn(ctx, f, opReduce, acc, tmp, op); err != nil {
		return err
	}
	b := op.block
	if f.vr >= 0 {
		cur, _, err := halve(ctx, c, f, opReduce, nil, acc, tmp, op, nb)
		if err != nil {
			return err
		}
		if c.rank != root {
			return csend(ctx, c, root, opReduce, acc[cur.lo*b:cur.hi*b])
		}
		copy(recv[cur.lo*b:cur.hi*b], acc[cur.lo*b:cur.hi*b])
	}
	if c.rank != root {
		return nil
	}
	for v := range f.p {
		peer := f.real(v)
		if peer == root {
			continue
		}
		s := ownedSpan(v, f.p, nb)
		if err := crecv(ctx, c, peer, opReduce, recv[s.lo*b:s.hi*b]); err != nil {
			return err
		}
	}
	return nil
}

// Scan computes the inclusive prefix reduction: recv on rank r = send(0)
// op ... op send(r). It uses recursive doubling (Hillis-Steele):
// ceil(log2 n) steps of whole vectors, combining in rank order. Lengths
// are as for Allreduce.
func Scan[T Elem](ctx context.Context, c *Comm, send, recv []T, op Op[T]) error {
	if err := c.begin(ctx, opScan, noRoot); err != nil {
		return err
	}
	if err := checkReduce(c, opScan, send, recv, op, true); err != nil {
		return err
	}
	copy(recv, send)
	n, r := c.size, c.rank
	var tmp []T
	for mask := 1; mask < n; mask <<= 1 {
		if r+mask < n {
			if err := csend(ctx, c, r+mask, opScan, recv); err != nil {
				return collErr(opScan, err)
			}
		}
		if r-mask >= 0 {
			if tmp == nil {
				tmp = make([]T, len(recv))
			}
			if err := crecv(ctx, c, r-mask, opScan, tmp); err != nil {
				return collErr(opScan, err)
			}
			op.apply(recv, tmp, recv, 0, len(recv))
		}
	}
	return nil
}
