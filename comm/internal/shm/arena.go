package shm

import (
	"fmt"
	"net"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An Arena is memory a process lends to the consumers of its rings: a
// memfd of fixed-size slots, mapped writable by its owner, whose slots
// hold data the owner keeps anyway (a comm server's cache segments).
// Offered with a ring ([Share]), it is mapped read-only by the consumer,
// and a data frame may then carry a reference into it ([Tx.Lend]): the
// consumer reads the bytes where the owner keeps them, and the owner
// makes no copy at all. The owner must not reuse lent bytes until the
// consumer has released them; the ring's header carries the count of
// references released (see Tx.Lend).
//
// An arena holds the data of every space the owner serves, so it is
// offered only to a peer running as the same user (SO_PEERCRED), which
// could read the owner's memory anyway (/proc/PID/mem). It is sealed
// against resizing only: a slot the owner lets go of is punched out of
// the memfd, giving its memory back, which a write seal would forbid.
type Arena struct {
	fd   int
	mem  []byte
	slot int

	mu     sync.Mutex
	free   []int32 // slots let go of, punched
	unused int     // slots from here on were never handed out
	closed bool
}

// MaxArena bounds the arena a peer may offer.
const MaxArena = 1 << 40

// NewArena makes an arena of n slots of size bytes. The memory is taken
// as slots are first written.
func NewArena(size, n int) (*Arena, error) {
	if size <= 0 || size%pageSize != 0 || n <= 0 || int64(size)*int64(n) > MaxArena {
		return nil, fmt.Errorf("shm: arena of %d slots of %d bytes", n, size)
	}
	fd, err := unix.MemfdCreate("pispace-arena", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	total := size * n
	if err := unix.Ftruncate(fd, int64(total)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: ftruncate: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, total, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return nil, fmt.Errorf("shm: sealing: %w", err)
	}
	return &Arena{fd: fd, mem: mem, slot: size}, nil
}

const pageSize = 4096

// Alloc returns a free slot (len == cap == size), or nil when size is not
// the slot size, every slot is in use, or the arena is closed. A slot let
// go of before reads as zeros until written.
func (a *Arena) Alloc(size int) []byte {
	if a == nil || size != a.slot {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var i int
	switch {
	case a.closed:
		return nil
	case len(a.free) > 0:
		i = int(a.free[len(a.free)-1])
		a.free = a.free[:len(a.free)-1]
	case a.unused < len(a.mem)/a.slot:
		i = a.unused
		a.unused++
	default:
		return nil
	}
	return a.mem[i*a.slot : (i+1)*a.slot : (i+1)*a.slot]
}

// Free takes back a slot Alloc returned and gives its memory back to the
// system; false for any other buffer. Nothing may use b afterwards.
func (a *Arena) Free(b []byte) bool {
	i, ok := a.index(b)
	if !ok || cap(b) != a.slot {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return true
	}
	unix.Fallocate(a.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(i*a.slot), int64(a.slot))
	a.free = append(a.free, int32(i))
	return true
}

// index returns the slot p begins in.
func (a *Arena) index(p []byte) (int, bool) {
	off, ok := a.Offset(p)
	if !ok {
		return 0, false
	}
	return int(off) / a.slot, true
}

// Offset returns where p lies in the arena, when it lies wholly in one
// slot of it.
func (a *Arena) Offset(p []byte) (uint64, bool) {
	if a == nil || len(p) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(a.mem)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	if at < base || at-base >= uintptr(len(a.mem)) {
		return 0, false
	}
	off := int(at - base)
	if off/a.slot != (off+len(p)-1)/a.slot {
		return 0, false
	}
	return uint64(off), true
}

// Close gives the arena's memory back and unmaps it. The caller must make
// sure nothing in this process uses a slot any more; consumers' mappings
// then read zeros.
func (a *Arena) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	unix.Fallocate(a.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, int64(len(a.mem)))
	err := unix.Munmap(a.mem) // a.mem stays: Offset compares addresses only
	unix.Close(a.fd)
	return err
}

// SameUser reports whether the peer of c runs as this process's user
// (SO_PEERCRED), the peers an arena is offered to.
func SameUser(c *net.UnixConn) bool {
	sc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	sc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	return err == nil && cred != nil && int(cred.Uid) == unix.Geteuid()
}
