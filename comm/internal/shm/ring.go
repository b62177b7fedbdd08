package shm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/proto"
)

// headerSize is the size of a ring's header, a memfd of its own: the
// consumer's release position is its first eight bytes, the producer's
// doorbell (see Tx.Wait) the four at bellOffset, the count of arena
// references released the eight at returnedOffset.
const headerSize = 4096

// MinPayload is the smallest payload worth a trip through the ring: below
// it, writing the bytes inline costs no more than the extra copy.
const MinPayload = 16 << 10

// After is how many bytes of payloads of at least MinPayload a connection
// carries inline before it sets up a ring, so that a connection that
// carries little never pays for one.
const After = 1 << 20

// poolBytes bounds the data areas a process keeps for its next rings.
const poolBytes = 32 << 20

// Budget bounds the data areas of a process's live rings. A process with
// many connections (a rank with many peers, a server with many clients)
// gives rings to the first ones that carry enough; the others use their
// socket until rings close (NewTx says ErrBudget).
const Budget = 64 << 20

// live is the size of the data areas of rings not yet closed.
var live atomic.Int64

// Errors.
var (
	ErrRing   = errors.New("shm: bad ring")                 // descriptors that are not a sealed ring of an acceptable size
	ErrRef    = errors.New("shm: bad reference")            // a reference outside the ring or out of order
	ErrBudget = errors.New("shm: ring memory budget spent") // see Budget
)

// area is a ring's data: a sealed memfd and the producer's writable
// mapping of it. A ring's pages are fresh memory the first time round (a
// page fault each, on both sides), which a connection that carries a few
// megabytes and closes pays more for than the ring saves: so an area
// whose consumer has released everything outlives its ring, in a pool,
// and serves the process's next ring. The memfd is sealed against writes
// through new mappings (F_SEAL_FUTURE_WRITE): a consumer maps it read-only
// and cannot spoil what the area later carries for another.
type area struct {
	fd  int
	mem []byte
}

var pool struct {
	mu    sync.Mutex
	free  []*area
	bytes int
}

// getArea returns a pooled area of size bytes or a new one.
func getArea(size int) (*area, error) {
	pool.mu.Lock()
	for i, a := range pool.free {
		if len(a.mem) == size {
			pool.free = append(pool.free[:i], pool.free[i+1:]...)
			pool.bytes -= size
			pool.mu.Unlock()
			return a, nil
		}
	}
	pool.mu.Unlock()
	fd, mem, err := newMemfd("pispace-ring", size, unix.F_SEAL_FUTURE_WRITE)
	if err != nil {
		return nil, err
	}
	return &area{fd: fd, mem: mem}, nil
}

// putArea keeps a for the next ring, or frees it when the pool is full.
func putArea(a *area) {
	pool.mu.Lock()
	if pool.bytes+len(a.mem) <= poolBytes {
		pool.free = append(pool.free, a)
		pool.bytes += len(a.mem)
		pool.mu.Unlock()
		return
	}
	pool.mu.Unlock()
	a.free()
}

func (a *area) free() {
	unix.Munmap(a.mem)
	unix.Close(a.fd)
}

// newMemfd makes a memfd of size bytes, maps it writable, and seals it
// against resizing plus extra.
func newMemfd(name string, size, extra int) (int, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, nil, fmt.Errorf("shm: memfd_create: %w", err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("shm: ftruncate: %w", err)
	}
	// MAP_POPULATE: the pages in one go rather than a fault each.
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("shm: mmap: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|extra|unix.F_SEAL_SEAL); err != nil {
		unix.Munmap(mem)
		unix.Close(fd)
		return -1, nil, fmt.Errorf("shm: sealing: %w", err)
	}
	return fd, mem, nil
}

func headOf(hdr []byte) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&hdr[0])) }

// returnedOffset is where the header holds the count of arena references
// the consumer released (see Tx.Lend), on a cache line of its own.
const returnedOffset = 128

func returnedOf(hdr []byte) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&hdr[returnedOffset]))
}

