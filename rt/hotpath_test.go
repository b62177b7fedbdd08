package rt_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// Tests of the receive hot path's shortcuts: one context registration kept
// across receives, the read-ahead timer armed once per idle period.

// probeSpace counts, on the channel named watch, the ReadContext calls
// entered and those that ended with a context error.
type probeSpace struct {
	rt.Space
	watch   string
	entered atomic.Int64
	cut     atomic.Int64
}

func (p *probeSpace) Attach(ctx context.Context, name string, off int64) (rt.ChanReader, error) {
	r, err := p.Space.Attach(ctx, name, off)
	if err != nil || name != p.watch {
		return r, err
	}
	return probeReader{r, p}, nil
}

type probeReader struct {
	rt.ChanReader
	p *probeSpace
}

func (r probeReader) ReadContext(ctx context.Context, p []byte) (int, error) {
	r.p.entered.Add(1)
	n, err := r.ChanReader.ReadContext(ctx, p)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		r.p.cut.Add(1)
	}
	return n, err
}

// TestRecvContextReused: receives passing one context share its
// registration; its end still cuts a later receive blocked in a read, and
// the message sent after is received whole.
func TestRecvContextReused(t *testing.T) {
	p := &probeSpace{Space: rt.NewMemSpace(), watch: "_rt/w/p2p/0-1"}
	run(t, 2, rttest.Options{Space: p}, func(ctx context.Context, c *rt.Comm) error {
		buf := []int64{0}
		if c.Rank() == 0 {
			for i := range 3 {
				if err := rt.Send(ctx, c, 1, 0, []int64{int64(i)}); err != nil {
					return err
				}
			}
			if _, err := rt.Recv(ctx, c, 1, 9, buf); err != nil { // rank 1 gave up
				return err
			}
			return rt.Send(ctx, c, 1, 0, []int64{42})
		}
		one, cancel := context.WithCancel(ctx)
		defer cancel()
		for i := range 3 {
			if _, err := rt.Recv(one, c, 0, 0, buf); err != nil || buf[0] != int64(i) {
				return fmt.Errorf("message %d: %v %v", i, buf, err)
			}
		}
		entered := p.entered.Load()
		go func() {
			if waitFor("a blocked read", func() bool { return p.entered.Load() > entered }) == nil {
				cancel()
			}
		}()
		if _, err := rt.Recv(one, c, 0, 0, buf); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("receive cut by its context: %v", err)
		}
		if err := rt.Send(ctx, c, 0, 9, buf); err != nil {
			return err
		}
		if _, err := rt.Recv(ctx, c, 0, 0, buf); err != nil || buf[0] != 42 {
			return fmt.Errorf("message after the cut: %v %v", buf, err)
		}
		return nil
	})
}

// TestStaleContextSparesOtherReaders: the end of a context used by an
// earlier receive (still registered) does not cut the read of a pump
// serving an Irecv.
func TestStaleContextSparesOtherReaders(t *testing.T) {
	p := &probeSpace{Space: rt.NewMemSpace(), watch: "_rt/w/p2p/0-1"}
	run(t, 2, rttest.Options{Space: p}, func(ctx context.Context, c *rt.Comm) error {
		buf := []int64{0}
		if c.Rank() == 0 {
			if err := rt.Send(ctx, c, 1, 0, []int64{1}); err != nil {
				return err
			}
			if _, err := rt.Recv(ctx, c, 1, 9, buf); err != nil { // rank 1's pump reads
				return err
			}
			return rt.Send(ctx, c, 1, 0, []int64{2})
		}
		old, cancel := context.WithCancel(ctx)
		defer cancel()
		if _, err := rt.Recv(old, c, 0, 0, buf); err != nil {
			return err
		}
		entered := p.entered.Load()
		req, err := rt.Irecv(ctx, c, 0, 0, buf)
		if err != nil {
			return err
		}
		if err := waitFor("the pump's read", func() bool { return p.entered.Load() > entered }); err != nil {
			return err
		}
		cancel()
		if err := rt.Send(ctx, c, 0, 9, buf); err != nil {
			return err
		}
		if _, err := req.Wait(ctx); err != nil || buf[0] != 2 {
			return fmt.Errorf("irecv: %v %v", buf, err)
		}
		if n := p.cut.Load(); n != 0 {
			return fmt.Errorf("%d reads cut by a finished receive's context", n)
		}
		return nil
	})
}

