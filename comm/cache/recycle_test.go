package cache_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

// appendAll writes src as k's stream (from offset 0) and fails the test on
// error.
func appendAll(t testing.TB, s *cache.Store, k cache.Key, src []byte) {
	t.Helper()
	if n, err := s.Append(k, 0, src); err != nil || n != int64(len(src)) {
		t.Fatalf("Append %v = %d, %v", k, n, err)
	}
}

func mustDelete(t testing.TB, s *cache.Store, k cache.Key) {
	t.Helper()
	if err := s.Delete(k); err != nil {
		t.Fatal(err)
	}
}

// wantStats fails the test unless s's memory, free and recycled counters
// are as given.
func wantStats(t testing.TB, s *cache.Store, what string, mem, free, recycled int64) {
	t.Helper()
	st := s.Stats()
	if st.MemoryBytes != mem || st.FreeBytes != free || st.Recycled != recycled {
		t.Fatalf("%s: MemoryBytes %d FreeBytes %d Recycled %d; want %d %d %d",
			what, st.MemoryBytes, st.FreeBytes, st.Recycled, mem, free, recycled)
	}
}

func TestRecycleDeletedStream(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg }) // RecycleBytes 16 segments
	k1, k2, k3 := cache.Key{Space: "r", Instance: 1}, cache.Key{Space: "r", Instance: 2}, cache.Key{Space: "r", Instance: 3}
	appendAll(t, s, k1, pattern(1, 0, 8*seg))
	wantStats(t, s, "after writing", 8*seg, 0, 0)
	mustDelete(t, s, k1)
	wantStats(t, s, "after Delete", 0, 8*seg, 0)

	src := pattern(2, 0, 9*seg+100)
	appendAll(t, s, k2, src) // 8 recycled buffers, then 2 fresh
	wantStats(t, s, "after rewriting", 10*seg, 0, 8)
	mustEqual(t, "stream in recycled buffers", readAll(t, s, k2, 3*seg+1), src)

	appendAll(t, s, k3, pattern(3, 0, 40*seg))
	mustDelete(t, s, k3)
	wantStats(t, s, "after deleting 40 segments", 10*seg, 16*seg, 8) // bounded by RecycleBytes
	mustEqual(t, "other stream", readAll(t, s, k2, seg), src)
}

func TestRecycleBounds(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg; c.RecycleBytes = -1 })
		k := cache.Key{Space: "b", Instance: 1}
		appendAll(t, s, k, pattern(1, 0, 8*seg))
		mustDelete(t, s, k)
		appendAll(t, s, k, pattern(1, 0, 8*seg))
		wantStats(t, s, "without recycling", 8*seg, 0, 0)
	})
	t.Run("memory bound", func(t *testing.T) {
		// In use plus free stays within MemoryBytes, in a memory-only store
		// and in a spilling one.
		for _, mutate := range []func(*cache.Config){
			func(c *cache.Config) { c.MemoryBytes = 16 * seg; c.RecycleBytes = 16 * seg },
			spilling(t, 16*seg),
		} {
			s := newStore(t, mutate, func(c *cache.Config) { c.RecycleBytes = 16 * seg; c.SegmentSize = 4 * seg })
			const big = 4 * seg // the segment size here: tails start at 4 KiB and double
			check := func(what string) {
				t.Helper()
				if st := s.Stats(); st.MemoryBytes+st.FreeBytes > 16*seg {
					t.Fatalf("%s: MemoryBytes %d + FreeBytes %d > bound %d", what, st.MemoryBytes, st.FreeBytes, 16*seg)
				}
			}
			k := cache.Key{Space: "b", Instance: 0}
			appendAll(t, s, k, pattern(0, 0, 3*big))
			mustDelete(t, s, k)
			if st := s.Stats(); st.FreeBytes != 3*big {
				t.Fatalf("FreeBytes %d after Delete, want %d", st.FreeBytes, 3*big)
			}
			for i := range uint64(8) { // small streams take fresh small buffers: free ones must go
				appendAll(t, s, cache.Key{Space: "b", Instance: 1 + i}, pattern(int64(i), 0, 100))
				check(fmt.Sprintf("small stream %d", i))
			}
			if st := s.Stats(); st.FreeBytes >= 3*big {
				t.Fatalf("FreeBytes %d: free buffers kept beyond the memory bound", st.FreeBytes)
			}
		}
	})
}

