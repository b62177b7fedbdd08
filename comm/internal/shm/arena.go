package shm

import (
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/rawio"
)

// An Arena is memory a process shares with the consumers of its rings:
// fixed-size slots in memfds, mapped writable by its owner, whose slots
// hold data the owner keeps anyway (a comm server's cache segments).
// Offered with a ring ([Share]), it is mapped by the consumer (once per
// process, however many connections it comes on), and works both ways:
// a data frame to the consumer may carry a reference into it ([Tx.Lend]),
// the consumer reading the bytes where the owner keeps them; and the
// owner may give the consumer slots to fill ([Tx.Give], [Rx.Take]), the
// consumer's data frames then referring to bytes it wrote there, which
// the owner keeps where they are. Either way the owner copies nothing.
// It must not reuse lent bytes until the consumer has released them, nor
// a given slot until the consumer is done writing it.
//
// The slots are spread over several memfds (stripes, up to
// [ArenaStripes]), mapped one after another so that the arena is one
// range of addresses and a slot's position in it is its name, and handed
// out from the stripes in turn: a write(2) into a memfd holds the file's
// lock for the whole copy, so writers filling slots of one memfd at once
// (two ranks, or a rank and the owner reserving or punching a slot)
// take turns, where slots of different memfds fill in parallel.
//
// An arena holds the data of every space the owner serves, so it is
// offered only to a peer running as the same user (SO_PEERCRED), which
// could read and write the owner's memory anyway (/proc/PID/mem). It is
// sealed against resizing only: a slot the owner lets go of is punched
// out of its memfd, giving its memory back, which a write seal would
// forbid, and consumers write the slots they are given.
type Arena struct {
	stripes
	slot int

	mu     sync.Mutex
	free   [][]int32 // per stripe: its slots let go of, punched
	unused []int     // per stripe: its slots from here on were never handed out
	next   int       // the stripe Alloc tries first
	closed bool
}

// ArenaStripes bounds the memfds an arena's slots are spread over.
const ArenaStripes = 8

// MaxArena bounds the arena a peer may offer.
const MaxArena = 1 << 40

// NewArena makes an arena of at least n slots of size bytes (n rounded
// up to a whole number per stripe). The memory is taken as slots are
// first written.
func NewArena(size, n int) (*Arena, error) {
	k := min(ArenaStripes, n)
	per := (n + max(k, 1) - 1) / max(k, 1)
	if size <= 0 || size%pageSize != 0 || n <= 0 || int64(size)*int64(per)*int64(k) > MaxArena {
		return nil, fmt.Errorf("shm: arena of %d slots of %d bytes", n, size)
	}
	fds := make([]int, 0, k)
	for range k {
		fd, err := unix.MemfdCreate("pispace-arena", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err == nil {
			fds = append(fds, fd)
			err = unix.Ftruncate(fd, int64(per*size))
		}
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL)
		}
		if err != nil {
			Close(fds...)
			return nil, fmt.Errorf("shm: making the arena: %w", err)
		}
	}
	st, err := mapStripes(fds, per*size)
	if err != nil {
		Close(fds...)
		return nil, err
	}
	return &Arena{stripes: st, slot: size, free: make([][]int32, k), unused: make([]int, k)}, nil
}

// stripes are memfds of equal size mapped one after another.
type stripes struct {
	fds  []int
	size int    // bytes per memfd
	mem  []byte // all of them
}

// mapStripes maps fds, each of size bytes, one after another, readable
// and writable, not populated. It does not take the descriptors.
func mapStripes(fds []int, size int) (stripes, error) {
	total := uintptr(len(fds)) * uintptr(size)
	base, err := unix.MmapPtr(-1, 0, nil, total, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return stripes{}, fmt.Errorf("shm: mmap: %w", err)
	}
	for i, fd := range fds {
		at := unsafe.Add(base, i*size)
		if _, err := unix.MmapPtr(fd, 0, at, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			unix.MunmapPtr(base, total)
			return stripes{}, fmt.Errorf("shm: mmap: %w", err)
		}
	}
	return stripes{fds: fds, size: size, mem: unsafe.Slice((*byte)(base), total)}, nil
}

// unmap unmaps the stripes; it leaves the descriptors open.
func (s *stripes) unmap() error {
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(s.mem)), uintptr(len(s.mem)))
}

// at returns the memfd holding the arena's byte at off, where in it that
// byte is, and how many bytes of the memfd follow from there.
func (s *stripes) at(off uint64) (fd int, pos int64, room int) {
	i := int(off / uint64(s.size))
	pos = int64(off % uint64(s.size))
	return s.fds[i], pos, s.size - int(pos)
}

const pageSize = 4096

