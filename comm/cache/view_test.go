package cache_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

// TestView reads a stream through views: at every offset, a view holds
// the stored bytes from there to its segment's end, or to the open
// tail's current end, at most max; the end of an open stream is empty, a
// sealed one's io.EOF.
func TestView(t *testing.T) {
	const length = 2*seg + seg/2 // two immutable segments and an open tail
	src := pattern(9, 0, length)
	for _, mode := range memoryAndSpill(t) {
		t.Run(mode.name, func(t *testing.T) {
			s := newStore(t, mode.mutate)
			k := cache.Key{Space: "v", Instance: 1}
			if _, err := s.Append(k, 0, src); err != nil {
				t.Fatal(err)
			}
			check := func(sealed bool) {
				t.Helper()
				for _, off := range []int64{0, 1, seg - 1, seg, 2*seg - 1, 2 * seg, length - 1} {
					for _, max := range []int{1, 100, seg, 3 * seg} {
						data, release, err := s.View(k, off, max)
						segEnd := min((off/seg+1)*seg, length)
						want := min(int64(max), segEnd-off)
						if err != nil || int64(len(data)) != want || release == nil {
							t.Fatalf("sealed=%v View(%d, max %d) = %d bytes, %v; want %d", sealed, off, max, len(data), err, want)
						}
						mustEqual(t, fmt.Sprintf("View(%d, %d)", off, max), data, src[off:off+want])
						release()
					}
				}
				data, release, err := s.View(k, length, seg)
				if sealed {
					if len(data) != 0 || release != nil || err != io.EOF {
						t.Fatalf("View at the sealed end = %d bytes, %v; want io.EOF", len(data), err)
					}
				} else if len(data) != 0 || err != nil {
					t.Fatalf("View at the open end = %d bytes, %v; want none, nil", len(data), err)
				} else if release != nil {
					release()
				}
				for _, off := range []int64{length + 1, -1} {
					if _, _, err := s.View(k, off, seg); !errors.Is(err, cache.ErrOffset) {
						t.Errorf("View at %d: %v; want ErrOffset", off, err)
					}
				}
			}
			check(false)
			if err := s.Seal(k, length); err != nil {
				t.Fatal(err)
			}
			check(true)
			if _, _, err := s.View(cache.Key{Space: "v", Instance: 2}, 0, seg); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("View of an unknown stream: %v; want ErrNotFound", err)
			}
		})
	}
}

// TestViewPinned holds views of an open tail and of a segment while the
// stream grows past them, is deleted, and its buffers are reused by
// another stream: the views keep their bytes until released.
func TestViewPinned(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 64 * seg })
	k := cache.Key{Space: "v", Instance: 1}
	src := pattern(3, 0, 4*seg)
	if _, err := s.Append(k, 0, src[:seg+seg/2]); err != nil {
		t.Fatal(err)
	}
	segView, r1, err := s.View(k, 10, seg)
	if err != nil {
		t.Fatal(err)
	}
	tailView, r2, err := s.View(k, seg+5, seg)
	if err != nil || len(tailView) != seg/2-5 {
		t.Fatalf("tail view: %d bytes, %v", len(tailView), err)
	}
	if _, err := s.Append(k, seg+seg/2, src[seg+seg/2:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(k); err != nil {
		t.Fatal(err)
	}
	other := cache.Key{Space: "w", Instance: 1}
	if _, err := s.Append(other, 0, bytes.Repeat([]byte{0xEE}, 8*seg)); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "segment view after delete and reuse", segView, src[10:seg])
	mustEqual(t, "tail view after growth, delete and reuse", tailView, src[seg+5:seg+seg/2])
	r1()
	r2()
	if _, _, err := s.View(k, 0, seg); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("View of a deleted stream: %v; want ErrNotFound", err)
	}
}

// TestViewTrimmed: a view of a trimmed segment fails with ErrTrimmed.
func TestViewTrimmed(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "v", Instance: 1}
	if _, err := s.Append(k, 0, pattern(1, 0, 3*seg)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Trim(k, 0, 2*seg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.View(k, seg, seg); !errors.Is(err, cache.ErrTrimmed) {
		t.Fatalf("View of a trimmed segment: %v; want ErrTrimmed", err)
	}
	data, release, err := s.View(k, 2*seg, seg)
	if err != nil || len(data) != seg {
		t.Fatalf("View past the trimmed range: %d bytes, %v", len(data), err)
	}
	release()
}
