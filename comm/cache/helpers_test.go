package cache_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

const seg = cache.MinSegmentSize // segment size of most tests: 4 KiB

// newStore opens a store with 4 KiB segments, changed by the mutators, and
// closes it at the end of the test.
func newStore(t testing.TB, mutate ...func(*cache.Config)) *cache.Store {
	t.Helper()
	cfg := cache.Config{SegmentSize: seg}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := cache.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// storeMode is a kind of store a test runs on.
type storeMode struct {
	name   string
	mutate func(*cache.Config)
}

// memoryAndSpill are the two kinds of store most tests run on: memory
// only, and one that spills every immutable segment (1 byte of memory).
func memoryAndSpill(t testing.TB) []storeMode {
	return []storeMode{{"memory", func(*cache.Config) {}}, {"spill", spilling(t, 1)}}
}

// spilling makes a store spill into a test directory beyond mem bytes.
func spilling(t testing.TB, mem int64) func(*cache.Config) {
	dir := t.TempDir()
	return func(c *cache.Config) { c.Dir = dir; c.MemoryBytes = mem }
}

// pattern returns n bytes of a stream named by seed starting at offset
// off: byte i depends on seed and i, so every offset has its own value.
func pattern(seed, off, n int64) []byte {
	b := make([]byte, n)
	for i := range b {
		x := uint64(off+int64(i))*0x9E3779B97F4A7C15 + uint64(seed)*0xBF58476D1CE4E5B9
		b[i] = byte(x >> 56)
	}
	return b
}

// readAll reads k's whole stream with ReadAt in chunks of chunk bytes.
func readAll(t testing.TB, s *cache.Store, k cache.Key, chunk int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := s.ReadAt(k, buf, int64(len(out)))
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadAt %v at %d: %v", k, len(out), err)
		}
		if n == 0 {
			return out // open stream, at its end
		}
	}
}

// mustEqual fails the test if got differs from want, naming the first
// differing offset.
func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: got %d bytes, want %d; first difference at %d", what, len(got), len(want), i)
}

// checkFor polls fn every millisecond until it returns nil or total
// elapses, then fails with fn's last error.
func checkFor(t testing.TB, total time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkFor: %v", err)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}