func TestRecyclePinnedSegment(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg })
	k1, k2, k3 := cache.Key{Space: "p", Instance: 1}, cache.Key{Space: "p", Instance: 2}, cache.Key{Space: "p", Instance: 3}
	src := pattern(1, 0, 4*seg)
	appendAll(t, s, k1, src)
	data, _, release, err := s.Segment(k1, 1)
	if err != nil {
		t.Fatal(err)
	}
	mustDelete(t, s, k1)
	wantStats(t, s, "deleted with segment 1 pinned", 0, 3*seg, 0)
	appendAll(t, s, k2, pattern(2, 0, 8*seg)) // takes every free buffer, then fresh ones
	wantStats(t, s, "rewritten", 8*seg, 0, 3)
	mustEqual(t, "pinned segment of a deleted stream", data, src[seg:2*seg])
	if _, err := s.ReadAt(k1, make([]byte, 1), 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("ReadAt of the deleted stream: %v", err)
	}
	release()
	wantStats(t, s, "released", 8*seg, seg, 3)
	appendAll(t, s, k3, pattern(3, 0, seg))
	wantStats(t, s, "reused", 9*seg, 0, 4)
	mustEqual(t, "stream in the released buffer", readAll(t, s, k3, seg), pattern(3, 0, seg))
}

// TestRecyclePinnedTail pins the open tail as ReadAt does, then lets it
// fill up (it becomes an immutable segment's buffer) and deletes the
// stream: its bytes stay intact until the pin goes.
func TestRecyclePinnedTail(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg })
	k1, k2 := cache.Key{Space: "t", Instance: 1}, cache.Key{Space: "t", Instance: 2}
	src := pattern(1, 0, 2*seg)
	appendAll(t, s, k1, src[:seg/2])
	tail, unpin := cache.TailView(s, k1)
	mustEqual(t, "pinned tail", tail, src[:seg/2])
	if n, err := s.Append(k1, seg/2, src[seg/2:]); err != nil || n != 2*seg {
		t.Fatalf("Append = %d, %v", n, err)
	}
	if err := s.Seal(k1, 2*seg); err != nil {
		t.Fatal(err)
	}
	mustDelete(t, s, k1)
	wantStats(t, s, "deleted with the old tail pinned", 0, seg, 0)
	appendAll(t, s, k2, pattern(2, 0, 4*seg))
	mustEqual(t, "pinned tail of a deleted stream", tail, src[:seg/2])
	unpin()
	wantStats(t, s, "unpinned", 4*seg, seg, 1)
}

// TestRecyclePinnedEvicted pins a segment that spilling then evicts: the
// evicted buffer is not reused while pinned, the others are, and the
// segment reads back from disk, into a recycled buffer, intact.
func TestRecyclePinnedEvicted(t *testing.T) {
	s := newStore(t, spilling(t, 8*seg), func(c *cache.Config) { c.RecycleBytes = 8 * seg })
	k1, k2 := cache.Key{Space: "e", Instance: 1}, cache.Key{Space: "e", Instance: 2}
	src1, src2 := pattern(1, 0, 4*seg), pattern(2, 0, 16*seg)
	appendAll(t, s, k1, src1)
	data, _, release, err := s.Segment(k1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < int64(len(src2)); off += seg { // spills k1, then k2's oldest
		if _, err := s.Append(k2, off, src2[off:off+seg]); err != nil {
			t.Fatal(err)
		}
	}
	if cache.InMemory(s, k1, 0) {
		t.Fatal("pinned segment 0 of k1 was not evicted")
	}
	st := s.Stats()
	if st.Spills == 0 || st.Recycled == 0 {
		t.Fatalf("Stats = %+v: want spills and recycled buffers", st)
	}
	mustEqual(t, "pinned evicted segment", data, src1[:seg])
	release()
	before := s.Stats().Recycled
	mustEqual(t, "k1 read back", readAll(t, s, k1, 3*seg), src1)
	mustEqual(t, "k2 read back", readAll(t, s, k2, 3*seg), src2)
	if st := s.Stats(); st.Loads == 0 || st.Recycled == before {
		t.Errorf("Stats = %+v: want loads into recycled buffers", st)
	}
}

// TestRecycleOnSealPinned deletes the stream from inside OnSeal and writes
// another one: the bytes OnSeal was given stay intact until it returns.
func TestRecycleOnSealPinned(t *testing.T) {
	k1, k2 := cache.Key{Space: "o", Instance: 1}, cache.Key{Space: "o", Instance: 2}
	src := pattern(1, 0, seg)
	var s *cache.Store
	calls := 0
	s = newStore(t, func(c *cache.Config) {
		c.MemoryBytes = 64 * seg
		c.OnSeal = func(k cache.Key, index int, data []byte, crc uint32) {
			if k != k1 {
				return
			}
			calls++
			if err := s.Delete(k1); err != nil {
				t.Error(err)
			}
			if _, err := s.Append(k2, 0, pattern(2, 0, 4*seg)); err != nil {
				t.Error(err)
			}
			if !bytes.Equal(data, src) {
				t.Error("OnSeal's bytes changed while it ran")
			}
		}
	})
	if _, err := s.Append(k1, 0, src); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("%d OnSeal calls", calls)
	}
	wantStats(t, s, "after OnSeal", 4*seg, seg, 0)
}

