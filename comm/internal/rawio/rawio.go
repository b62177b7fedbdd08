// Package rawio makes the system calls of pispace's data path that wait
// for nothing but a copy as raw system calls: reads and writes of
// non-blocking sockets, and pread and pwrite of a memfd's pages.
//
// An ordinary system call marks the goroutine's P as in a system call,
// and sysmon takes the P from a thread still inside one after its 20 µs
// tick and wakes another thread for it; the first one must find a P again
// when it returns. A 1 MiB copy of arena pages takes 100-300 µs on the
// PVM guest, and a thread the kernel preempts inside a short call (four
// ranks and a server on two cores) outlives the tick too: each a wake-up
// and a context switch, which that guest makes dear, and sysmon kept
// polling every 20 µs while they went on. A raw call keeps the P, so each
// moves at most Max bytes: goroutines behind it wait for one copy, as
// they would behind a memmove.
//
// Measured on the PVM guest: the raw pread and pwrite took OSU bandwidth
// without restarts, 2 ranks, 5 interleaved rounds, from 1611-2858 (median
// 2129) to 2161-3749 (2785) MB/s at 1 MiB and from 2254-3210 (2780) to
// 2662-3310 (3190) at 4 MiB; raw socket calls took the 4-rank Allreduce's
// context switches from 36.3-36.6k to 32.4-34.1k.
package rawio

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Max bounds the bytes one call moves: a cache slot (1 MiB by default).
const Max = 1 << 20

// MaxIovecs bounds the buffers of one Writev.
const MaxIovecs = 64

// Read is read(2) of at most Max bytes of fd.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p = p[:min(len(p), Max)]
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Writev is writev(2) of the first buffers of v, at most MaxIovecs of
// them and Max bytes, empty ones skipped.
func Writev(fd int, v net.Buffers) (int, error) {
	var iov [MaxIovecs]unix.Iovec
	k, total := 0, 0
	for _, b := range v {
		if k == MaxIovecs || total == Max {
			break
		}
		if len(b) == 0 {
			continue
		}
		b = b[:min(len(b), Max-total)]
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
		total += len(b)
	}
	if k == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Recvmsg is recvmsg(2) of at most Max bytes of fd, without asking for
// the peer's address (a connected socket's), which unix.Recvmsg decodes
// into an allocation on every call; descriptors received come
// close-on-exec.
func Recvmsg(fd int, b, oob []byte) (n, oobn, flags int, err error) {
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(b) > 0 {
		iov.Base = &b[0]
		iov.SetLen(min(len(b), Max))
		msg.Iov, msg.Iovlen = &iov, 1
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_CMSG_CLOEXEC)
	if e != 0 {
		return 0, 0, 0, e
	}
	return int(r), int(msg.Controllen), int(msg.Flags), nil
}

// Pread reads into p from offset off of fd, at most Max bytes.
func Pread(fd int, p []byte, off int64) (int, error) {
	return copyAt(unix.SYS_PREAD64, fd, p, off)
}

// Pwrite writes p, at most Max bytes of it, at offset off of fd.
func Pwrite(fd int, p []byte, off int64) (int, error) {
	return copyAt(unix.SYS_PWRITE64, fd, p, off)
}

func copyAt(call uintptr, fd int, p []byte, off int64) (int, error) {
	p = p[:min(len(p), Max)]
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(call, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
