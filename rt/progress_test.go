package rt_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

// Tests of how receives make progress: the receiving goroutine reading its
// source itself, payloads read straight into receive buffers, handing the
// reader over between receivers.

// gateSpace holds back the second half of every payload write of exactly
// split bytes until gate is closed, and counts the bytes read from the
// channel named watch.
type gateSpace struct {
	rt.Space
	split int
	gate  chan struct{}
	watch string
	read  atomic.Int64
}

func (g *gateSpace) Create(ctx context.Context, name, key string, off int64) (rt.ChanWriter, error) {
	w, err := g.Space.Create(ctx, name, key, off)
	if err != nil {
		return nil, err
	}
	return gateWriter{w, g}, nil
}

func (g *gateSpace) Attach(ctx context.Context, name string, off int64) (rt.ChanReader, error) {
	r, err := g.Space.Attach(ctx, name, off)
	if err != nil || name != g.watch {
		return r, err
	}
	return countReader{r, &g.read}, nil
}

type gateWriter struct {
	rt.ChanWriter
	g *gateSpace
}

func (w gateWriter) Write(p []byte) (int, error) {
	if len(p) != w.g.split {
		return w.ChanWriter.Write(p)
	}
	n, err := w.ChanWriter.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	<-w.g.gate
	m, err := w.ChanWriter.Write(p[len(p)/2:])
	return n + m, err
}

type countReader struct {
	rt.ChanReader
	n *atomic.Int64
}

func (r countReader) ReadContext(ctx context.Context, p []byte) (int, error) {
	n, err := r.ChanReader.ReadContext(ctx, p)
	r.n.Add(int64(n))
	return n, err
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

const bigCount = 8 << 10 // float64s: 64 KiB, written apart from its header

// TestRecvCancelledMidPayload: a receive whose context ends while its
// payload is half read straight into its buffer fails with the context's
// error; the message is not lost: the next receive gets all of it.
func TestRecvCancelledMidPayload(t *testing.T) {
	g := &gateSpace{Space: rt.NewMemSpace(), split: 8 * bigCount, gate: make(chan struct{}), watch: "_rt/w/p2p/0-1"}
	want := vec[float64](0, bigCount, 1)
	run(t, 2, rttest.Options{Space: g}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			if err := rt.Send(ctx, c, 1, 1, want); err != nil {
				return err
			}
			return rt.Send(ctx, c, 1, 2, []int32{7})
		}
		short, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			if waitFor("half the payload", func() bool { return g.read.Load() >= 24+4*bigCount }) == nil {
				cancel()
			}
		}()
		_, err := rt.Recv(short, c, 0, 1, make([]float64, bigCount))
		close(g.gate)
		if !errors.Is(err, context.Canceled) {
			return fmt.Errorf("cancelled receive: %v", err)
		}
		got := make([]float64, bigCount)
		if _, err := rt.Recv(ctx, c, 0, 1, got); err != nil {
			return err
		}
		if err := check("message after a cancelled receive", got, want); err != nil {
			return err
		}
		small := []int32{0}
		if _, err := rt.Recv(ctx, c, 0, 2, small); err != nil || small[0] != 7 {
			return fmt.Errorf("next message: %v %v", small, err)
		}
		return nil
	})
}

// TestCloseDuringDirectIrecv: closing the communicator while an Irecv's
// payload is being read into its buffer fails it with ErrClosed.
func TestCloseDuringDirectIrecv(t *testing.T) {
	g := &gateSpace{Space: rt.NewMemSpace(), split: 8 * bigCount, gate: make(chan struct{}), watch: "_rt/w/p2p/0-1"}
	run(t, 2, rttest.Options{Space: g}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			return rt.Send(ctx, c, 1, 1, make([]float64, bigCount))
		}
		defer close(g.gate)
		q, err := rt.Irecv(ctx, c, 0, 1, make([]float64, bigCount))
		if err != nil {
			return err
		}
		if err := waitFor("half the payload", func() bool { return g.read.Load() >= 24+4*bigCount }); err != nil {
			return err
		}
		if q.Cancel() {
			return errors.New("Cancel withdrew a receive whose payload is being read")
		}
		if err := c.Close(); err != nil {
			return err
		}
		if _, err := q.Wait(ctx); !errors.Is(err, rt.ErrClosed) {
			return fmt.Errorf("Irecv after Close: %v", err)
		}
		return nil
	})
}

