package rt

import (
	"context"
	"math/bits"
)

// Gather collects every rank's send at root: recv[i*k:(i+1)*k] = send of
// rank i, where k = len(send) is the same on every rank. recv matters only
// at root, where it must hold n*k elements. Blocks below
// Config.GatherLargeBytes go up a binomial tree; larger ones go straight
// to root.
func Gather[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	if err := c.begin(ctx, opGather, root); err != nil {
		return err
	}
	n, k := c.size, len(send)
	if c.rank == root && len(recv) != n*k {
		return countErr(opGather, c.rank, "recv of %d for %d ranks x %d", len(recv), n, k)
	}
	if k*sizeOf[T]() >= c.w.cfg.GatherLargeBytes {
		return collErr(opGather, gatherLinear(ctx, c, root, send, recv))
	}
	return collErr(opGather, gatherBinomial(ctx, c, root, send, recv))
}

// subtree returns how many ranks the binomial subtree of virtual rank vr
// spans.
func subtree(vr, n int) int {
	if vr == 0 {
		return n
	}
	return min(lowbit(vr), n-vr)
}

func gatherBinomial[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	n, k := c.size, len(send)
	vr := (c.rank - root + n) % n
	sub := subtree(vr, n)
	tmp := recv
	if vr != 0 || root != 0 {
		tmp = make([]T, sub*k)
	}
	copy(tmp, send)
	for mask := 1; mask < n; mask <<= 1 {
		if vr&mask != 0 {
			return csend(ctx, c, (vr-mask+root)%n, opGather, tmp[:sub*k])
		}
		if child := vr + mask; child < n {
			m := min(mask, n-child)
			if err := crecv(ctx, c, (child+root)%n, opGather, tmp[mask*k:(mask+m)*k]); err != nil {
				return err
			}
		}
	}
	if root != 0 {
		for i := range n {
			j := (i + root) % n
			copy(recv[j*k:(j+1)*k], tmp[i*k:(i+1)*k])
		}
	}
	return nil
}

func gatherLinear[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	if c.rank != root {
		return csend(ctx, c, root, opGather, send)
	}
	k := len(send)
	for i := range c.size {
		if i == root {
			copy(recv[i*k:(i+1)*k], send)
		} else if err := crecv(ctx, c, i, opGather, recv[i*k:(i+1)*k]); err != nil {
			return err
		}
	}
	return nil
}

// Gatherv is Gather with per-rank lengths: at root, counts[i] is the
// length of rank i's send and recv holds them back to back in rank order
// (len(recv) = sum of counts). counts matters only at root. Every block
// goes straight to root.
func Gatherv[T Elem](ctx context.Context, c *Comm, root int, send, recv []T, counts []int) error {
	if err := c.begin(ctx, opGather, root); err != nil {
		return err
	}
	if c.rank != root {
		return collErr(opGather, csend(ctx, c, root, opGather, send))
	}
	if err := checkCounts(c, opGather, counts, len(recv), len(send)); err != nil {
		return err
	}
	off := 0
	for i, m := range counts {
		if i == root {
			copy(recv[off:off+m], send)
		} else if err := crecv(ctx, c, i, opGather, recv[off:off+m]); err != nil {
			return collErr(opGather, err)
		}
		off += m
	}
	return nil
}

// checkCounts validates a v-collective's counts at root.
func checkCounts(c *Comm, op opCode, counts []int, total, own int) error {
	if len(counts) != c.size {
		return countErr(op, c.rank, "%d counts for %d ranks", len(counts), c.size)
	}
	sum := 0
	for _, m := range counts {
		if m < 0 {
			return countErr(op, c.rank, "negative count %d", m)
		}
		sum += m
	}
	if sum != total {
		return countErr(op, c.rank, "counts sum to %d, buffer of %d", sum, total)
	}
	if counts[c.rank] != own {
		return countErr(op, c.rank, "root's count %d, its buffer %d", counts[c.rank], own)
	}
	return nil
}

// Scatter sends block i of root's send to rank i: recv = send[i*k:(i+1)*k]
// with k = len(recv), the same on every rank. send matters only at root,
// where it holds n*k elements. Blocks below Config.GatherLargeBytes go down
// a binomial tree; larger ones straight from root.
func Scatter[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	if err := c.begin(ctx, opScatter, root); err != nil {
		return err
	}
	n, k := c.size, len(recv)
	if c.rank == root && len(send) != n*k {
		return countErr(opScatter, c.rank, "send of %d for %d ranks x %d", len(send), n, k)
	}
	if k*sizeOf[T]() >= c.w.cfg.GatherLargeBytes {
		return collErr(opScatter, scatterLinear(ctx, c, root, send, recv))
	}
	return collErr(opScatter, scatterBinomial(ctx, c, root, send, recv))
}

func scatterBinomial[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	n, k := c.size, len(recv)
	vr := (c.rank - root + n) % n
	sub := subtree(vr, n)
	var tmp []T
	top := 1 << bits.Len(uint(n-1))
	switch {
	case vr == 0 && root == 0:
		tmp = send
	case vr == 0:
		tmp = make([]T, n*k)
		for i := range n {
			j := (i + root) % n
			copy(tmp[i*k:(i+1)*k], send[j*k:(j+1)*k])
		}
	default:
		tmp = make([]T, sub*k)
		top = lowbit(vr)
		if err := crecv(ctx, c, (vr-top+root)%n, opScatter, tmp); err != nil {
			return err
		}
	}
	for mask := top >> 1; mask >= 1; mask >>= 1 {
		if child := vr + mask; child < n {
			m := min(mask, n-child)
			if err := csend(ctx, c, (child+root)%n, opScatter, tmp[mask*k:(mask+m)*k]); err != nil {
				return err
			}
		}
	}
	copy(recv, tmp[:k])
	return nil
}

