package rt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestReadAheadParksAtLargeFrame: a read-ahead pump queues small
// unexpected messages but stops at the header of one over readAheadMax,
// which the receive then reads itself; order and contents are kept.
func TestReadAheadParksAtLargeFrame(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	space := NewMemSpace()
	big := make([]byte, readAheadMax+1)
	for i := range big {
		big[i] = byte(i * 7)
	}
	ranks := [2]func(c *Comm) error{
		func(c *Comm) error {
			for _, m := range []struct {
				tag int
				p   []byte
			}{{0, []byte{1}}, {1, []byte{2, 3, 4, 5}}, {2, big}, {3, []byte{6}}} {
				if err := SendBytes(ctx, c, 1, m.tag, m.p); err != nil {
					return err
				}
			}
			return nil
		},
		func(c *Comm) error {
			buf := make([]byte, len(big))
			if _, err := RecvBytes(ctx, c, 0, 0, buf); err != nil { // arms read-ahead
				return err
			}
			in := &c.in
			parked := func() (bool, int64) {
				in.mu.Lock()
				defer in.mu.Unlock()
				return in.srcs[0].parked && !in.srcs[0].busy, in.srcs[0].queued
			}
			deadline := time.Now().Add(10 * time.Second)
			for p, _ := parked(); !p; p, _ = parked() {
				if time.Now().After(deadline) {
					return errors.New("read-ahead never parked")
				}
				time.Sleep(time.Millisecond)
			}
			if _, q := parked(); q != 4 {
				return fmt.Errorf("parked with %d bytes queued, want 4 (the small message)", q)
			}
			st, err := RecvBytes(ctx, c, 0, 2, buf)
			if err != nil || st.Count != len(big) || string(buf) != string(big) {
				return fmt.Errorf("large message: %d bytes, %v", st.Count, err)
			}
			if p, _ := parked(); p {
				return errors.New("still parked after the large message was received")
			}
			for _, m := range []struct {
				tag  int
				want string
			}{{1, "\x02\x03\x04\x05"}, {3, "\x06"}} {
				st, err := RecvBytes(ctx, c, 0, m.tag, buf)
				if err != nil || string(buf[:st.Count]) != m.want {
					return fmt.Errorf("tag %d: %q %v", m.tag, buf[:st.Count], err)
				}
			}
			return nil
		},
	}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := New(ctx, space, Config{Rank: r, Size: 2})
			if err == nil {
				err = errors.Join(ranks[r](c), c.Close())
			}
			errs[r] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