// Alloc returns a free slot (len == cap == size), or nil when size is not
// the slot size, every slot is in use, or the arena is closed. A slot let
// go of before reads as zeros until written. Successive calls take their
// slots from the stripes in turn.
func (a *Arena) Alloc(size int) []byte {
	if a == nil || size != a.slot {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	per := a.size / a.slot
	for range len(a.fds) {
		j := a.next
		a.next = (a.next + 1) % len(a.fds)
		i := -1
		if f := a.free[j]; len(f) > 0 {
			i = int(f[len(f)-1])
			a.free[j] = f[:len(f)-1]
		} else if a.unused[j] < per {
			i = j*per + a.unused[j]
			a.unused[j]++
		}
		if i >= 0 {
			return a.mem[i*a.slot : (i+1)*a.slot : (i+1)*a.slot]
		}
	}
	return nil
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
	fd, pos, _ := a.at(uint64(i * a.slot))
	unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, pos, int64(a.slot))
	j := i / (a.size / a.slot)
	a.free[j] = append(a.free[j], int32(i))
	return true
}

// Reserve takes the memory of slot b (a whole slot Alloc returned) with
// fallocate, charged to this process and not zeroed: a page the memfd
// holds that way is zeroed only when it is first mapped, so a consumer
// that fills the slot with pwrite (Rx.WriteSlot) pays for neither the
// memory nor its zeroing. A shmem page taken by a write is charged to
// the writer's memory cgroup, which for a rank under --mem would count
// the cache's memory against the rank's limit. On an Intel Xeon VM
// fallocate took 1 GiB in ~75 ms, and pwrite then filled it at 5.0 GB/s,
// against 3.4 for pwrite into a hole (which allocates) and 2.9 for
// populating and copying through a mapping (which zeroes).
func (a *Arena) Reserve(b []byte) error {
	i, ok := a.index(b)
	if !ok || len(b) != a.slot {
		return fmt.Errorf("shm: reserve: not a slot of the arena")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return fmt.Errorf("shm: reserve: arena closed")
	}
	fd, pos, _ := a.at(uint64(i * a.slot))
	if err := unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, pos, int64(a.slot)); err != nil {
		return fmt.Errorf("shm: fallocate: %w", err)
	}
	return nil
}

// index returns the slot p begins in.
func (a *Arena) index(p []byte) (int, bool) {
	off, ok := a.Offset(p)
	if !ok {
		return 0, false
	}
	return int(off) / a.slot, true
}

// SlotSize returns the size of the arena's slots.
func (a *Arena) SlotSize() int { return a.slot }

// Fills reports whether this process writes the arena's slots with Fill
// (pwrite) rather than through its mapping: where its first touch of a
// page is slow (see touchSlow). It makes the arena a cache.Filler.
func (a *Arena) Fills() bool { return touchSlow() }

// Fill writes p at dst, which lies in one slot, with pwrite(2); an error
// when dst is not the arena's, or is shorter than p.
func (a *Arena) Fill(dst, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	off, ok := a.Offset(dst[:min(len(dst), len(p))])
	if !ok || len(dst) < len(p) {
		return fmt.Errorf("%w: %d bytes into %d not in one slot of the arena", ErrRing, len(p), len(dst))
	}
	fd, pos, _ := a.at(off)
	return pwriteAll(fd, p, pos)
}

// Offset returns where p lies in the arena, when it lies wholly in one
// slot of it.
func (a *Arena) Offset(p []byte) (uint64, bool) {
	if a == nil || len(p) == 0 {
		return 0, false
	}
	off, ok := within(a.mem, p)
	if !ok || off/a.slot != (off+len(p)-1)/a.slot {
		return 0, false
	}
	return uint64(off), true
}

// within returns where p begins in mem, when it does.
func within(mem, p []byte) (int, bool) {
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	if at < base || at-base >= uintptr(len(mem)) {
		return 0, false
	}
	return int(at - base), true
}

// Close unmaps the arena. The caller must make sure nothing in this
// process uses a slot any more. Its memory is not punched out: a consumer
// still running may hold references it was lent (see Tx.EndLoans), and
// the memory goes with the last consumer's mapping.
func (a *Arena) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	err := a.unmap() // a.mem stays: Offset compares addresses only
	Close(a.fds...)
	return err
}

// The header of a ring offered with an arena also holds the arena's slot
// size and a queue of slots the producer gives the consumer to fill
// (Tx.Give, Rx.Take): a writer copies its bytes into a slot and sends
// references to them, and the producer (a comm server) takes the slot as
// the cache segment they belong to, copying nothing. The queue is one
// producer, one consumer: the producer writes an entry, then advances
// slotsPut; the consumer reads entries below it, then advances
// slotsTaken.
const (
	slotSizeOffset   = 192
	slotsPutOffset   = 256
	slotsTakenOffset = 320
	slotQueueOffset  = 384
	// SlotQueue is how many slots the queue holds.
	SlotQueue = 64
)

func slotSizeOf(hdr []byte) *atomic.Uint64 { return wordAt(hdr, slotSizeOffset) }

func wordAt(hdr []byte, off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&hdr[off]))
}

// coldSlot marks a queue entry whose slot was never written (see Give).
const coldSlot = 1 << 63