// Tx is the producing side of a ring: a fresh header, shared writable
// with the consumer, and a data area. Its methods are not safe for
// concurrent use: the connection's writer calls them under the lock that
// orders its frames, so that positions follow the order of the frames.
type Tx struct {
	hfd  int // the header's memfd until Offer hands it over, -1 after
	hdr  []byte
	head *atomic.Uint64
	bell *atomic.Uint32  // raised while Wait sleeps
	sock syscall.RawConn // the connection offered on, which Wait watches
	area *area
	data []byte
	next uint64 // the position after the last byte put
	// floor is where the bytes the consumer may still hold began at the
	// last Put: it had released everything before it.
	floor uint64
	// stuck is set when a Wait gave up, the release position being
	// stuckAt: Wait does not wait again until it moves.
	stuck   bool
	stuckAt uint64
	// With an arena offered (Share), loans are the references to it the
	// consumer has not released yet, oldest first; lent counts
	// references made, lentBytes the bytes of those not released.
	arena     *Arena
	returned  *atomic.Uint64 // the consumer's count of references released
	loans     []loan
	lent      uint64
	lentBytes int
}

// loan is one reference into the arena a consumer was sent.
type loan struct {
	seq  uint64 // its number: the consumer has released it once returned >= seq
	n    int
	done func()
}

// NewTx returns a ring of size data bytes, on a pooled area if there is
// one of that size.
func NewTx(size int) (*Tx, error) {
	if size <= 0 {
		return nil, fmt.Errorf("shm: ring size %d", size)
	}
	if live.Add(int64(size)) > Budget {
		live.Add(-int64(size))
		return nil, ErrBudget
	}
	a, err := getArea(size)
	if err != nil {
		live.Add(-int64(size))
		return nil, err
	}
	hfd, hdr, err := newMemfd("pispace-ring-head", headerSize, 0)
	if err != nil {
		putArea(a)
		live.Add(-int64(size))
		return nil, err
	}
	return &Tx{hfd: hfd, hdr: hdr, head: headOf(hdr), bell: bellOf(hdr), returned: returnedOf(hdr), area: a, data: a.mem}, nil
}

// Share makes a ring of size data bytes and offers it to the peer of c
// with frame (see Tx.Offer), with arena when that is not nil (see
// Tx.Lend). Errors: ErrBudget (try again later), those of making or
// offering the ring (the ring is closed again).
func Share(c UnixConn, size int, frame []byte, arena *Arena) (*Tx, error) {
	tx, err := NewTx(size)
	if err != nil {
		return nil, err
	}
	tx.arena = arena
	if arena != nil {
		slotSizeOf(tx.hdr).Store(uint64(arena.slot))
	}
	if err := tx.Offer(c, frame); err != nil {
		tx.Close()
		return nil, err
	}
	return tx, nil
}

// Offer writes frame to c with the ring's descriptors attached (header,
// then data, then the arena's stripes if there is one), handing the ring
// to the peer.
func (t *Tx) Offer(c UnixConn, frame []byte) error {
	if t.hfd < 0 || t.area == nil {
		return errors.New("shm: ring already offered or closed")
	}
	if sc, err := c.SyscallConn(); err == nil {
		t.sock = sc
	}
	fds := []int{t.hfd, t.area.fd}
	if t.arena != nil {
		fds = append(fds, t.arena.fds...)
	}
	n, _, err := c.WriteMsgUnix(frame, unix.UnixRights(fds...), nil)
	unix.Close(t.hfd)
	t.hfd = -1
	if err == nil && n < len(frame) {
		err = fmt.Errorf("shm: short write of the ring's frame (%d of %d bytes)", n, len(frame))
	}
	return err
}

// start returns, for the consumer's release position head, where the
// next payload goes and where the bytes the consumer still holds begin;
// false when head makes no sense (ahead of what was put). Once the
// consumer has released everything, the ring starts over at its first
// byte: a ping-pong of messages then reuses the same few pages, still in
// the processor's caches, where going round the whole ring would find
// each one cold.
func (t *Tx) start(head uint64) (next, live uint64, ok bool) {
	if head > t.next {
		return 0, 0, false
	}
	if head == t.next {
		size := uint64(len(t.data))
		next = (t.next + size - 1) / size * size
		return next, next, true
	}
	return t.next, max(head, t.floor), true
}