// TestDirectReceivesInOrder: large messages read by a receiving goroutine
// go to the earliest matching posted receive (an Irecv here), others are
// queued, a too-small buffer still gets ErrTruncated, and every payload
// arrives intact.
func TestDirectReceivesInOrder(t *testing.T) {
	msgs := []struct{ tag, n, salt int }{{1, bigCount, 1}, {2, bigCount + 3, 2}, {1, 2 * bigCount, 3}, {4, bigCount, 4}, {3, 5, 5}, {4, 1, 6}}
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			for _, m := range msgs {
				if err := rt.Send(ctx, c, 1, m.tag, vec[int64](0, m.n, m.salt)); err != nil {
					return err
				}
			}
			return nil
		}
		bufA := make([]int64, 4*bigCount)
		q, err := rt.Irecv(ctx, c, 0, 1, bufA)
		if err != nil {
			return err
		}
		recv := func(tag, n, salt, room int) error {
			buf := make([]int64, room)
			st, err := rt.Recv(ctx, c, 0, tag, buf)
			if err != nil {
				return err
			}
			return check(fmt.Sprintf("tag %d", tag), buf[:st.Count], vec[int64](0, n, salt))
		}
		if err := recv(2, bigCount+3, 2, 3*bigCount); err != nil {
			return err
		}
		if err := recv(1, 2*bigCount, 3, 2*bigCount); err != nil {
			return err
		}
		st, err := q.Wait(ctx)
		if err != nil {
			return err
		}
		if err := check("Irecv", bufA[:st.Count], vec[int64](0, bigCount, 1)); err != nil {
			return err
		}
		if _, err := rt.Recv(ctx, c, 0, 4, make([]int64, bigCount-1)); !errors.Is(err, rt.ErrTruncated) {
			return fmt.Errorf("short buffer: %v", err)
		}
		if err := recv(3, 5, 5, 5); err != nil {
			return err
		}
		return recv(4, 1, 6, 1)
	})
}

// TestConcurrentReceiversOneSource: two goroutines receive different tags
// from one source at once (one reads, the other's messages reach it
// through the reader's hand-over); each tag arrives complete and in order.
func TestConcurrentReceiversOneSource(t *testing.T) {
	const per = 200
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			for i := range 2 * per {
				n := 1
				if i%17 == 0 {
					n = bigCount
				}
				v := make([]int32, n)
				v[0] = int32(i / 2)
				if err := rt.Send(ctx, c, 1, 1+i%2, v); err != nil {
					return err
				}
			}
			return nil
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for k := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]int32, bigCount)
				for i := range per {
					if _, err := rt.Recv(ctx, c, 0, 1+k, buf); err != nil || buf[0] != int32(i) {
						errs[k] = fmt.Errorf("tag %d message %d: got %d, %v", 1+k, i, buf[0], err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	})
}

// countSpace counts the writes to point-to-point channels.
type countSpace struct {
	rt.Space
	writes atomic.Int64
}

func (s *countSpace) Create(ctx context.Context, name, key string, off int64) (rt.ChanWriter, error) {
	w, err := s.Space.Create(ctx, name, key, off)
	if err != nil || !strings.Contains(name, "/p2p/") {
		return w, err
	}
	return countWriter{w, &s.writes}, nil
}

type countWriter struct {
	rt.ChanWriter
	n *atomic.Int64
}

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(1)
	return w.ChanWriter.Write(p)
}

// TestCollectiveMessageCounts: small collectives send the messages their
// algorithms need and no more (one frame is one write): Barrier and a
// small Allreduce take ceil(log2 n) rounds of one message per rank, plus
// the folding of non-power-of-two sizes; on 2 ranks Allreduce is one
// exchange.
func TestCollectiveMessageCounts(t *testing.T) {
	cases := []struct {
		name string
		n    int
		want int64
		fn   rttest.Func
	}{
		{"barrier/2", 2, 2, func(ctx context.Context, c *rt.Comm) error { return c.Barrier(ctx) }},
		{"barrier/4", 4, 8, func(ctx context.Context, c *rt.Comm) error { return c.Barrier(ctx) }},
		{"barrier/5", 5, 15, func(ctx context.Context, c *rt.Comm) error { return c.Barrier(ctx) }},
		{"allreduce/2", 2, 2, allreduceOne},
		{"allreduce/4", 4, 8, allreduceOne},
		{"allreduce/3", 3, 4, allreduceOne}, // fold in, one exchange, fold out
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sp := &countSpace{Space: rt.NewMemSpace()}
			run(t, tc.n, rttest.Options{Space: sp}, tc.fn)
			if got := sp.writes.Load(); got != tc.want {
				t.Fatalf("%d messages, want %d", got, tc.want)
			}
		})
	}
}

func allreduceOne(ctx context.Context, c *rt.Comm) error {
	x := []float64{float64(c.Rank())}
	if err := rt.Allreduce(ctx, c, x, x, rt.Sum[float64]()); err != nil {
		return err
	}
	n := float64(c.Size())
	return check("allreduce", x, []float64{n * (n - 1) / 2})
}