// Give puts the slot at arena offset off in the consumer's queue; false
// when the queue is full or there is no arena. Cold says the slot was
// never written since its memory was taken ([Arena.Reserve]): the
// consumer then fills it with [Rx.WriteSlot], since a store through its
// mapping would zero each page first. Only one goroutine may give; it
// may be another than the one using the ring's other methods.
func (t *Tx) Give(off uint64, cold bool) bool {
	if t.arena == nil {
		return false
	}
	put, taken := wordAt(t.hdr, slotsPutOffset), wordAt(t.hdr, slotsTakenOffset)
	p := put.Load()
	if p-taken.Load() >= SlotQueue {
		return false
	}
	if cold {
		off |= coldSlot
	}
	wordAt(t.hdr, slotQueueOffset+8*int(p%SlotQueue)).Store(off)
	put.Store(p + 1)
	return true
}

// Queued returns how many given slots the consumer has not taken; a
// count that makes no sense reads as a full queue.
func (t *Tx) Queued() int {
	if t.arena == nil {
		return SlotQueue
	}
	p, k := wordAt(t.hdr, slotsPutOffset).Load(), wordAt(t.hdr, slotsTakenOffset).Load()
	if k > p || p-k > SlotQueue {
		return SlotQueue
	}
	return int(p - k)
}

// SlotSize returns the size of the arena's slots, 0 without an arena.
func (r *Rx) SlotSize() int { return r.slot }

// Slots returns how many slots the producer has given and the consumer
// not yet taken.
func (r *Rx) Slots() int {
	if r.arena == nil {
		return 0
	}
	p := wordAt(r.hdr, slotsPutOffset).Load()
	if p < r.took || p-r.took > SlotQueue {
		return 0
	}
	return int(p - r.took)
}

// Take takes the next slot given (see Tx.Give): the slot's bytes, its
// offset in the arena, and whether to fill it with WriteSlot (call) rather
// than through b: a cold slot, or any where this process's first touches
// are slow (see touchSlow). False when none is there, or the producer's
// entry is not a slot of the arena.
func (r *Rx) Take() (b []byte, off uint64, call, ok bool) {
	if r.Slots() == 0 {
		return nil, 0, false, false
	}
	off = wordAt(r.hdr, slotQueueOffset+8*int(r.took%SlotQueue)).Load()
	r.took++
	wordAt(r.hdr, slotsTakenOffset).Store(r.took)
	cold := off&coldSlot != 0
	if off &^= coldSlot; off%uint64(r.slot) != 0 || off >= uint64(len(r.arena)) {
		return nil, 0, false, false
	}
	b = r.arena[off : off+uint64(r.slot) : off+uint64(r.slot)]
	return b, off, r.arenaMap.populate(int(off/uint64(r.slot)), b, cold), true
}

// WriteSlot writes p at offset off of the arena with pwrite(2), for a
// slot Take returned call for. Into a cold one, the kernel fills pages
// the producer reserved without zeroing them first (it zeroes only what
// a write leaves of a page never written), where a store through the
// mapping would fault each page in zeroed; that zeroing was most of what
// keeping fresh bytes cost. Bytes written so are in the producer's
// mapping and in this process's as any others.
func (r *Rx) WriteSlot(p []byte, off uint64) error {
	if r.arenaMap == nil || off+uint64(len(p)) > uint64(len(r.arena)) {
		return fmt.Errorf("%w: %d bytes at arena offset %d", ErrRing, len(p), off)
	}
	fd, pos, room := r.arenaMap.at(off)
	if len(p) > room {
		return fmt.Errorf("%w: %d bytes at arena offset %d cross a stripe's end", ErrRing, len(p), off)
	}
	return pwriteAll(fd, p, pos)
}

// pwriteAll writes p at off of fd.
func pwriteAll(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := rawio.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("shm: pwrite to the arena: %w", err)
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// SameUser reports whether the peer of c runs as this process's user
// (SO_PEERCRED), the peers an arena is offered to.
func SameUser(c UnixConn) bool {
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

// Copy copies the bytes of v, a view this Rx returned (see View), into
// dst, as copy(dst, v) does. Lent bytes, in the producer's arena, are
// read with pread(2) where this process's first touches of shared pages
// are slow (see touchSlow): a reader mostly reads each lent page once,
// and the kernel's own mapping of it needs no fault.
func (r *Rx) Copy(dst, v []byte) int {
	n := min(len(dst), len(v))
	if n == 0 || r.arenaMap == nil || !touchSlow() {
		return copy(dst, v)
	}
	off, ok := within(r.arena, v)
	if !ok {
		return copy(dst, v) // the ring's bytes: this process touched them before
	}
	for done := 0; done < n; {
		fd, pos, room := r.arenaMap.at(uint64(off + done))
		k, err := rawio.Pread(fd, dst[done:min(n, done+room)], pos)
		if err == unix.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			return done + copy(dst[done:n], v[done:n]) // the mapping holds the same bytes
		}
		done += k
	}
	return n
}