// place returns where n bytes go when the next free position is next and
// the bytes the consumer holds begin at live, or false when they do not
// fit. A payload never wraps: one that would skips the ring's end.
func (t *Tx) place(next, live uint64, n int) (uint64, bool) {
	size, m := uint64(len(t.data)), uint64(n)
	if m == 0 || m > size {
		return 0, false
	}
	if idx := next % size; idx+m > size {
		next += size - idx
	}
	return next, next+m-live <= size
}

// where returns where a payload of n bytes goes when the consumer has
// released up to head, and where the bytes it holds then begin; false
// when the payload does not fit.
func (t *Tx) where(head uint64, n int) (pos, live uint64, ok bool) {
	next, live, ok := t.start(head)
	if !ok {
		return 0, 0, false
	}
	pos, ok = t.place(next, live, n)
	return pos, live, ok
}

// Fits reports whether a payload of n bytes, cut into pieces of at most
// chunk bytes, would go into the ring whole, every piece at least
// MinPayload and all of them in the room the consumer has released. The
// room only grows until the next Put.
func (t *Tx) Fits(n, chunk int) bool {
	if n <= 0 {
		return false
	}
	next, live, ok := t.start(t.head.Load())
	if !ok {
		return false
	}
	for ; n > 0; n -= min(n, chunk) {
		m := min(n, chunk)
		pos, ok := t.place(next, live, m)
		if !ok || m < MinPayload {
			return false
		}
		next = pos + uint64(m)
	}
	return true
}

// Put copies p into the ring and returns its position, or false when p is
// empty, larger than the ring, or does not fit in the room the consumer
// has released. The caller then sends a frame referencing (pos, len(p)),
// before any other reference.
func (t *Tx) Put(p []byte) (pos uint64, ok bool) {
	pos, live, ok := t.where(t.head.Load(), len(p))
	if !ok {
		return 0, false
	}
	t.floor = live
	idx := pos % uint64(len(t.data))
	copy(t.data[idx:idx+uint64(len(p))], p)
	t.next = pos + uint64(len(p))
	return pos, true
}

// ArenaRef marks a reference's position as one in the producer's arena
// (Tx.Lend) rather than in the ring.
const ArenaRef = 1 << 63

// Lend makes a reference to the n bytes at off in the arena, for a frame
// the caller sends before any other reference, as with Put; done is
// called once the consumer has released it (by Reclaim, which every Lend
// calls first), or by EndLoans. It refuses (false) when there is no
// arena or when the references not yet released would pass limit bytes.
func (t *Tx) Lend(off uint64, n int, limit int, done func()) (pos uint64, ok bool) {
	t.Reclaim()
	if t.arena == nil || n <= 0 || t.lentBytes+n > limit {
		return 0, false
	}
	t.lent++
	t.lentBytes += n
	t.loans = append(t.loans, loan{seq: t.lent, n: n, done: done})
	return ArenaRef | off, true
}

// Lending reports whether the ring was offered with an arena.
func (t *Tx) Lending() bool { return t.arena != nil }

// Reclaim ends the loans the consumer has released. A count that makes no
// sense (ahead of the references made) ends none.
func (t *Tx) Reclaim() {
	if len(t.loans) == 0 {
		return
	}
	r := t.returned.Load()
	if r > t.lent {
		return
	}
	i := 0
	for ; i < len(t.loans) && t.loans[i].seq <= r; i++ {
		t.lentBytes -= t.loans[i].n
		t.loans[i].done()
	}
	if i > 0 {
		t.loans = append(t.loans[:0], t.loans[i:]...)
	}
}

// Held returns the n bytes put at pos while the consumer has not
// released them, whose room no Put reuses until it does; false once it
// has, or when pos and n are not a payload's place. The caller reads them
// before anything else calls Put or Close.
func (t *Tx) Held(pos uint64, n int) ([]byte, bool) {
	if t.area == nil || n <= 0 || t.head.Load() > pos || pos+uint64(n) > t.next {
		return nil, false
	}
	size := uint64(len(t.data))
	idx := pos % size
	if idx+uint64(n) > size {
		return nil, false
	}
	return t.data[idx : idx+uint64(n)], true
}

