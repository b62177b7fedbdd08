package cache_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

// waitPrefilled waits until s's free list holds want bytes and returns
// its stats then.
func waitPrefilled(t *testing.T, s *cache.Store, want int64) cache.Stats {
	t.Helper()
	var st cache.Stats
	checkFor(t, 10*time.Second, func() error {
		st = s.Stats()
		if st.FreeBytes != want {
			return fmt.Errorf("FreeBytes %d, want %d (Prefilled %d)", st.FreeBytes, want, st.Prefilled)
		}
		return nil
	})
	return st
}

// TestPrefill: a store with Prefill keeps that many fresh buffers on its
// free list from the start, and again after appends took them; appends
// take them instead of fresh memory; the bytes are intact.
func TestPrefill(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg; c.Prefill = 4 })
	st := waitPrefilled(t, s, 4*seg)
	if st.Prefilled != 4 || st.MemoryBytes != 0 {
		t.Fatalf("at open: Prefilled %d MemoryBytes %d; want 4, 0", st.Prefilled, st.MemoryBytes)
	}
	k := cache.Key{Space: "p", Instance: 1}
	src := pattern(5, 0, 10*seg)
	for off := int64(0); off < int64(len(src)); off += seg / 2 {
		if _, err := s.Append(k, off, src[off:off+seg/2]); err != nil {
			t.Fatal(err)
		}
	}
	mustEqual(t, "stream in prefilled buffers", readAll(t, s, k, 3*seg+7), src)
	st = waitPrefilled(t, s, 4*seg)
	if st.Recycled < 4 || st.Prefilled < 8 || st.MemoryBytes != 10*seg {
		t.Fatalf("after 10 segments: Recycled %d Prefilled %d MemoryBytes %d; want >= 4, >= 8, %d",
			st.Recycled, st.Prefilled, st.MemoryBytes, 10*seg)
	}
}

// TestPrefillBounds: prefilled buffers stay within RecycleBytes, and
// within MemoryBytes together with the buffers in use; with Prefill zero,
// or no free list, there are none.
func TestPrefillBounds(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 8 * seg; c.RecycleBytes = 3 * seg; c.Prefill = 6 })
	waitPrefilled(t, s, 3*seg) // RecycleBytes
	k := cache.Key{Space: "p", Instance: 1}
	appendAll(t, s, k, pattern(1, 0, 7*seg))
	st := waitPrefilled(t, s, 1*seg) // MemoryBytes: 7 in use, room for one
	if st.MemoryBytes+st.FreeBytes > 8*seg {
		t.Fatalf("MemoryBytes %d + FreeBytes %d over the bound %d", st.MemoryBytes, st.FreeBytes, 8*seg)
	}
	mustDelete(t, s, k)
	waitPrefilled(t, s, 3*seg)

	for name, mutate := range map[string]func(*cache.Config){
		"without Prefill":     func(*cache.Config) {},
		"without a free list": func(c *cache.Config) { c.Prefill, c.RecycleBytes = 4, -1 },
	} {
		off := newStore(t, mutate)
		appendAll(t, off, k, pattern(1, 0, 3*seg))
		mustDelete(t, off, k)
		if st := off.Stats(); st.Prefilled != 0 || st.Recycled != 0 {
			t.Fatalf("%s: Prefilled %d Recycled %d", name, st.Prefilled, st.Recycled)
		}
	}
}

// TestPrefillClose: Close stops the prefilling goroutine, even one busy
// with a long prefill, and keeps nothing after.
func TestPrefillClose(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := cache.Open(cache.Config{SegmentSize: 1 << 20, MemoryBytes: 1 << 30, RecycleBytes: 1 << 30, Prefill: 512})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.FreeBytes != 0 {
		t.Fatalf("after Close: FreeBytes %d (Prefilled %d)", st.FreeBytes, st.Prefilled)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before Open", n, before)
	}
}