// TestRecycleStress runs writers that create, fill, seal and delete
// streams over and over (so buffers are recycled all the time) against
// readers using ReadAt and Segment on whatever streams exist, and checks
// every byte read: byte i of instance n is pattern(n, i). Run with -race,
// it also checks that no buffer is written while a reader may copy from
// it.
func TestRecycleStress(t *testing.T) {
	for _, mode := range []struct {
		name   string
		mutate func(*cache.Config)
	}{
		{"memory", func(c *cache.Config) { c.MemoryBytes = 64 * seg; c.RecycleBytes = 16 * seg }},
		{"spill", spilling(t, 12*seg)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := newStore(t, mode.mutate, func(c *cache.Config) { c.RecycleBytes = 16 * seg })
			runStress(t, s, 3, 3, 60)
			if st := s.Stats(); st.Recycled == 0 || st.Streams != 0 || st.MemoryBytes != 0 {
				t.Errorf("Stats at the end = %+v: want recycling, no stream and no memory in use", st)
			}
		})
	}
}

// stressKeys hands out instance numbers and tells readers which were
// created lately (some are deleted by then, which readers must expect).
type stressKeys struct{ next atomic.Uint64 }

func (sk *stressKeys) create() cache.Key {
	return cache.Key{Space: "stress", Instance: sk.next.Add(1)}
}

func (sk *stressKeys) recent(rng *rand.Rand) cache.Key {
	n := sk.next.Load()
	return cache.Key{Space: "stress", Instance: n - min(n, rng.Uint64N(8))}
}

func runStress(t *testing.T, s *cache.Store, writers, readers, streams int) {
	var keys stressKeys
	done := make(chan struct{})
	var wwg, rwg sync.WaitGroup
	errs := make(chan error, writers+2*readers)
	for w := range writers {
		wwg.Go(func() { errs <- stressWrite(s, &keys, rand.New(rand.NewPCG(uint64(w), 1)), streams) })
	}
	for r := range readers {
		rwg.Go(func() { errs <- stressRead(s, &keys, rand.New(rand.NewPCG(uint64(r), 2)), done) })
		rwg.Go(func() { errs <- stressSegment(s, &keys, rand.New(rand.NewPCG(uint64(r), 3)), done) })
	}
	wwg.Wait()
	close(done)
	rwg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// stressWrite writes streams of up to 8 segments in random chunks, seals
// some, and deletes each, some of them before they are complete.
func stressWrite(s *cache.Store, keys *stressKeys, rng *rand.Rand, streams int) error {
	for range streams {
		k := keys.create()
		total := int64(1 + rng.IntN(8*seg))
		stop := total
		if rng.IntN(4) == 0 {
			stop = rng.Int64N(total)
		}
		src := pattern(int64(k.Instance), 0, total)
		if _, err := s.Append(k, 0, nil); err != nil {
			return err
		}
		for off := int64(0); off < stop; {
			n := min(int64(1+rng.IntN(2*seg)), stop-off)
			l, err := s.Append(k, off, src[off:off+n])
			if err != nil {
				return fmt.Errorf("writer: Append %v at %d: %w", k, off, err)
			}
			off = l
		}
		if stop == total && rng.IntN(2) == 0 {
			if err := s.Seal(k, total); err != nil {
				return err
			}
		}
		if err := s.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// stressRead reads recent streams with ReadAt at random offsets.
func stressRead(s *cache.Store, keys *stressKeys, rng *rand.Rand, done <-chan struct{}) error {
	buf := make([]byte, 3*seg)
	for {
		select {
		case <-done:
			return nil
		default:
		}
		k := keys.recent(rng)
		l, _, err := s.Stat(k)
		if err != nil {
			continue
		}
		off := rng.Int64N(l + 1)
		p := buf[:rng.IntN(len(buf))]
		n, err := s.ReadAt(k, p, off)
		if err != nil && !errors.Is(err, cache.ErrNotFound) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reader: ReadAt %v at %d: %w", k, off, err)
		}
		if !bytes.Equal(p[:n], pattern(int64(k.Instance), off, int64(n))) {
			return fmt.Errorf("reader: wrong bytes from %v at %d+%d", k, off, n)
		}
	}
}

// stressSegment takes whole segments of recent streams and checks them
// twice, the second time after the writers had a chance to move on.
func stressSegment(s *cache.Store, keys *stressKeys, rng *rand.Rand, done <-chan struct{}) error {
	for {
		select {
		case <-done:
			return nil
		default:
		}
		k := keys.recent(rng)
		i := rng.IntN(8)
		data, _, release, err := s.Segment(k, i)
		if err != nil {
			if errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrOffset) || errors.Is(err, cache.ErrNotSealed) {
				continue
			}
			return fmt.Errorf("reader: Segment %d of %v: %w", i, k, err)
		}
		want := pattern(int64(k.Instance), int64(i)*seg, int64(len(data)))
		for range 2 {
			if !bytes.Equal(data, want) {
				release()
				return fmt.Errorf("reader: wrong bytes in segment %d of %v", i, k)
			}
			runtime.Gosched()
		}
		release()
	}
}

// slab is a Config.Memory of n whole segment buffers that records what it
// hands out and takes back.
type slab struct {
	mu    sync.Mutex
	free  [][]byte
	mine  map[*byte]bool
	freed int
}

func newSlab(n, size int) *slab {
	s := &slab{mine: map[*byte]bool{}}
	for range n {
		b := make([]byte, size)
		s.free = append(s.free, b)
		s.mine[&b[0]] = true
	}
	return s
}

func (s *slab) Alloc(size int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 || len(s.free[0]) != size {
		return nil
	}
	b := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return b
}

func (s *slab) Free(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b) == 0 || !s.mine[&b[:1][0]] {
		return false
	}
	s.free = append(s.free, b[:cap(b)])
	s.freed++
	return true
}

