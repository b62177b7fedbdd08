package cache_test

import (
	"fmt"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

var benchSizes = []int{4 << 10, 64 << 10, 1 << 20}

// BenchmarkAppend appends messages of each size to one stream of a
// memory-only store with the default 1 MiB segments, starting a new stream
// every 64 MiB so memory stays bounded.
func BenchmarkAppend(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			s := newStore(b, func(c *cache.Config) { c.SegmentSize = 0; c.MemoryBytes = 256 << 20 })
			msg := pattern(1, 0, int64(size))
			k := cache.Key{Space: "bench", Instance: 0}
			var off int64
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if off+int64(size) > 64<<20 {
					if err := s.Delete(k); err != nil {
						b.Fatal(err)
					}
					k.Instance++
					off = 0
				}
				l, err := s.Append(k, off, msg)
				if err != nil {
					b.Fatal(err)
				}
				off = l
			}
		})
	}
}

// BenchmarkReadAt reads messages of each size round the 64 MiB sealed
// stream of a memory-only store: the cache read path, which must not
// allocate.
func BenchmarkReadAt(b *testing.B) {
	const total = 64 << 20
	s := newStore(b, func(c *cache.Config) { c.SegmentSize = 0; c.MemoryBytes = 2 * total })
	k := cache.Key{Space: "bench", Instance: 0}
	if _, err := s.Append(k, 0, pattern(2, 0, total)); err != nil {
		b.Fatal(err)
	}
	if err := s.Seal(k, total); err != nil {
		b.Fatal(err)
	}
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			p := make([]byte, size)
			var off int64
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if off+int64(size) > total {
					off = 0
				}
				n, err := s.ReadAt(k, p, off)
				if err != nil || n != size {
					b.Fatalf("ReadAt = %d, %v", n, err)
				}
				off += int64(n)
			}
		})
	}
	b.Run("parallel-1048576", func(b *testing.B) {
		b.SetBytes(1 << 20)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			p := make([]byte, 1<<20)
			var off int64
			for pb.Next() {
				if off+int64(len(p)) > total {
					off = 0
				}
				if _, err := s.ReadAt(k, p, off); err != nil {
					b.Error(err)
					return
				}
				off += int64(len(p))
			}
		})
	})
}

// BenchmarkReadAtTail reads 64 KiB messages from the open tail of a stream
// while they are still being appended, as a following reader does.
func BenchmarkReadAtTail(b *testing.B) {
	const size = 64 << 10
	s := newStore(b, func(c *cache.Config) { c.SegmentSize = 0 })
	msg := pattern(3, 0, size)
	p := make([]byte, size)
	k := cache.Key{Space: "bench", Instance: 0}
	var off int64
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if off+size > 64<<20 {
			s.Delete(k)
			k.Instance++
			off = 0
		}
		if _, err := s.Append(k, off, msg); err != nil {
			b.Fatal(err)
		}
		if n, err := s.ReadAt(k, p, off); err != nil || n != size {
			b.Fatalf("ReadAt = %d, %v", n, err)
		}
		off += size
	}
}

// BenchmarkReadAtSpilled reads 1 MiB segments that must come back from
// the spill directory (memory bound of 4 segments, 16 MiB stream).
func BenchmarkReadAtSpilled(b *testing.B) {
	const total = 16 << 20
	s := newStore(b, func(c *cache.Config) { c.SegmentSize = 0 }, spilling(b, 4<<20))
	k := cache.Key{Space: "bench", Instance: 0}
	if _, err := s.Append(k, 0, pattern(4, 0, total)); err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 1<<20)
	var off int64
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if off+int64(len(p)) > total {
			off = 0
		}
		if _, err := s.ReadAt(k, p, off); err != nil {
			b.Fatal(err)
		}
		off += int64(len(p))
	}
}

// BenchmarkAppendStream writes a whole 64 MiB stream in 1 MiB appends and
// deletes it, over and over: the churn of a server whose clients write a
// channel, read it and close their space. With recycling ("recycle") the
// segment buffers of one stream are reused by the next; "fresh" disables
// it (Config.RecycleBytes < 0), so every segment takes new memory, which
// the runtime may have returned to the OS and must fault in again. "grow"
// keeps every stream, as a job keeps its channels: every byte lands in
// memory the process has never used (run it with -count 1: a second run
// reuses what the first one's store freed).
func BenchmarkAppendStream(b *testing.B) {
	for _, mode := range []struct {
		name    string
		recycle int64
		keep    bool
	}{{"recycle", 0, false}, {"fresh", -1, false}, {"grow", -1, true}} {
		b.Run(mode.name, func(b *testing.B) {
			const total, size = 64 << 20, 1 << 20
			s := newStore(b, func(c *cache.Config) {
				c.SegmentSize = 0
				c.MemoryBytes = 256 << 20
				if mode.keep {
					c.MemoryBytes = 8 << 30 // a bound the benchmark never reaches
				}
				c.RecycleBytes = mode.recycle
			})
			msg := pattern(1, 0, size)
			k := cache.Key{Space: "bench", Instance: 0}
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				for off := int64(0); off < total; off += size {
					if _, err := s.Append(k, off, msg); err != nil {
						b.Fatal(err)
					}
				}
				if !mode.keep {
					if err := s.Delete(k); err != nil {
						b.Fatal(err)
					}
				}
				k.Instance++
			}
		})
	}
}
