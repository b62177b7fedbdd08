package shm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Copies between a process's memory and the arena's memfd (pread and
// pwrite, see touchSlow) are system calls that wait for nothing but the
// copy, and copying a slot takes 100-300 µs on the PVM guest. Made as
// ordinary system calls, each outlived the runtime's 20 µs system-call
// tick: sysmon took the P from the thread in the call and woke another
// thread for it, and kept polling every 20 µs while calls went on, each a
// wake-up and a context switch, which that guest makes dear. Raw system
// calls keep the P: goroutines behind one wait for one copy of at most
// rawCopyMax bytes, as they would behind a memmove. OSU bandwidth without
// restarts, 2 ranks, 5 interleaved rounds on the PVM guest: 1 MiB
// 1611-2858 (median 2129) -> 2161-3749 (2785) MB/s, 4 MiB 2254-3210
// (2780) -> 2662-3310 (3190); the 4-rank 1 Mi-element Allreduce within
// noise.

// rawCopyMax bounds one raw pread or pwrite: a slot (1 MiB by default).
const rawCopyMax = 1 << 20

// pread reads into p from offset off of fd, at most rawCopyMax bytes.
func pread(fd int, p []byte, off int64) (int, error) {
	return rawCopy(unix.SYS_PREAD64, fd, p, off)
}

// pwrite writes p, at most rawCopyMax bytes of it, at offset off of fd.
func pwrite(fd int, p []byte, off int64) (int, error) {
	return rawCopy(unix.SYS_PWRITE64, fd, p, off)
}

func rawCopy(call uintptr, fd int, p []byte, off int64) (int, error) {
	p = p[:min(len(p), rawCopyMax)]
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(call, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
