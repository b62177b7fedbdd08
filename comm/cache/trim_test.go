package cache_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

// mustTrim trims [from, to) of k and fails the test unless that drops
// want bytes.
func mustTrim(t testing.TB, s *cache.Store, k cache.Key, from, to, want int64) {
	t.Helper()
	if got, err := s.Trim(k, from, to); err != nil || got != want {
		t.Fatalf("Trim [%d, %d) = %d, %v; want %d dropped", from, to, got, err, want)
	}
}

// mustBeTrimmed fails the test unless reading k at each of offs fails
// with ErrTrimmed.
func mustBeTrimmed(t testing.TB, s *cache.Store, k cache.Key, offs ...int64) {
	t.Helper()
	for _, off := range offs {
		if _, err := s.ReadAt(k, make([]byte, 1), off); !errors.Is(err, cache.ErrTrimmed) {
			t.Fatalf("ReadAt %d of trimmed bytes: %v, want ErrTrimmed", off, err)
		}
	}
}

// mustReadAt fails the test unless k's bytes at off are want.
func mustReadAt(t testing.TB, s *cache.Store, k cache.Key, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if n, err := s.ReadAt(k, got, off); err != nil || n != len(got) {
		t.Fatalf("ReadAt %d = %d, %v; want %d bytes", off, n, err, len(want))
	}
	mustEqual(t, fmt.Sprintf("bytes at %d", off), got, want)
}

// TestTrim drops whole segments below the offset, keeps the rest
// readable, refuses reads below the trim point, recycles the buffers and
// never touches the open tail.
func TestTrim(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg })
	k := cache.Key{Space: "t", Instance: 1}
	src := pattern(1, 0, 5*seg+100) // 5 full segments and an open tail
	appendAll(t, s, k, src)
	wantStats(t, s, "written", 6*seg, 0, 0)

	mustTrim(t, s, k, 0, 2*seg+7, 2*seg) // segments 0 and 1; 2 ends past the offset
	wantStats(t, s, "trimmed 2", 4*seg, 2*seg, 0)
	if st := s.Stats(); st.TrimmedBytes != 2*seg || st.Segments != 4 {
		t.Fatalf("Stats %+v: want TrimmedBytes %d, Segments 4", st, 2*seg)
	}
	buf := make([]byte, 10)
	mustBeTrimmed(t, s, k, 0, seg, 2*seg-1)
	if _, _, _, err := s.Segment(k, 1); !errors.Is(err, cache.ErrTrimmed) {
		t.Fatalf("Segment 1: %v", err)
	}
	mustReadAt(t, s, k, 2*seg, src[2*seg:])

	mustTrim(t, s, k, 0, 2*seg, 0)               // trimmed already: nothing
	mustTrim(t, s, k, 0, int64(len(src)), 3*seg) // never the open tail
	if n, err := s.ReadAt(k, buf, 5*seg); err != nil || n != 10 {
		t.Fatalf("ReadAt of the open tail = %d, %v", n, err)
	}
	wantStats(t, s, "trimmed to the tail", seg, 5*seg, 0)

	// The stream goes on; the freed buffers serve its next segments.
	more := pattern(1, int64(len(src)), 2*seg)
	if _, err := s.Append(k, int64(len(src)), more); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Recycled != 2 {
		t.Fatalf("Recycled %d after two more segments, want 2", st.Recycled)
	}
	if err := s.Seal(k, int64(len(src)+len(more))); err != nil {
		t.Fatal(err)
	}
	end := int64(len(src) + len(more))
	mustTrim(t, s, k, 0, end, 2*seg+100) // a sealed stream's partial last segment goes too
	if st := s.Stats(); st.MemoryBytes != 0 || st.Segments != 0 {
		t.Fatalf("Stats after trimming everything: %+v", st)
	}
	if _, err := s.ReadAt(k, buf, end); err == nil {
		t.Fatal("ReadAt at the end of a sealed, trimmed stream: no io.EOF")
	}
	if n, _, err := s.Stat(k); err != nil || n != end {
		t.Fatalf("Stat = %d, %v; the length stays %d", n, err, end)
	}
	mustDelete(t, s, k)
	if st := s.Stats(); st.Segments != 0 || st.Streams != 0 {
		t.Fatalf("Stats after Delete: %+v", st)
	}
}

// TestTrimRange drops only the whole segments within the range, keeps
// what lies before and after it readable, and a later overlapping range
// drops only what is left.
func TestTrimRange(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "t", Instance: 6}
	src := pattern(6, 0, 10*seg)
	appendAll(t, s, k, src)
	mustTrim(t, s, k, 2*seg-1, 6*seg+1, 4*seg) // segments 2..5: 1 and 6 are cut
	mustBeTrimmed(t, s, k, 2*seg, 4*seg, 6*seg-1)
	mustReadAt(t, s, k, 0, src[:2*seg])     // before the range
	mustReadAt(t, s, k, 6*seg, src[6*seg:]) // after it
	mustTrim(t, s, k, seg, 8*seg, 3*seg)    // 1, 6 and 7 are left of it
	mustTrim(t, s, k, 0, 0, 0)
	mustDelete(t, s, k)
	if st := s.Stats(); st.Segments != 0 || st.MemoryBytes != 0 {
		t.Fatalf("Stats after Delete: %+v", st)
	}
}

