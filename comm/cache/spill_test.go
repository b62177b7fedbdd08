package cache_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

func TestSpillBoundedAndIdentical(t *testing.T) {
	const bound = 4 * seg
	s := newStore(t, spilling(t, bound))
	keys := []cache.Key{{Space: "job/1", Instance: 1}, {Space: "job/1", Instance: 2}, {Space: "job/2", Instance: 1}}
	const total = 40 * seg
	srcs := make([][]byte, len(keys))
	lens := make([]int64, len(keys))
	for i := range keys {
		srcs[i] = pattern(int64(10+i), 0, total)
	}
	// limit is the bound plus the open tails, which never spill.
	limit := int64(bound + len(keys)*seg)
	rng := rand.New(rand.NewPCG(1, 2))
	for done := 0; done < len(keys); {
		i := rng.IntN(len(keys))
		if lens[i] == total {
			continue
		}
		n := min(int64(1+rng.IntN(3*seg)), total-lens[i])
		l, err := s.Append(keys[i], lens[i], srcs[i][lens[i]:lens[i]+n])
		if err != nil || l != lens[i]+n {
			t.Fatalf("Append = %d, %v", l, err)
		}
		lens[i] = l
		if lens[i] == total {
			done++
		}
		if m := s.Stats().MemoryBytes; m > limit {
			t.Fatalf("MemoryBytes %d > bound %d + open tails", m, bound)
		}
	}
	st := s.Stats()
	if st.Spills == 0 || st.SpilledBytes < 3*(total-bound) {
		t.Fatalf("Stats after writing = %+v: too little spilled", st)
	}
	files, _ := os.ReadDir(s.SpillDir())
	if int64(len(files)) != st.Spills {
		t.Errorf("%d spill files, %d spills", len(files), st.Spills)
	}
	for i, k := range keys {
		if err := s.Seal(k, total); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, k.String(), readAll(t, s, k, 3*seg+1), srcs[i])
		if m := s.Stats().MemoryBytes; m > bound+seg { // reads load, then spill again
			t.Fatalf("MemoryBytes %d after reading back, bound %d", m, bound)
		}
	}
	if s.Stats().Loads == 0 {
		t.Error("nothing was read back from disk")
	}
}

func TestSpillLRU(t *testing.T) {
	s := newStore(t, spilling(t, 4*seg))
	k := cache.Key{Space: "lru", Instance: 1}
	if _, err := s.Append(k, 0, pattern(1, 0, 4*seg)); err != nil { // segments 0..3, at the bound
		t.Fatal(err)
	}
	if _, err := s.ReadAt(k, make([]byte, 1), 0); err != nil { // touch segment 0
		t.Fatal(err)
	}
	if _, err := s.Append(k, 4*seg, pattern(1, 4*seg, seg)); err != nil { // segment 4 passes the bound
		t.Fatal(err)
	}
	if !cache.InMemory(s, k, 0) || cache.InMemory(s, k, 1) {
		t.Errorf("after touching segment 0: in memory 0=%v 1=%v; want segment 1 evicted first",
			cache.InMemory(s, k, 0), cache.InMemory(s, k, 1))
	}
}

func TestSpillCorrupt(t *testing.T) {
	k := cache.Key{Space: "bad/space name", Instance: 3}
	src := pattern(7, 0, 8*seg)
	damage := map[string]func(path string) error{
		"flipped data byte": func(p string) error { return rewrite(p, func(b []byte) []byte { b[len(b)-100] ^= 1; return b }) },
		"flipped header":    func(p string) error { return rewrite(p, func(b []byte) []byte { b[9] ^= 1; return b }) },
		"truncated":         func(p string) error { return rewrite(p, func(b []byte) []byte { return b[:len(b)-1] }) },
		"extended":          func(p string) error { return rewrite(p, func(b []byte) []byte { return append(b, 0) }) },
		"empty":             func(p string) error { return rewrite(p, func(b []byte) []byte { return nil }) },
		"removed":           os.Remove,
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			s := newStore(t, spilling(t, 2*seg))
			if _, err := s.Append(k, 0, src); err != nil {
				t.Fatal(err)
			}
			if cache.InMemory(s, k, 1) {
				t.Fatal("segment 1 still in memory")
			}
			if err := fn(cache.SpillPath(s, k, 1)); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 3*seg)
			n, err := s.ReadAt(k, buf, 0)
			if !errors.Is(err, cache.ErrCorrupt) || n != seg {
				t.Fatalf("ReadAt over a damaged segment = %d, %v; want %d, ErrCorrupt", n, err, seg)
			}
			mustEqual(t, "bytes before the damaged segment", buf[:n], src[:seg])
			if _, _, _, err := s.Segment(k, 1); !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("Segment: %v, want ErrCorrupt", err)
			}
			if _, err := s.Append(k, seg, src[seg:2*seg]); !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("replay over a damaged segment: %v, want ErrCorrupt", err)
			}
			// The other segments still read back.
			if _, err := s.ReadAt(k, buf, 2*seg); err != nil {
				t.Errorf("ReadAt after the damaged segment: %v", err)
			}
		})
	}
}

func rewrite(path string, fn func([]byte) []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, fn(b), 0o600)
}

func TestSpillFailure(t *testing.T) {
	s := newStore(t, spilling(t, 2*seg))
	if err := os.RemoveAll(s.SpillDir()); err != nil {
		t.Fatal(err)
	}
	k := cache.Key{Space: "f", Instance: 1}
	src := pattern(8, 0, 4*seg)
	n, err := s.Append(k, 0, src)
	if !errors.Is(err, cache.ErrSpill) {
		t.Fatalf("Append with the spill directory gone = %d, %v; want ErrSpill", n, err)
	}
	// What was acknowledged by the length is stored and readable.
	mustEqual(t, "stored prefix", readAll(t, s, k, seg)[:n], src[:n])
}
