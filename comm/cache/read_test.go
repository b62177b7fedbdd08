package cache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

func TestReadAtOffsets(t *testing.T) {
	const length = 2*seg + seg/2 // two immutable segments and an open tail
	src := pattern(4, 0, length)
	for _, mode := range memoryAndSpill(t) {
		t.Run(mode.name, func(t *testing.T) {
			s := newStore(t, mode.mutate)
			k := cache.Key{Space: "r", Instance: 7}
			if _, err := s.Append(k, 0, src); err != nil {
				t.Fatal(err)
			}
			check := func(sealed bool) {
				t.Helper()
				offs := []int64{0, 1, seg - 1, seg, seg + 1, 2*seg - 1, 2 * seg, 2*seg + 1, length - 1}
				for _, off := range offs {
					for _, size := range []int{0, 1, 100, seg, 3 * seg} {
						p := make([]byte, size)
						n, err := s.ReadAt(k, p, off)
						want := min(int64(size), length-off)
						if err != nil || int64(n) != want {
							t.Fatalf("sealed=%v ReadAt(%d bytes at %d) = %d, %v; want %d, nil", sealed, size, off, n, err, want)
						}
						mustEqual(t, fmt.Sprintf("ReadAt(%d at %d)", size, off), p[:n], src[off:off+want])
					}
				}
				n, err := s.ReadAt(k, make([]byte, 10), length)
				wantErr := error(nil)
				if sealed {
					wantErr = io.EOF
				}
				if n != 0 || err != wantErr {
					t.Errorf("sealed=%v ReadAt at the end = %d, %v; want 0, %v", sealed, n, err, wantErr)
				}
				for _, off := range []int64{length + 1, length + seg, -1} {
					if n, err := s.ReadAt(k, make([]byte, 10), off); n != 0 || !errors.Is(err, cache.ErrOffset) {
						t.Errorf("sealed=%v ReadAt at %d = %d, %v; want ErrOffset", sealed, off, n, err)
					}
				}
			}
			check(false)
			if err := s.Seal(k, length); err != nil {
				t.Fatal(err)
			}
			check(true)
			if _, err := s.ReadAt(cache.Key{Space: "r", Instance: 8}, make([]byte, 1), 0); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("ReadAt of an unknown key: %v, want ErrNotFound", err)
			}
			if _, err := s.ReadAt(cache.Key{Space: "q", Instance: 7}, make([]byte, 1), 0); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("ReadAt of an unknown space: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestReadAtEmptyStream(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "r", Instance: 1}
	if _, err := s.Append(k, 0, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReadAt(k, make([]byte, 4), 0); n != 0 || err != nil {
		t.Errorf("ReadAt of an open empty stream = %d, %v; want 0, nil", n, err)
	}
	if err := s.Seal(k, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ReadAt(k, make([]byte, 4), 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt of a sealed empty stream = %d, %v; want 0, EOF", n, err)
	}
}

func TestSegment(t *testing.T) {
	s := newStore(t, spilling(t, 1))
	k := cache.Key{Space: "g", Instance: 1}
	src := pattern(5, 0, seg+100)
	if _, err := s.Append(k, 0, src); err != nil {
		t.Fatal(err)
	}
	data, crc, release, err := s.Segment(k, 0)
	if err != nil || crc != cache.Checksum(src[:seg]) {
		t.Fatalf("Segment 0 = crc %08x, %v", crc, err)
	}
	mustEqual(t, "segment 0", data, src[:seg])
	release()
	if _, _, _, err := s.Segment(k, 1); !errors.Is(err, cache.ErrNotSealed) {
		t.Errorf("Segment of the open tail: %v, want ErrNotSealed", err)
	}
	for _, i := range []int{2, -1} {
		if _, _, _, err := s.Segment(k, i); !errors.Is(err, cache.ErrOffset) {
			t.Errorf("Segment %d: %v, want ErrOffset", i, err)
		}
	}
	if err := s.Seal(k, seg+100); err != nil {
		t.Fatal(err)
	}
	data, crc, release, err = s.Segment(k, 1)
	if err != nil || crc != cache.Checksum(src[seg:]) {
		t.Fatalf("Segment 1 after Seal = crc %08x, %v", crc, err)
	}
	mustEqual(t, "segment 1", data, src[seg:])
	release()
}

// waitResult is what a Wait call running in a goroutine returned.
type waitResult struct {
	length int64
	sealed bool
	err    error
}

// startWait runs Wait(ctx, k, off) in a goroutine and returns once it is
// blocked.
func startWait(t *testing.T, ctx context.Context, s *cache.Store, k cache.Key, off int64) <-chan waitResult {
	t.Helper()
	res := make(chan waitResult, 1)
	go func() {
		l, sealed, err := s.Wait(ctx, k, off)
		res <- waitResult{l, sealed, err}
	}()
	checkFor(t, 5*time.Second, func() error {
		if !cache.Waiting(s, k) {
			return errors.New("Wait not blocked yet")
		}
		return nil
	})
	return res
}

func recvWait(t *testing.T, res <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

func TestWait(t *testing.T) {
	k := cache.Key{Space: "w", Instance: 1}
	setup := func(t *testing.T) *cache.Store {
		s := newStore(t)
		if _, err := s.Append(k, 0, []byte("abc")); err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx := context.Background()
	t.Run("immediate", func(t *testing.T) {
		s := setup(t)
		if l, sealed, err := s.Wait(ctx, k, 2); l != 3 || sealed || err != nil {
			t.Errorf("Wait below the length = %d, %v, %v", l, sealed, err)
		}
		s.Seal(k, 3)
		if l, sealed, err := s.Wait(ctx, k, 3); l != 3 || !sealed || err != nil {
			t.Errorf("Wait at the end of a sealed stream = %d, %v, %v", l, sealed, err)
		}
	})
	t.Run("append", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.Append(k, 3, []byte("d"))
		if r := recvWait(t, res); r.length != 4 || r.sealed || r.err != nil {
			t.Errorf("Wait woken by Append = %+v", r)
		}
	})
	t.Run("replay does not wake", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.Append(k, 0, []byte("abc"))
		s.Append(k, 3, []byte("de"))
		if r := recvWait(t, res); r.length != 5 || r.err != nil {
			t.Errorf("Wait = %+v, want length 5", r)
		}
	})
	t.Run("seal", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.Seal(k, 3)
		if r := recvWait(t, res); r.length != 3 || !r.sealed || r.err != nil {
			t.Errorf("Wait woken by Seal = %+v", r)
		}
	})
	t.Run("delete", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.Delete(k)
		if r := recvWait(t, res); !errors.Is(r.err, cache.ErrNotFound) {
			t.Errorf("Wait woken by Delete = %+v, want ErrNotFound", r)
		}
	})
	t.Run("delete space", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.DeleteSpace(k.Space)
		if r := recvWait(t, res); !errors.Is(r.err, cache.ErrNotFound) {
			t.Errorf("Wait woken by DeleteSpace = %+v, want ErrNotFound", r)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		s := setup(t)
		cctx, cancel := context.WithCancel(ctx)
		res := startWait(t, cctx, s, k, 3)
		cancel()
		if r := recvWait(t, res); r.err != context.Canceled {
			t.Errorf("Wait after cancel = %+v, want context.Canceled", r)
		}
	})
	t.Run("close", func(t *testing.T) {
		s := setup(t)
		res := startWait(t, ctx, s, k, 3)
		s.Close()
		if r := recvWait(t, res); !errors.Is(r.err, cache.ErrClosed) {
			t.Errorf("Wait woken by Close = %+v, want ErrClosed", r)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		s := setup(t)
		if _, _, err := s.Wait(ctx, cache.Key{Space: "w", Instance: 2}, 0); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Wait on an unknown key: %v, want ErrNotFound", err)
		}
	})
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "not-ours")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := cache.Open(cache.Config{Dir: dir, MemoryBytes: 1, SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	k := cache.Key{Space: "c", Instance: 1}
	if _, err := s.Append(k, 0, pattern(6, 0, 3*seg)); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Spills == 0 {
		t.Fatal("nothing spilled")
	}
	for range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if _, err := os.Stat(s.SpillDir()); !os.IsNotExist(err) {
		t.Errorf("spill directory left after Close: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("Close removed a file it did not create: %v", err)
	}
	if st := s.Stats(); st != (cache.Stats{Spills: st.Spills, Loads: st.Loads}) {
		t.Errorf("Stats after Close = %+v, want zero holdings", st)
	}
	calls := map[string]error{}
	_, calls["Append"] = s.Append(k, 0, []byte("x"))
	_, calls["ReadAt"] = s.ReadAt(k, make([]byte, 1), 0)
	_, _, calls["Stat"] = s.Stat(k)
	_, _, calls["Wait"] = s.Wait(context.Background(), k, 0)
	_, _, _, calls["Segment"] = s.Segment(k, 0)
	calls["Seal"] = s.Seal(k, 0)
	calls["Delete"] = s.Delete(k)
	calls["DeleteSpace"] = s.DeleteSpace("c")
	for name, err := range calls {
		if !errors.Is(err, cache.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestDelete(t *testing.T) {
	s := newStore(t, spilling(t, 1))
	a := cache.Key{Space: "d", Instance: 1}
	b := cache.Key{Space: "d", Instance: 2}
	c := cache.Key{Space: "e", Instance: 1}
	for _, k := range []cache.Key{a, b, c} {
		if _, err := s.Append(k, 0, pattern(int64(k.Instance), 0, 3*seg+5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(a); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSpace("d"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSpace("nothing"); err != nil {
		t.Errorf("DeleteSpace of an empty space: %v", err)
	}
	for _, k := range []cache.Key{a, b} {
		if _, _, err := s.Stat(k); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat %v after delete: %v", k, err)
		}
	}
	st := s.Stats()
	if st.Streams != 1 || st.Segments != 4 || st.SpilledBytes != 3*seg {
		t.Errorf("Stats after deletes = %+v, want 1 stream, 4 segments, %d spilled", st, 3*seg)
	}
	files, _ := os.ReadDir(s.SpillDir())
	var kept []string
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), "free-") {
			kept = append(kept, f.Name())
		}
	}
	if len(kept) != 3 || len(files) != 9 || cache.FreeFiles(s) != 6 {
		t.Errorf("spill files left %q of %d, %d free; want the 3 of %v, 6 kept for reuse", kept, len(files), cache.FreeFiles(s), c)
	}
	// A re-created key starts empty and does not see old data.
	if n, err := s.Append(a, 0, []byte("new")); n != 3 || err != nil {
		t.Errorf("Append to a re-created key = %d, %v", n, err)
	}
	if got := readAll(t, s, a, 10); !bytes.Equal(got, []byte("new")) {
		t.Errorf("re-created key holds %q", got)
	}
}

// TestChecksumWhenNeeded: a segment's CRC is computed when something
// needs it (Segment, a spill), never for segments that stay in memory;
// a spilled segment reads back checked against it.
func TestChecksumWhenNeeded(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "c", Instance: 1}
	src := pattern(8, 0, 3*seg)
	appendAll(t, s, k, src)
	for i := range 3 {
		if cache.ChecksumKnown(s, k, i) {
			t.Fatalf("segment %d: checksum computed on append", i)
		}
	}
	if _, crc, release, err := s.Segment(k, 1); err != nil || crc != cache.Checksum(src[seg:2*seg]) {
		t.Fatalf("Segment 1: crc %08x, %v", crc, err)
	} else {
		release()
	}
	if cache.ChecksumKnown(s, k, 0) || !cache.ChecksumKnown(s, k, 1) {
		t.Fatal("Segment 1 computed other checksums, or not its own")
	}

	sp := newStore(t, spilling(t, 1))
	appendAll(t, sp, k, src)
	if cache.InMemory(sp, k, 0) || !cache.ChecksumKnown(sp, k, 0) {
		t.Fatal("segment 0 spilled without its checksum")
	}
	mustEqual(t, "spilled stream read back", readAll(t, sp, k, seg), src)
}