// TestOverComm runs point-to-point and collective traffic over a real comm
// server: small and large ping-pongs, a window of Irecvs, and Allreduce
// and Barrier on 4 ranks.
func TestOverComm(t *testing.T) {
	if testing.Short() {
		t.Skip("real comm server")
	}
	runComm(t, 4, nil, func(ctx context.Context, c *rt.Comm) error {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		r := c.Rank()
		if r < 2 {
			for _, n := range []int{1, 5000, 70000} {
				if err := pingPong(ctx, c, 1-r, n); err != nil {
					return err
				}
			}
			if err := window(ctx, c, 1-r, 16, 20000); err != nil {
				return err
			}
		}
		k := 1 << 14 // 128 KiB of float64: Rabenseifner
		for _, cnt := range []int{1, k} {
			x := make([]float64, cnt)
			for i := range x {
				x[i] = float64(r + i%5)
			}
			if err := rt.Allreduce(ctx, c, x, x, rt.Sum[float64]()); err != nil {
				return err
			}
			for i, v := range x {
				if v != float64(6+4*(i%5)) {
					return fmt.Errorf("allreduce of %d: element %d is %v", cnt, i, v)
				}
			}
		}
		return c.Barrier(ctx)
	})
}

func pingPong(ctx context.Context, c *rt.Comm, peer, n int) error {
	want := vec[int32](c.Rank(), n, n)
	got := make([]int32, n)
	for i := range 3 {
		if (c.Rank()+i)%2 == 0 {
			if err := rt.Send(ctx, c, peer, 1, want); err != nil {
				return err
			}
			continue
		}
		if _, err := rt.Recv(ctx, c, peer, 1, got); err != nil {
			return err
		}
		if err := check(fmt.Sprintf("ping-pong of %d", n), got, vec[int32](peer, n, n)); err != nil {
			return err
		}
	}
	return nil
}

// window: rank 0 sends k messages of n bytes, rank 1 receives them with k
// Irecvs posted at once.
func window(ctx context.Context, c *rt.Comm, peer, k, n int) error {
	if c.Rank() == 0 {
		for i := range k {
			if err := rt.Send(ctx, c, peer, 2, vec[byte](i, n, 0)); err != nil {
				return err
			}
		}
		return nil
	}
	reqs := make([]*rt.Request, k)
	bufs := make([][]byte, k)
	for i := range reqs {
		bufs[i] = make([]byte, n)
		var err error
		if reqs[i], err = rt.Irecv(ctx, c, peer, 2, bufs[i]); err != nil {
			return err
		}
	}
	if _, err := rt.WaitAll(ctx, reqs...); err != nil {
		return err
	}
	for i := range bufs {
		if err := check(fmt.Sprintf("window message %d", i), bufs[i], vec[byte](i, n, 0)); err != nil {
			return err
		}
	}
	return nil
}

// flushSpace gives every writer a Flush that records how many bytes were
// written when it was called.
type flushSpace struct {
	rt.Space
	mu      sync.Mutex
	flushed map[string]int64
}

func (s *flushSpace) Create(ctx context.Context, name, key string, off int64) (rt.ChanWriter, error) {
	w, err := s.Space.Create(ctx, name, key, off)
	if err != nil {
		return nil, err
	}
	return &flushWriter{ChanWriter: w, s: s, name: name, n: off}, nil
}

type flushWriter struct {
	rt.ChanWriter
	s    *flushSpace
	name string
	n    int64
}

func (w *flushWriter) Write(p []byte) (int, error) {
	n, err := w.ChanWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *flushWriter) Flush(ctx context.Context) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	w.s.flushed[w.name] = w.n
	return nil
}

// TestCheckpointFlushesWriters: Checkpoint flushes the channels whose
// offsets it records, when their writers can flush.
func TestCheckpointFlushesWriters(t *testing.T) {
	sp := &flushSpace{Space: rt.NewMemSpace(), flushed: map[string]int64{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rt.New(ctx, sp, rt.Config{Rank: r, Size: 2})
			if err == nil {
				err = errors.Join(flushRank(ctx, c), c.Close())
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := sp.flushed["_rt/w/p2p/0-1"]; got != 24+100 {
		t.Fatalf("channel 0-1 flushed at %d bytes, want %d", got, 24+100)
	}
}

func flushRank(ctx context.Context, c *rt.Comm) error {
	if c.Rank() == 1 {
		_, err := rt.Recv(ctx, c, 0, 0, make([]byte, 100))
		return err
	}
	if err := rt.Send(ctx, c, 1, 0, make([]byte, 100)); err != nil {
		return err
	}
	return c.Checkpoint(ctx, 1, []byte("state"))
}
