package rt_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pispace/pispace/rt"
	"github.com/pispace/pispace/rt/rttest"
)

func TestSendRecvBasic(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() == 0 {
			return rt.Send(ctx, c, 1, 7, []float64{1.5, 2.5, 3.5})
		}
		buf := make([]float64, 8)
		st, err := rt.Recv(ctx, c, 0, 7, buf)
		if err != nil {
			return err
		}
		if st != (rt.Status{Source: 0, Tag: 7, Count: 3}) {
			return fmt.Errorf("status %+v", st)
		}
		return check("recv", buf[:3], []float64{1.5, 2.5, 3.5})
	})
}

// TestOrderingPerTag: many messages on interleaved tags from several
// senders, received tag by tag in reverse tag order, arrive in send order
// within each (source, tag).
func TestOrderingPerTag(t *testing.T) {
	const n, tags, per = 4, 5, 40
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() != 0 {
			for i := range tags * per {
				tag := i % tags
				if err := rt.Send(ctx, c, 0, tag, []int64{int64(c.Rank()), int64(i / tags)}); err != nil {
					return err
				}
			}
			return nil
		}
		buf := make([]int64, 2)
		for tag := tags - 1; tag >= 0; tag-- {
			for src := n - 1; src >= 1; src-- {
				for i := range per {
					if _, err := rt.Recv(ctx, c, src, tag, buf); err != nil {
						return err
					}
					if buf[0] != int64(src) || buf[1] != int64(i) {
						return fmt.Errorf("src %d tag %d: message %d is %v", src, tag, i, buf)
					}
				}
			}
		}
		return nil
	})
}

func TestAnySourceAnyTag(t *testing.T) {
	const n = 6
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if c.Rank() != 0 {
			return rt.Send(ctx, c, 0, 100+c.Rank(), []int32{int32(c.Rank())})
		}
		seen := map[int]bool{}
		buf := make([]int32, 1)
		for range n - 1 {
			st, err := rt.Recv(ctx, c, rt.AnySource, rt.AnyTag, buf)
			if err != nil {
				return err
			}
			if int(buf[0]) != st.Source || st.Tag != 100+st.Source || seen[st.Source] {
				return fmt.Errorf("status %+v with %v (seen %v)", st, buf, seen)
			}
			seen[st.Source] = true
		}
		return nil
	})
}

func TestIsendIrecvWaitAll(t *testing.T) {
	const n = 5
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		r := c.Rank()
		var reqs []*rt.Request
		bufs := make([][]uint16, n)
		for src := range n {
			bufs[src] = make([]uint16, 3)
			q, err := rt.Irecv(ctx, c, src, 3, bufs[src])
			if err != nil {
				return err
			}
			reqs = append(reqs, q)
		}
		for dst := range n {
			q, err := rt.Isend(ctx, c, dst, 3, []uint16{uint16(r), uint16(dst), 9})
			if err != nil {
				return err
			}
			reqs = append(reqs, q)
		}
		sts, err := rt.WaitAll(ctx, reqs...)
		if err != nil {
			return err
		}
		for src := range n {
			if sts[src].Source != src || sts[src].Count != 3 {
				return fmt.Errorf("status %d: %+v", src, sts[src])
			}
			if err := check("irecv", bufs[src], []uint16{uint16(src), uint16(r), 9}); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestTestAndCancel(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		buf := make([]int8, 1)
		if c.Rank() == 1 {
			if _, err := rt.Recv(ctx, c, 0, 1, buf); err != nil { // wait for go
				return err
			}
			return rt.Send(ctx, c, 0, 2, []int8{42})
		}
		q, err := rt.Irecv(ctx, c, 1, 2, buf)
		if err != nil {
			return err
		}
		if _, done, _ := q.Test(); done {
			return errors.New("Test reports done before any send")
		}
		dead, err := rt.Irecv(ctx, c, 1, 99, make([]int8, 1))
		if err != nil {
			return err
		}
		if !dead.Cancel() {
			return errors.New("Cancel of an unmatched receive returned false")
		}
		if _, err := dead.Wait(ctx); !errors.Is(err, context.Canceled) {
			return fmt.Errorf("cancelled request: %v", err)
		}
		if err := rt.Send(ctx, c, 1, 1, []int8{0}); err != nil {
			return err
		}
		if _, err := q.Wait(ctx); err != nil {
			return err
		}
		if _, done, err := q.Test(); !done || err != nil || buf[0] != 42 {
			return fmt.Errorf("after Wait: done=%v err=%v buf=%v", done, err, buf)
		}
		return nil
	})
}