// TestReadAheadAfterBusyUse: a source received from many times in a row
// is still read ahead once it goes idle.
func TestReadAheadAfterBusyUse(t *testing.T) {
	const msgs = 50
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		buf := []int32{0}
		if c.Rank() == 0 {
			for i := range msgs {
				if err := rt.Send(ctx, c, 1, 0, []int32{int32(i)}); err != nil {
					return err
				}
			}
			if _, err := rt.Recv(ctx, c, 1, 9, buf); err != nil {
				return err
			}
			return rt.Send(ctx, c, 1, 1, []int32{7}) // read ahead: nobody receives tag 1 yet
		}
		for i := range msgs {
			if _, err := rt.Recv(ctx, c, 0, 0, buf); err != nil || buf[0] != int32(i) {
				return fmt.Errorf("message %d: %v %v", i, buf, err)
			}
		}
		if err := rt.Send(ctx, c, 0, 9, buf); err != nil {
			return err
		}
		if err := waitFor("read-ahead", func() bool { return rt.QueuedBytes(c, 0) > 0 }); err != nil {
			return err
		}
		if _, err := rt.Recv(ctx, c, 0, 1, buf); err != nil || buf[0] != 7 {
			return fmt.Errorf("read-ahead message: %v %v", buf, err)
		}
		return nil
	})
}

// TestLargeReductionsReuseScratch: Allreduce and Reduce of vectors large
// enough to take their scratch vectors from the pools, shrinking and
// growing from call to call, on a power-of-two and a folded rank count.
func TestLargeReductionsReuseScratch(t *testing.T) {
	for _, n := range []int{3, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
				for round, k := range []int{16 << 10, 12 << 10, 20 << 10, 16 << 10} {
					if err := largeReductions[float64](ctx, c, k, round); err != nil {
						return fmt.Errorf("float64 k=%d: %w", k, err)
					}
					if err := largeReductions[int32](ctx, c, 2*k, round); err != nil {
						return fmt.Errorf("int32 k=%d: %w", 2*k, err)
					}
				}
				return nil
			})
		})
	}
}

func largeReductions[T rt.Elem](ctx context.Context, c *rt.Comm, k, salt int) error {
	n := c.Size()
	want := make([]T, k)
	for r := range n {
		for i, v := range vec[T](r, k, salt) {
			want[i] += v
		}
	}
	in := vec[T](c.Rank(), k, salt)
	out := make([]T, k)
	if err := rt.Allreduce(ctx, c, in, out, rt.Sum[T]()); err != nil {
		return err
	}
	if err := check("allreduce", out, want); err != nil {
		return err
	}
	root := salt % n
	clear(out)
	if err := rt.Reduce(ctx, c, root, in, out, rt.Sum[T]()); err != nil {
		return err
	}
	if c.Rank() == root {
		return check("reduce", out, want)
	}
	return nil
}

// maxWriteSpace records the largest Write any of its writers was given.
type maxWriteSpace struct {
	rt.Space
	max atomic.Int64
}

func (m *maxWriteSpace) Create(ctx context.Context, name, key string, off int64) (rt.ChanWriter, error) {
	w, err := m.Space.Create(ctx, name, key, off)
	if err != nil {
		return nil, err
	}
	return maxWriter{w, m}, nil
}

type maxWriter struct {
	rt.ChanWriter
	m *maxWriteSpace
}

func (w maxWriter) Write(p []byte) (int, error) {
	for n := int64(len(p)); ; {
		old := w.m.max.Load()
		if n <= old || w.m.max.CompareAndSwap(old, n) {
			break
		}
	}
	return w.ChanWriter.Write(p)
}

// TestLargeSendWrittenInPieces: a payload of several MiB reaches the
// channel in Writes of at most 1 MiB (so that comm can hand each to a
// direct reader without copying it) and arrives whole.
func TestLargeSendWrittenInPieces(t *testing.T) {
	m := &maxWriteSpace{Space: rt.NewMemSpace()}
	const k = 3<<20/8 + 5 // float64s: 3 MiB and a bit
	want := vec[float64](0, k, 3)
	run(t, 2, rttest.Options{Space: m}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			return rt.Send(ctx, c, 1, 0, want)
		}
		got := make([]float64, k)
		if _, err := rt.Recv(ctx, c, 0, 0, got); err != nil {
			return err
		}
		if err := check("3 MiB message", got, want); err != nil {
			return err
		}
		if n := m.max.Load(); n > 1<<20 {
			return fmt.Errorf("a Write of %d bytes", n)
		}
		return nil
	})
}