// EndLoans ends the loans the consumer has released, and the others too
// when consumerGone says that it no longer reads them (it closed the
// connection). Otherwise those are kept for good: a consumer still
// running may yet read them, so the lender must never reuse their bytes.
// It returns the bytes so kept. Call it before Close, with Lend not
// running.
func (t *Tx) EndLoans(consumerGone bool) (kept int) {
	if t.returned == nil {
		return 0
	}
	t.Reclaim()
	if consumerGone {
		for _, l := range t.loans {
			l.done()
		}
	} else {
		kept = t.lentBytes
	}
	t.loans, t.lentBytes = nil, 0
	return kept
}

// Close ends the ring. Its area goes back to the pool when the consumer
// has released every byte put (it holds no reference any more, and its
// read-only mapping cannot write to the area), and is freed otherwise.
// Loans still open are kept for good (see EndLoans). The caller must
// make sure Put and Lend are not running.
func (t *Tx) Close() error {
	t.loans = nil
	if t.hfd >= 0 {
		unix.Close(t.hfd)
		t.hfd = -1
	}
	if t.area == nil {
		return nil
	}
	live.Add(-int64(len(t.data)))
	if t.head.Load() == t.next {
		putArea(t.area)
	} else {
		t.area.free()
	}
	err := unix.Munmap(t.hdr)
	t.area, t.data, t.hdr, t.head, t.bell, t.returned = nil, nil, nil, nil, nil, nil
	return err
}

// Rx is the consuming side of a ring. Its methods are not safe for
// concurrent use: the connection's reader calls them in frame order.
type Rx struct {
	hdr  []byte
	data []byte // read-only
	head *atomic.Uint64
	bell *atomic.Uint32 // the producer's doorbell (see Tx.Wait)
	last uint64         // the end of the last reference viewed
	// arena is the producer's arena when it offered one, arenaMap the
	// process's mapping of it; borrowed counts the references to it
	// viewed, returned those released (the header's word at
	// returnedOffset).
	arena    []byte
	arenaMap *sharedMap
	returned *atomic.Uint64
	borrowed uint64
	// slot is the arena's slot size; took counts the slots taken from
	// the header's queue (see Tx.Give). Take is called by the writing
	// side, not the reading one.
	slot int
	took uint64
}

// MaxRing bounds the data of a ring a peer may offer.
const MaxRing = 64 << 20