// reserving is a slab that takes a fresh buffer's memory on Reserve, or
// fails to when fail is set.
type reserving struct {
	*slab
	fail     bool
	reserved int
}

func (r *reserving) Reserve(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail || !r.mine[&b[:1][0]] {
		return errors.New("no memory")
	}
	r.reserved++
	return nil
}

// TestTakeBufferReserves: a fresh buffer from a Reserver comes cold, its
// memory reserved; when Reserve fails, or the buffer is a free one, it
// comes faulted in (not cold).
func TestTakeBufferReserves(t *testing.T) {
	r := &reserving{slab: newSlab(4, seg)}
	s, err := cache.Open(cache.Config{MemoryBytes: 64 * seg, SegmentSize: seg, Memory: r})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, cold := s.TakeBuffer()
	if !cold || r.reserved != 1 {
		t.Fatalf("fresh buffer of a Reserver: cold %v, %d reserved", cold, r.reserved)
	}
	s.GiveBuffer(b) // recycled: the next one is that free buffer
	if _, cold := s.TakeBuffer(); cold || r.reserved != 1 {
		t.Fatalf("free buffer: cold %v, %d reserved", cold, r.reserved)
	}
	r.fail = true
	if b, cold := s.TakeBuffer(); cold || len(b) != seg {
		t.Fatalf("Reserve failed: cold %v, %d bytes", cold, len(b))
	}
}

func (s *slab) counts() (free, freed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.free), s.freed
}

// TestMemoryProvidesSegmentBuffers: with Config.Memory, whole segment
// buffers come from it while it has any, then from the heap; every
// buffer the store lets go of (past what it recycles, and at Close) goes
// back to it, and only its own.
func TestMemoryProvidesSegmentBuffers(t *testing.T) {
	m := newSlab(4, seg)
	s, err := cache.Open(cache.Config{MemoryBytes: 64 * seg, SegmentSize: seg, RecycleBytes: -1, Memory: m})
	if err != nil {
		t.Fatal(err)
	}
	k := cache.Key{Space: "m", Instance: 1}
	src := pattern(1, 0, 10*seg)
	appendAll(t, s, k, src) // the first segment grows from the heap up to a whole buffer from m
	if free, _ := m.counts(); free != 0 {
		t.Fatalf("%d of 4 buffers still free after 10 segments", free)
	}
	mustEqual(t, "stream over slab and heap buffers", readAll(t, s, k, seg/3), src)
	mustDelete(t, s, k)
	if free, freed := m.counts(); free != 4 || freed != 4 {
		t.Fatalf("after Delete without recycling: %d free, %d given back; want 4 and 4", free, freed)
	}

	appendAll(t, s, k, src)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if free, _ := m.counts(); free != 4 {
		t.Fatalf("after Close: %d of 4 buffers back", free)
	}
}