func TestSendrecvRing(t *testing.T) {
	const n = 7
	run(t, n, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		r := c.Rank()
		got := make([]complex64, 2)
		st, err := rt.Sendrecv(ctx, c, []complex64{complex(float32(r), 1), 2}, (r+1)%n, 5,
			got, (r-1+n)%n, 5)
		if err != nil {
			return err
		}
		if st.Source != (r-1+n)%n {
			return fmt.Errorf("status %+v", st)
		}
		return check("sendrecv", got, []complex64{complex(float32((r-1+n)%n), 1), 2})
	})
}

func TestBytesAndSelf(t *testing.T) {
	run(t, 2, rttest.Options{}, func(ctx context.Context, c *rt.Comm) error {
		if err := rt.SendBytes(ctx, c, c.Rank(), 0, []byte("to myself")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		st, err := rt.RecvBytes(ctx, c, c.Rank(), 0, buf)
		if err != nil {
			return err
		}
		if string(buf[:st.Count]) != "to myself" {
			return fmt.Errorf("got %q", buf[:st.Count])
		}
		// Raw bytes are not uint8 elements.
		if err := rt.SendBytes(ctx, c, c.Rank(), 1, []byte{1}); err != nil {
			return err
		}
		_, err = rt.Recv(ctx, c, c.Rank(), 1, make([]uint8, 1))
		if !errors.Is(err, rt.ErrType) {
			return fmt.Errorf("uint8 receive of bytes: %v", err)
		}
		return nil
	})
}

// TestFlowControl: with a tiny unexpected-message budget, the pump stops
// reading ahead at the budget; a receive for a message queued behind many
// others still completes, and everything arrives in order.
func TestFlowControl(t *testing.T) {
	const many, budget = 200, 100
	opts := rttest.Options{Config: func(c *rt.Config) { c.MaxUnexpectedBytes = budget }}
	run(t, 3, opts, func(ctx context.Context, c *rt.Comm) error {
		buf := make([]int32, 1)
		switch c.Rank() {
		case 0:
			for i := range many + 2 {
				tag := min(i, 1)
				if i == many+1 {
					tag = 2
				}
				if err := rt.Send(ctx, c, 1, tag, []int32{int32(i)}); err != nil {
					return err
				}
			}
			return rt.Send(ctx, c, 2, 0, buf) // "all sent"
		case 2:
			if _, err := rt.Recv(ctx, c, 0, 0, buf); err != nil {
				return err
			}
			return rt.Send(ctx, c, 1, 0, buf)
		}
		if _, err := rt.Recv(ctx, c, 0, 0, buf); err != nil { // starts the pump on rank 0
			return err
		}
		if _, err := rt.Recv(ctx, c, 2, 0, buf); err != nil { // rank 0 has sent everything
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for rt.QueuedBytes(c, 0) < budget && time.Now().Before(deadline) {
			runtime.Gosched()
		}
		if q := rt.QueuedBytes(c, 0); q < budget || q > budget+4 {
			return fmt.Errorf("queued %d bytes with a budget of %d", q, budget)
		}
		if _, err := rt.Recv(ctx, c, 0, 2, buf); err != nil || buf[0] != many+1 {
			return fmt.Errorf("tag 2: %v %v", buf, err)
		}
		for i := 1; i <= many; i++ {
			if _, err := rt.Recv(ctx, c, 0, 1, buf); err != nil || buf[0] != int32(i) {
				return fmt.Errorf("tag 1 message %d: %v %v", i, buf, err)
			}
		}
		return nil
	})
}

func TestInPlaceReductions(t *testing.T) {
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			run(t, 5, rttest.Options{Config: cfg}, func(ctx context.Context, c *rt.Comm) error {
				x := []float64{float64(c.Rank()), 1, 2}
				if err := rt.Allreduce(ctx, c, x, x, rt.Sum[float64]()); err != nil {
					return err
				}
				if err := check("allreduce in place", x, []float64{10, 5, 10}); err != nil {
					return err
				}
				y := []int64{int64(c.Rank()), 1, 1}
				if err := rt.Scan(ctx, c, y, y, rt.Sum[int64]()); err != nil {
					return err
				}
				r := int64(c.Rank())
				if err := check("scan in place", y, []int64{r * (r + 1) / 2, r + 1, r + 1}); err != nil {
					return err
				}
				z := []int16{int16(c.Rank()), 2, 3}
				if err := rt.Reduce(ctx, c, 2, z, z, rt.Max[int16]()); err != nil {
					return err
				}
				if c.Rank() == 2 {
					return check("reduce in place", z, []int16{4, 2, 3})
				}
				return nil
			})
		})
	}
}