// TestTrimReplay: an Append that replays trimmed bytes is accepted as it
// stands (there is nothing to compare it with); bytes still held are
// still compared.
func TestTrimReplay(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "t", Instance: 2}
	src := pattern(2, 0, 3*seg)
	appendAll(t, s, k, src)
	mustTrim(t, s, k, 0, 2*seg, 2*seg)
	if n, err := s.Append(k, 0, pattern(9, 0, 2*seg)); err != nil || n != 3*seg {
		t.Fatalf("replay over trimmed bytes = %d, %v", n, err)
	}
	if _, err := s.Append(k, 2*seg, pattern(9, 2*seg, seg)); !errors.Is(err, cache.ErrDiverged) {
		t.Fatalf("divergent replay over kept bytes: %v", err)
	}
	if _, err := s.Append(k, 2*seg, src[2*seg:]); err != nil {
		t.Fatalf("faithful replay over kept bytes: %v", err)
	}
}

// TestTrimSpilled drops spilled segments' files too and keeps the rest
// readable from disk.
func TestTrimSpilled(t *testing.T) {
	s := newStore(t, spilling(t, 4*seg))
	k := cache.Key{Space: "t", Instance: 3}
	src := pattern(3, 0, 16*seg)
	appendAll(t, s, k, src)
	before := s.Stats()
	if before.SpilledBytes == 0 {
		t.Fatal("nothing spilled")
	}
	mustTrim(t, s, k, 0, 12*seg, 12*seg)
	after := s.Stats()
	if after.SpilledBytes >= before.SpilledBytes || after.SpilledBytes > 4*seg {
		t.Fatalf("SpilledBytes %d -> %d after trimming 12 of 16 segments", before.SpilledBytes, after.SpilledBytes)
	}
	mustReadAt(t, s, k, 12*seg, src[12*seg:])
}

func TestTrimErrors(t *testing.T) {
	s := newStore(t)
	if _, err := s.Trim(cache.Key{Space: "t", Instance: 9}, 0, 0); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("Trim of an unknown stream: %v", err)
	}
	k := cache.Key{Space: "t", Instance: 4}
	appendAll(t, s, k, pattern(4, 0, seg))
	for _, r := range [][2]int64{{-1, seg}, {seg, 0}} {
		if _, err := s.Trim(k, r[0], r[1]); !errors.Is(err, cache.ErrOffset) {
			t.Fatalf("Trim [%d, %d): %v", r[0], r[1], err)
		}
	}
	s.Close()
	if _, err := s.Trim(k, 0, seg); !errors.Is(err, cache.ErrClosed) {
		t.Fatalf("Trim after Close: %v", err)
	}
}

// TestTrimFollowingReader trims behind a reader that follows a writer,
// the way a consumer trims what it has read, under the race detector: the
// reader never meets trimmed bytes nor wrong ones, and the store ends up
// holding nothing, whatever spilled or was recycled meanwhile. The writer
// stays within 32 segments of the reader, so that a memory-only store
// within 64 never fills up.
func TestTrimFollowingReader(t *testing.T) {
	for _, mode := range []struct {
		name   string
		mutate func(*cache.Config)
	}{
		{"memory", func(c *cache.Config) { c.MemoryBytes = 64 * seg }},
		{"spill", spilling(t, 6*seg)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			s := newStore(t, mode.mutate)
			k := cache.Key{Space: "t", Instance: 5}
			const total, step = 200*seg + 123, 3*seg/2 + 7
			src := pattern(5, 0, total)
			if _, err := s.Append(k, 0, nil); err != nil {
				t.Fatal(err)
			}
			var read atomic.Int64
			var werr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				for off := 0; off < total; off += step {
					for int64(off)-read.Load() > 32*seg {
						runtime.Gosched()
					}
					if _, werr = s.Append(k, int64(off), src[off:min(total, off+step)]); werr != nil {
						return
					}
				}
				werr = s.Seal(k, total)
			}()
			got := make([]byte, 0, total)
			buf := make([]byte, 5*seg/2)
			for len(got) < total {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				_, _, err := s.Wait(ctx, k, int64(len(got)))
				cancel()
				if err != nil {
					<-done
					t.Fatalf("Wait at %d: %v (writer: %v)", len(got), err, werr)
				}
				n, err := s.ReadAt(k, buf, int64(len(got)))
				if err != nil {
					t.Fatalf("ReadAt %d: %v", len(got), err)
				}
				got = append(got, buf[:n]...)
				if _, err := s.Trim(k, 0, int64(len(got))); err != nil {
					t.Fatal(err)
				}
				read.Store(int64(len(got)))
			}
			<-done
			if werr != nil {
				t.Fatal(werr)
			}
			mustEqual(t, "read while trimming", got, src)
			if _, err := s.Trim(k, 0, total); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.MemoryBytes != 0 || st.SpilledBytes != 0 || st.TrimmedBytes != total {
				t.Fatalf("Stats at the end: %+v", st)
			}
		})
	}
}
