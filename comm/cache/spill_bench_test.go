package cache_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/pispace/pispace/comm/cache"
)

// cpuTime returns the user plus system CPU time the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSpill appends a 512 MiB stream in 1 MiB appends to a store with
// a 32 MiB memory bound spilling into a temporary directory, then deletes
// it ("delete"), or keeps every stream until the end ("keep", so the
// files outlive the kernel's writeback delay, as in a long job where every
// byte is kept for the job's lifetime). Besides MB/s it reports the
// process's CPU time (user+sys, getrusage) per GB written, which is what
// spilling costs the server. "direct" writes spill files with O_DIRECT
// where the file system allows it (Config.DirectIO); "buffered", the
// default, writes through the page cache.
func BenchmarkSpill(b *testing.B) {
	for _, mode := range []string{"delete", "keep"} {
		for _, io := range []string{"direct", "buffered"} {
			b.Run(mode+"/"+io, func(b *testing.B) { benchSpill(b, mode == "delete", io == "direct") })
		}
	}
}

func benchSpill(b *testing.B, del, direct bool) {
	const total, size = 512 << 20, 1 << 20
	s := newStore(b, func(c *cache.Config) { c.SegmentSize, c.DirectIO = 0, direct }, spilling(b, 32<<20))
	msg := pattern(5, 0, size)
	k := cache.Key{Space: "bench", Instance: 0}
	b.SetBytes(total)
	var cpu time.Duration
	for b.Loop() {
		c0 := cpuTime(b)
		for off := int64(0); off < total; off += size {
			if _, err := s.Append(k, off, msg); err != nil {
				b.Fatal(err)
			}
		}
		if del {
			if err := s.Delete(k); err != nil {
				b.Fatal(err)
			}
		}
		cpu += cpuTime(b) - c0
		k.Instance++
	}
	if st := s.Stats(); st.Spills == 0 {
		b.Fatalf("nothing spilled: %+v", st)
	}
	if d := cache.DirectSpills(s); direct && d == 0 {
		b.Logf("no spill file written with O_DIRECT in %s", s.SpillDir())
	}
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*total/1e9), "cpu-s/GB")
}
