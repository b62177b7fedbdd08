package rt

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"unsafe"
)

// csend sends a collective frame of op to dst.
func csend[T Elem](ctx context.Context, c *Comm, dst int, op opCode, buf []T) error {
	return c.send(ctx, dst, collTag, op, codeOf[T](), wireBytes(buf))
}

// crecv receives a collective frame of op from src that must fill buf.
func crecv[T Elem](ctx context.Context, c *Comm, src int, op opCode, buf []T) error {
	return c.recv(ctx, src, op, codeOf[T](), asBytes(buf))
}

// collErr names the collective in an error from its sends and receives.
func collErr(op opCode, err error) error {
	if err == nil {
		return nil
	}
	var re *RankError
	if errors.As(err, &re) {
		return &RankError{Rank: re.Rank, Op: op.String(), Err: re.Err}
	}
	return err
}

// begin validates a collective call.
func (c *Comm) begin(ctx context.Context, op opCode, root int) error {
	if err := c.check(ctx, op.String()); err != nil {
		return err
	}
	if root != noRoot {
		if err := c.checkPeer(root, op.String()); err != nil {
			return err
		}
	}
	return nil
}

// noRoot is begin's root for rootless collectives.
const noRoot = math.MinInt

func countErr(op opCode, rank int, format string, args ...any) error {
	return &RankError{Rank: rank, Op: op.String(), Err: fmt.Errorf("%w: "+format, append([]any{ErrCount}, args...)...)}
}

func sizeOf[T Elem]() int {
	var z T
	return int(unsafe.Sizeof(z))
}

// pow2floor returns the largest power of two <= n (n >= 1).
func pow2floor(n int) int { return 1 << (bits.Len(uint(n)) - 1) }

// lowbit returns the lowest set bit of v (v > 0).
func lowbit(v int) int { return v & -v }

// seg returns the bounds of part i of n parts of [0, cnt).
func seg(cnt, n, i int) (int, int) {
	return int(int64(i) * int64(cnt) / int64(n)), int(int64(i+1) * int64(cnt) / int64(n))
}

// Barrier blocks until every rank of c has called Barrier (dissemination
// algorithm: ceil(log2 n) rounds of empty messages).
func (c *Comm) Barrier(ctx context.Context) error {
	if err := c.begin(ctx, opBarrier, noRoot); err != nil {
		return err
	}
	n, r := c.size, c.rank
	for k := 1; k < n; k <<= 1 {
		if err := csend[uint8](ctx, c, (r+k)%n, opBarrier, nil); err != nil {
			return collErr(opBarrier, err)
		}
		if err := crecv[uint8](ctx, c, (r-k+n)%n, opBarrier, nil); err != nil {
			return collErr(opBarrier, err)
		}
	}
	return nil
}

// Bcast copies root's buf into buf on every rank of c; every rank passes a
// buf of the same length (else ErrCount). Below Config.BcastLargeBytes (or
// with fewer than 3 ranks) it uses a binomial tree, ceil(log2 n) steps of
// the whole buffer; above, a scatter from root followed by a ring
// allgather, which moves about 2x the buffer per rank whatever n.
func Bcast[T Elem](ctx context.Context, c *Comm, root int, buf []T) error {
	if err := c.begin(ctx, opBcast, root); err != nil {
		return err
	}
	n := c.size
	if n == 1 {
		return nil
	}
	if n >= 3 && len(buf) >= n && len(buf)*sizeOf[T]() >= c.w.cfg.BcastLargeBytes {
		return collErr(opBcast, bcastRing(ctx, c, root, buf))
	}
	return collErr(opBcast, bcastBinomial(ctx, c, root, buf))
}

func bcastBinomial[T Elem](ctx context.Context, c *Comm, root int, buf []T) error {
	n := c.size
	vr := (c.rank - root + n) % n
	mask := 1
	for ; mask < n; mask <<= 1 {
		if vr&mask != 0 {
			if err := crecv(ctx, c, (vr-mask+root)%n, opBcast, buf); err != nil {
				return err
			}
			break
		}
	}
	for mask >>= 1; mask > 0; mask >>= 1 {
		if vr+mask < n {
			if err := csend(ctx, c, (vr+mask+root)%n, opBcast, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

// bcastRing scatters part i of buf to rank i, then circulates the parts
// around the ring; the root needs nothing back.
func bcastRing[T Elem](ctx context.Context, c *Comm, root int, buf []T) error {
	n, r, cnt := c.size, c.rank, len(buf)
	part := func(i int) []T { lo, hi := seg(cnt, n, i); return buf[lo:hi] }
	if r == root {
		for i := range n {
			if i != root {
				if err := csend(ctx, c, i, opBcast, part(i)); err != nil {
					return err
				}
			}
		}
	} else if err := crecv(ctx, c, root, opBcast, part(r)); err != nil {
		return err
	}
	next, prev := (r+1)%n, (r-1+n)%n
	for s := range n - 1 {
		if next != root {
			if err := csend(ctx, c, next, opBcast, part((r-s+n)%n)); err != nil {
				return err
			}
		}
		if r != root {
			if err := crecv(ctx, c, prev, opBcast, part((r-s-1+2*n)%n)); err != nil {
				return err
			}
		}
	}
	return nil
}