func scatterLinear[T Elem](ctx context.Context, c *Comm, root int, send, recv []T) error {
	if c.rank != root {
		return crecv(ctx, c, root, opScatter, recv)
	}
	k := len(recv)
	for i := range c.size {
		if i == root {
			copy(recv, send[i*k:(i+1)*k])
		} else if err := csend(ctx, c, i, opScatter, send[i*k:(i+1)*k]); err != nil {
			return err
		}
	}
	return nil
}

// Scatterv is Scatter with per-rank lengths: at root, counts[i] elements of
// send (back to back in rank order) go to rank i, whose recv must have
// exactly that length (else ErrCount). send and counts matter only at root.
func Scatterv[T Elem](ctx context.Context, c *Comm, root int, send []T, counts []int, recv []T) error {
	if err := c.begin(ctx, opScatter, root); err != nil {
		return err
	}
	if c.rank != root {
		return collErr(opScatter, crecv(ctx, c, root, opScatter, recv))
	}
	if err := checkCounts(c, opScatter, counts, len(send), len(recv)); err != nil {
		return err
	}
	off := 0
	for i, m := range counts {
		if i == root {
			copy(recv, send[off:off+m])
		} else if err := csend(ctx, c, i, opScatter, send[off:off+m]); err != nil {
			return collErr(opScatter, err)
		}
		off += m
	}
	return nil
}

// Allgather gives every rank every rank's send: recv[i*k:(i+1)*k] = send
// of rank i, k = len(send) on every rank, len(recv) = n*k. Blocks below
// Config.GatherLargeBytes use Bruck's algorithm (ceil(log2 n) steps);
// larger ones a ring (n-1 steps, bandwidth-optimal).
func Allgather[T Elem](ctx context.Context, c *Comm, send, recv []T) error {
	return allgather(ctx, c, opAllgather, send, recv)
}

func allgather[T Elem](ctx context.Context, c *Comm, op opCode, send, recv []T) error {
	if err := c.begin(ctx, op, noRoot); err != nil {
		return err
	}
	n, k := c.size, len(send)
	if len(recv) != n*k {
		return countErr(op, c.rank, "recv of %d for %d ranks x %d", len(recv), n, k)
	}
	if k*sizeOf[T]() >= c.w.cfg.GatherLargeBytes {
		return collErr(op, allgatherRing(ctx, c, op, send, recv))
	}
	return collErr(op, allgatherBruck(ctx, c, op, send, recv))
}

// allgatherBruck: block j of tmp holds rank (r+j)%n's data; at step 2^s a
// rank sends its first blocks to r-2^s and appends those of r+2^s.
func allgatherBruck[T Elem](ctx context.Context, c *Comm, op opCode, send, recv []T) error {
	n, r, k := c.size, c.rank, len(send)
	tmp := make([]T, n*k)
	copy(tmp, send)
	for pof := 1; pof < n; pof <<= 1 {
		m := min(pof, n-pof)
		if err := csend(ctx, c, (r-pof+n)%n, op, tmp[:m*k]); err != nil {
			return err
		}
		if err := crecv(ctx, c, (r+pof)%n, op, tmp[pof*k:(pof+m)*k]); err != nil {
			return err
		}
	}
	for j := range n {
		i := (r + j) % n
		copy(recv[i*k:(i+1)*k], tmp[j*k:(j+1)*k])
	}
	return nil
}

func allgatherRing[T Elem](ctx context.Context, c *Comm, op opCode, send, recv []T) error {
	n, r, k := c.size, c.rank, len(send)
	copy(recv[r*k:(r+1)*k], send)
	next, prev := (r+1)%n, (r-1+n)%n
	for s := range n - 1 {
		sb, rb := (r-s+n)%n, (r-s-1+2*n)%n
		if err := csend(ctx, c, next, op, recv[sb*k:(sb+1)*k]); err != nil {
			return err
		}
		if err := crecv(ctx, c, prev, op, recv[rb*k:(rb+1)*k]); err != nil {
			return err
		}
	}
	return nil
}

// Alltoall sends block j of each rank's send to rank j: on rank i,
// recv[j*k:(j+1)*k] = block i of rank j's send, with len(send) = len(recv)
// = n*k on every rank. Sends never wait for receivers, so every rank
// writes its n-1 blocks (to r+1, r+2, ...) and then reads n-1.
func Alltoall[T Elem](ctx context.Context, c *Comm, send, recv []T) error {
	if err := c.begin(ctx, opAlltoall, noRoot); err != nil {
		return err
	}
	n, r := c.size, c.rank
	if len(send) != len(recv) || len(send)%n != 0 {
		return countErr(opAlltoall, r, "send of %d, recv of %d for %d ranks", len(send), len(recv), n)
	}
	k := len(send) / n
	for s := 1; s < n; s++ {
		d := (r + s) % n
		if err := csend(ctx, c, d, opAlltoall, send[d*k:(d+1)*k]); err != nil {
			return collErr(opAlltoall, err)
		}
	}
	copy(recv[r*k:(r+1)*k], send[r*k:(r+1)*k])
	for s := 1; s < n; s++ {
		src := (r - s + n) % n
		if err := crecv(ctx, c, src, opAlltoall, recv[src*k:(src+1)*k]); err != nil {
			return collErr(opAlltoall, err)
		}
	}
	return nil
}