// Map maps the ring whose descriptors (header, data) a peer sent, taking
// ownership of them (they are closed whatever happens). Both must be
// memfds sealed against shrinking (a ring the peer could shrink would
// make our reads fault), the header one page, the data at most max bytes.
func Map(hfd, dfd, max int) (*Rx, error) {
	defer unix.Close(hfd)
	defer unix.Close(dfd)
	hs, err := sealedSize(hfd)
	if err != nil {
		return nil, err
	}
	ds, err := sealedSize(dfd)
	if err != nil {
		return nil, err
	}
	if hs != headerSize || ds <= 0 || ds > int64(max) {
		return nil, fmt.Errorf("%w: header of %d bytes, %d data bytes (want %d and 1 to %d)", ErrRing, hs, ds, headerSize, max)
	}
	hdr, err := unix.Mmap(hfd, 0, headerSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	data, err := unix.Mmap(dfd, 0, int(ds), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		unix.Munmap(hdr)
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	return &Rx{hdr: hdr, data: data, head: headOf(hdr), bell: bellOf(hdr), returned: returnedOf(hdr)}, nil
}

// mapArena maps the arena whose stripes' descriptors came with the ring,
// taking ownership of them: memfds of one size sealed against shrinking,
// each a whole number of the slots the header states, at most MaxArena
// bytes in all, mapped one after another writable (a writer fills slots
// it is given, see Take) and not populated (their pages fault in, many at
// a time, as they are first used).
func (r *Rx) mapArena(fds []int) error {
	defer Close(fds...)
	if len(fds) == 0 || len(fds) > ArenaStripes {
		return fmt.Errorf("%w: an arena in %d memfds", ErrRing, len(fds))
	}
	slot := slotSizeOf(r.hdr).Load()
	var size int64
	for i, fd := range fds {
		s, err := sealedSize(fd)
		if err != nil {
			return err
		}
		if i > 0 && s != size {
			return fmt.Errorf("%w: arena stripes of %d and %d bytes", ErrRing, size, s)
		}
		size = s
	}
	if size <= 0 || size > MaxArena/int64(len(fds)) || size%pageSize != 0 {
		return fmt.Errorf("%w: arena of %d stripes of %d bytes", ErrRing, len(fds), size)
	}
	if slot == 0 || slot%pageSize != 0 || uint64(size)%slot != 0 {
		return fmt.Errorf("%w: arena stripes of %d bytes in slots of %d", ErrRing, size, slot)
	}
	m, err := mapShared(fds, int(size))
	if err != nil {
		return err
	}
	total := uint64(len(m.mem))
	mapped.Lock()
	if m.mapped == nil {
		m.mapped = make([]atomic.Uint64, (total/slot+63)/64)
	}
	mapped.Unlock()
	r.arena, r.arenaMap, r.slot = m.mem, m, int(slot)
	return nil
}

// A process maps each arena once, however many of its connections to the
// arena's owner are offered it: the pages a connection has touched are
// then mapped for the others too, where a mapping of its own would fault
// them in again (16 at a time) for every connection the pool hands out.
var mapped struct {
	sync.Mutex
	m map[[2]uint64]*sharedMap // by the memfd's device and inode
}

type sharedMap struct {
	key     [2]uint64
	stripes // descriptors of its own, for Rx.WriteSlot and Rx.Copy
	refs    int
	// mapped has a bit per slot whose pages this process has mapped
	// writable (Rx.Take), set once the slot size is known (mapArena).
	mapped []atomic.Uint64
}

// populate maps the pages of slot i (the bytes b) writable in this
// process, once, and reports whether the slot is to be filled with
// WriteSlot instead: a cold slot (reserved again after the producer
// punched it out, which unmapped it everywhere) is, and forgotten here,
// so that it is mapped again when it next comes warm; so is every slot
// where first touches are slow (touchSlow). A slot stays mapped however
// many times it comes back from the producer's free list, and a populate
// call that finds every page mapped still walked them all (30-90 µs per
// 1 MiB slot, a fifth of a 1 MiB write's time).
func (m *sharedMap) populate(i int, b []byte, cold bool) (call bool) {
	if cold || touchSlow() {
		if i/64 < len(m.mapped) {
			m.mapped[i/64].And(^(uint64(1) << (i % 64)))
		}
		return true
	}
	if i/64 >= len(m.mapped) { // another ring's header stated a smaller slot size
		unix.Madvise(b, unix.MADV_POPULATE_WRITE)
		return false
	}
	if w, bit := &m.mapped[i/64], uint64(1)<<(i%64); w.Load()&bit == 0 {
		// One system call, where writing would fault once per page. An
		// error (a kernel before 5.14) only leaves them to fault in.
		unix.Madvise(b, unix.MADV_POPULATE_WRITE)
		w.Or(bit)
	}
	return false
}

// mapShared returns the process's mapping of the arena whose stripes are
// fds, of size bytes each, mapping it the first time; release it once
// with unmapShared. The caller keeps fds.
func mapShared(fds []int, size int) (*sharedMap, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		return nil, fmt.Errorf("shm: fstat: %w", err)
	}
	key := [2]uint64{uint64(st.Dev), st.Ino}
	mapped.Lock()
	defer mapped.Unlock()
	if m := mapped.m[key]; m != nil && m.size == size && len(m.fds) == len(fds) {
		m.refs++
		return m, nil
	}
	own := make([]int, 0, len(fds))
	for _, fd := range fds {
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			Close(own...)
			return nil, fmt.Errorf("shm: dup: %w", err)
		}
		own = append(own, d)
	}
	st2, err := mapStripes(own, size)
	if err != nil {
		Close(own...)
		return nil, err
	}
	m := &sharedMap{key: key, stripes: st2, refs: 1}
	if mapped.m == nil {
		mapped.m = map[[2]uint64]*sharedMap{}
	}
	if old := mapped.m[key]; old == nil {
		mapped.m[key] = m
	}
	return m, nil
}

