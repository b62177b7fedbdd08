package shm

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A process's first touch of a shared page through its own mapping costs
// what the machine makes it cost. Under hardware-assisted paging it is a
// minor fault (a read maps 16 pages at a time, a write one), and copying
// through a mapping the process keeps beats a system call; under a
// hypervisor that shadows the guest's page tables (a PVM guest, measured)
// every page a process touches for the first time traps to the
// hypervisor: copying 1 MiB into or out of arena pages a process had not
// touched ran at 0.2-1.5 GB/s, against 6-8 GB/s for pread(2) and
// pwrite(2) on the same pages (the kernel copies through its own mapping,
// which is always there), and mapping them ahead with MADV_POPULATE_* did
// not help: the shadow entry is made at the first user access. There, a
// writer fills every slot with WriteSlot, a reader copies lent bytes out
// with Copy and the arena's owner writes its own slots with Fill, all
// through the arena's descriptors; elsewhere they use the mapping as
// before.
//
// Which machine this is, is measured once per process, the first time it
// is asked (a slot taken, lent bytes copied, a cache store opened on an
// arena: touchSlow): pwrite into 64 KiB of existing pages of a scratch
// memfd against a copy into 64 KiB of its pages this process has not
// touched, the better of two tries each. The two differ by 9-28x on the
// shadow-paging guest; where a fault is a minor fault they should differ
// by little (not measured: no such machine was at hand when this was
// written). The cut is 4x. The measurement took 0.5-1.3 ms on that guest,
// once per process.

var touch struct {
	once sync.Once
	slow atomic.Bool
}

// TouchEnv names the environment variable that overrides the measurement:
// "map" copies through the mapping, "syscall" with pread and pwrite,
// anything else (or nothing) measures. It is for a machine the measurement
// misjudges, and for comparing the two ways on one machine.
const TouchEnv = "PISPACE_SHM_TOUCH"

// touchSlow reports whether this process copies to and from arena slots
// with system calls rather than through its mapping (see above).
func touchSlow() bool {
	touch.once.Do(func() { touch.slow.Store(touchPolicy(os.Getenv(TouchEnv), measureTouch)) })
	return touch.slow.Load()
}

// touchPolicy is touchSlow's answer for the value env of TouchEnv, calling
// measure only when env asks for neither way.
func touchPolicy(env string, measure func() bool) bool {
	switch env {
	case "map":
		return false
	case "syscall":
		return true
	}
	return measure()
}

// touchCut is how many times slower than pwrite a first touch through the
// mapping must be for system calls to win.
const touchCut = 4

// measureTouch times pwrite into pages that exist against a first touch
// of other existing pages through a fresh mapping. Any failure means the
// mapping, as before the measurement existed.
func measureTouch() bool {
	const part, tries = 64 << 10, 2
	fd, err := unix.MemfdCreate("pispace-touch", unix.MFD_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if unix.Ftruncate(fd, 2*tries*part) != nil {
		return false
	}
	src := make([]byte, part)
	for i := range 2 * tries {
		if n, err := unix.Pwrite(fd, src, int64(i*part)); err != nil || n != part {
			return false
		}
	}
	mem, err := unix.Mmap(fd, 0, 2*tries*part, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	defer unix.Munmap(mem)
	call, mapped := time.Duration(1<<62), time.Duration(1<<62)
	for i := range tries {
		t := time.Now()
		if n, err := unix.Pwrite(fd, src, int64(i*part)); err != nil || n != part {
			return false
		}
		call = min(call, time.Since(t))
		t = time.Now()
		copy(mem[(tries+i)*part:], src)
		mapped = min(mapped, time.Since(t))
	}
	return mapped > touchCut*call
}
