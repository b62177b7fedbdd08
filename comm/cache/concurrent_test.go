package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

// TestConcurrentFollowers runs one writer per key, which restarts now and
// then from an earlier offset (replaying what it wrote), and several
// readers per key that follow it with Wait and ReadAt, while spilling
// keeps moving segments to disk and back.
func TestConcurrentFollowers(t *testing.T) {
	const (
		keys    = 4
		readers = 3
		total   = 96 * seg
	)
	s := newStore(t, spilling(t, 8*seg))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, keys*(readers+1))
	for i := range keys {
		k := cache.Key{Space: fmt.Sprintf("job/%d", i%2), Instance: uint64(i)}
		src := pattern(int64(i), 0, total)
		if _, err := s.Append(k, 0, nil); err != nil { // readers may start first
			t.Fatal(err)
		}
		wg.Go(func() { errs <- write(s, k, src, uint64(i)) })
		for r := range readers {
			wg.Go(func() { errs <- follow(ctx, s, k, src, 1+r*seg/2) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if st := s.Stats(); st.Spills == 0 || st.Loads == 0 {
		t.Errorf("Stats = %+v: want spills and loads under concurrency", st)
	}
}

// write appends src to k in random chunks, going back now and then as a
// restarted writer would, and seals it.
func write(s *cache.Store, k cache.Key, src []byte, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 99))
	var off int64
	for off < int64(len(src)) {
		if rng.IntN(10) == 0 && off > 0 { // restart from an earlier checkpoint
			off = rng.Int64N(off)
		}
		n := min(int64(1+rng.IntN(2*seg)), int64(len(src))-off)
		l, err := s.Append(k, off, src[off:off+n])
		if err != nil {
			return fmt.Errorf("writer %v: Append at %d: %w", k, off, err)
		}
		if l < off+n {
			return fmt.Errorf("writer %v: Append at %d+%d returned length %d", k, off, n, l)
		}
		off = l
	}
	return s.Seal(k, off)
}

// follow reads k from the start to io.EOF with chunk-byte reads, waiting
// for the writer, and checks every byte against src.
func follow(ctx context.Context, s *cache.Store, k cache.Key, src []byte, chunk int) error {
	buf := make([]byte, chunk)
	var off int64
	for {
		n, err := s.ReadAt(k, buf, off)
		if n > 0 && string(buf[:n]) != string(src[off:off+int64(n)]) {
			return fmt.Errorf("reader %v: wrong bytes at %d", k, off)
		}
		off += int64(n)
		switch {
		case errors.Is(err, io.EOF):
			if off != int64(len(src)) {
				return fmt.Errorf("reader %v: EOF at %d of %d", k, off, len(src))
			}
			return nil
		case err != nil:
			return fmt.Errorf("reader %v: ReadAt at %d: %w", k, off, err)
		case n == 0:
			if _, _, err := s.Wait(ctx, k, off); err != nil {
				return fmt.Errorf("reader %v: Wait at %d: %w", k, off, err)
			}
		}
	}
}

func TestOnSeal(t *testing.T) {
	type call struct {
		index int
		data  []byte
		crc   uint32
	}
	var mu sync.Mutex
	calls := map[cache.Key][]call{}
	var s *cache.Store
	s = newStore(t, spilling(t, 2*seg), func(c *cache.Config) {
		c.OnSeal = func(k cache.Key, index int, data []byte, crc uint32) {
			// No store lock is held: the store may be called back.
			if _, _, err := s.Stat(k); err != nil {
				t.Errorf("Stat from OnSeal: %v", err)
			}
			if _, c, release, err := s.Segment(k, index); err != nil || c != crc {
				t.Errorf("Segment from OnSeal: crc %08x, %v; want %08x", c, err, crc)
			} else {
				release()
			}
			mu.Lock()
			calls[k] = append(calls[k], call{index, bytes.Clone(data), crc}) // data is valid during the call only
			mu.Unlock()
		}
	})
	lengths := map[cache.Key]int64{
		{Space: "o", Instance: 1}: 5*seg + 123, // 5 full segments and a partial one
		{Space: "o", Instance: 2}: 3 * seg,     // sealed on a boundary
		{Space: "o", Instance: 3}: 0,           // empty
		{Space: "o", Instance: 4}: 10,          // one small partial segment
	}
	var wg sync.WaitGroup
	for k, total := range lengths {
		wg.Go(func() {
			if err := write(s, k, pattern(int64(k.Instance), 0, total), k.Instance); err != nil {
				t.Error(err)
			}
			if err := s.Seal(k, total); err != nil { // a second Seal reports nothing new
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for k, total := range lengths {
		src := pattern(int64(k.Instance), 0, total)
		want := int((total + seg - 1) / seg)
		got := calls[k]
		if len(got) != want {
			t.Errorf("%v: %d OnSeal calls, want %d", k, len(got), want)
			continue
		}
		for i, c := range got {
			end := min(int64(i+1)*seg, total)
			part := src[int64(i)*seg : end]
			if c.index != i || c.crc != cache.Checksum(part) || string(c.data) != string(part) {
				t.Errorf("%v: call %d = index %d crc %08x (%d bytes), want index %d crc %08x (%d bytes)",
					k, i, c.index, c.crc, len(c.data), i, cache.Checksum(part), len(part))
			}
		}
	}
}