// TestAppendOwned: a segment begun with AppendOwned takes the caller's
// buffer (pinned until unpinned), and later bytes written into it where
// they belong are appended in place; anywhere else the bytes are copied
// and the buffer stays the caller's.
func TestAppendOwned(t *testing.T) {
	m := newSlab(8, seg)
	s, err := cache.Open(cache.Config{MemoryBytes: 64 * seg, SegmentSize: seg, RecycleBytes: -1, Memory: m})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := cache.Key{Space: "o", Instance: 1}
	src := pattern(1, 0, 3*seg)
	appendAll(t, s, k, src[:seg]) // the first segment: never taken

	buf, cold := s.TakeBuffer()
	if len(buf) != seg || cold { // no free buffer: a fresh one of Memory's, faulted in
		t.Fatalf("TakeBuffer: %d bytes, cold %v", len(buf), cold)
	}
	copy(buf[:100], src[seg:seg+100])
	n, unpin, err := s.AppendOwned(k, seg, buf, buf[:100])
	if err != nil || n != seg+100 || unpin == nil {
		t.Fatalf("AppendOwned at a segment's start = %d, unpin %v, %v", n, unpin != nil, err)
	}
	copy(buf[100:seg], src[seg+100:2*seg]) // the rest where it belongs: no copy
	if n, err := s.Append(k, seg+100, buf[100:seg]); err != nil || n != 2*seg {
		t.Fatalf("Append in place = %d, %v", n, err)
	}
	buf[5] ^= 0xff // the segment is buf itself
	want := bytes.Clone(src[:2*seg])
	want[seg+5] ^= 0xff
	mustEqual(t, "segment taken from the caller", readAll(t, s, k, seg/3), want)
	buf[5] ^= 0xff

	// Mid-segment, or over bytes the stream has: copied, buffer kept.
	other, _ := s.TakeBuffer()
	copy(other[10:], src[2*seg:2*seg+50])
	if _, unpin, err := s.AppendOwned(k, 2*seg, other[10:], other[10:60]); err != nil || unpin != nil {
		t.Fatalf("AppendOwned not at the buffer's start: unpin %v, %v", unpin != nil, err)
	}
	if _, unpin, err := s.AppendOwned(k, seg, other, src[seg:seg+10]); err != nil || unpin != nil {
		t.Fatalf("AppendOwned of a replay: unpin %v, %v", unpin != nil, err)
	}
	other[10] ^= 0xff
	mustEqual(t, "copied bytes", readAll(t, s, k, seg)[2*seg:], src[2*seg:2*seg+50])
	s.GiveBuffer(other)

	// The pinned buffer outlives the stream, then goes back.
	mustDelete(t, s, k)
	if free, _ := m.counts(); free != 7 {
		t.Fatalf("%d of 8 buffers free with the taken one pinned, want 7", free)
	}
	unpin()
	if free, _ := m.counts(); free != 8 {
		t.Fatalf("%d of 8 buffers free after unpin", free)
	}
}

// filling is a slab that fills its own buffers (a cache.Filler), counting
// the bytes, and refuses to when fail is set; fills says whether it Fills.
type filling struct {
	*slab
	fills  bool
	fail   bool
	filled int
}

func (f *filling) Fills() bool { return f.fills }

func (f *filling) Fill(dst, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail || len(dst) < len(p) {
		return errors.New("no")
	}
	f.filled += copy(dst, p)
	return nil
}

// TestFillerWritesSegments: a Filler that Fills writes the bytes the store
// copies into its buffers (and the stream reads back whole); when Fill
// fails the store copies; one that does not Fill is never asked.
func TestFillerWritesSegments(t *testing.T) {
	for _, c := range []struct {
		name        string
		fills, fail bool
	}{{"fills", true, false}, {"fill fails", true, true}, {"does not fill", false, false}} {
		t.Run(c.name, func(t *testing.T) {
			f := &filling{slab: newSlab(8, seg), fills: c.fills, fail: c.fail}
			s, err := cache.Open(cache.Config{MemoryBytes: 64 * seg, SegmentSize: seg, RecycleBytes: -1, Memory: f})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			k := cache.Key{Space: "f", Instance: 1}
			src := pattern(3, 0, 4*seg+seg/2)
			appendAll(t, s, k, src)
			mustEqual(t, c.name, readAll(t, s, k, seg/3), src)
			f.mu.Lock()
			filled := f.filled
			f.mu.Unlock()
			switch {
			case c.fills && !c.fail && filled < 3*seg: // all but the first segment, which grows from the heap
				t.Fatalf("%d of %d bytes filled by the Filler", filled, len(src))
			case (!c.fills || c.fail) && filled != 0:
				t.Fatalf("%d bytes filled by a Filler that does not fill", filled)
			}
		})
	}
}