// unmapShared drops a reference to m, unmapping it with the last.
func unmapShared(m *sharedMap) error {
	mapped.Lock()
	defer mapped.Unlock()
	if m.refs--; m.refs > 0 {
		return nil
	}
	if mapped.m[m.key] == m {
		delete(mapped.m, m.key)
	}
	Close(m.fds...)
	return m.unmap()
}

// sealedSize returns the size of a memfd sealed against shrinking.
func sealedSize(fd int) (int64, error) {
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: not a sealable memory file: %v", ErrRing, err)
	}
	if seals&unix.F_SEAL_SHRINK == 0 {
		return 0, fmt.Errorf("%w: not sealed against shrinking", ErrRing)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("shm: fstat: %w", err)
	}
	return st.Size, nil
}

// Resolve returns the bytes a shared data frame's reference (its data
// part, see proto.SharedRef) points to; see View. On a nil Rx (no ring
// offered yet) it is an error.
func (r *Rx) Resolve(ref []byte) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: shared data before any shared ring", ErrRef)
	}
	pos, n, err := proto.SharedRef(ref)
	if err != nil {
		return nil, err
	}
	return r.View(pos, n)
}

// View returns the n bytes at pos, valid until they are released or the
// ring is closed. References must come in the order the producer made
// them: one that overlaps an earlier one, or reaches outside the ring, is
// an error.
func (r *Rx) View(pos uint64, n int) ([]byte, error) {
	if pos&ArenaRef != 0 {
		return r.borrow(pos&^ArenaRef, n)
	}
	size := uint64(len(r.data))
	if n <= 0 || uint64(n) > size || pos < r.last {
		return nil, fmt.Errorf("%w: %d bytes at %d (ring of %d, next at least %d)", ErrRef, n, pos, size, r.last)
	}
	idx := pos % size
	if idx+uint64(n) > size {
		return nil, fmt.Errorf("%w: %d bytes at %d wrap the ring of %d", ErrRef, n, pos, size)
	}
	r.last = pos + uint64(n)
	return r.data[idx : idx+uint64(n)], nil
}

// borrow returns the n bytes at off of the producer's arena, a reference
// made by Tx.Lend.
func (r *Rx) borrow(off uint64, n int) ([]byte, error) {
	if r.arena == nil || n <= 0 || off > uint64(len(r.arena)) || uint64(n) > uint64(len(r.arena))-off {
		return nil, fmt.Errorf("%w: %d bytes at %d of an arena of %d", ErrRef, n, off, len(r.arena))
	}
	r.borrowed++
	return r.arena[off : off+uint64(n)], nil
}

// Release gives back to the producer every byte viewed so far, and wakes
// it if it waits for room (see Tx.Wait); when it does not, that costs an
// atomic load.
func (r *Rx) Release() {
	if r.borrowed != 0 {
		r.returned.Store(r.borrowed)
	}
	r.head.Store(r.last)
	if r.bell.Load() != 0 {
		r.ring()
	}
}

// Close unmaps the ring. The caller must make sure no view is in use.
func (r *Rx) Close() error {
	if r.hdr == nil {
		return nil
	}
	err := errors.Join(unix.Munmap(r.data), unix.Munmap(r.hdr))
	if r.arenaMap != nil {
		err = errors.Join(err, unmapShared(r.arenaMap))
	}
	r.hdr, r.data, r.arena, r.arenaMap = nil, nil, nil, nil
	return err
}

// Borrowed returns how many references to the producer's arena the
// consumer has viewed.
func (r *Rx) Borrowed() uint64 { return r.borrowed }
