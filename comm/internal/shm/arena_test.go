package shm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pispace/pispace/comm/internal/unixtest"
)

const slot = 64 << 10

// lending sets up an arena of n slots and a ring offered with it, and
// returns the arena and both sides of the ring.
func lending(t *testing.T, n int) (*Arena, *Tx, *Rx) {
	t.Helper()
	a, err := NewArena(slot, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	p, c := unixtest.Pair(t)
	if !SameUser(p) {
		t.Fatal("SameUser: false for a pair of this process's sockets")
	}
	tx, err := Share(p, 64<<10, []byte("ring"), a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	r := NewReader(c)
	t.Cleanup(r.Close)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	rx, err := r.Accept(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	if rx.arena == nil {
		t.Fatal("the arena did not come with the ring")
	}
	return a, tx, rx
}

func TestArenaSlots(t *testing.T) {
	a, err := NewArena(slot, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var got [][]byte
	for range 3 {
		b := a.Alloc(slot)
		if len(b) != slot || cap(b) != slot {
			t.Fatalf("Alloc: len %d cap %d, want %d", len(b), cap(b), slot)
		}
		got = append(got, b)
	}
	if b := a.Alloc(slot); b != nil {
		t.Fatal("Alloc past the last slot gave a buffer")
	}
	if b := a.Alloc(slot / 2); b != nil {
		t.Fatal("Alloc of another size gave a buffer")
	}
	for i, b := range got {
		off, ok := a.Offset(b[10:20])
		if !ok || off != uint64(i*slot+10) {
			t.Fatalf("Offset of slot %d + 10: %d %v", i, off, ok)
		}
	}
	if _, ok := a.Offset(a.mem[slot-1 : slot+1]); ok {
		t.Fatal("Offset of bytes across two slots")
	}
	if _, ok := a.Offset(make([]byte, 10)); ok {
		t.Fatal("Offset of heap bytes")
	}
	if a.Free(make([]byte, slot)) {
		t.Fatal("Free took a heap buffer")
	}
	got[1][0] = 7
	if !a.Free(got[1]) {
		t.Fatal("Free refused its own slot")
	}
	b := a.Alloc(slot)
	if &b[0] != &got[1][0] {
		t.Fatal("the freed slot was not handed out again")
	}
	if b[0] != 0 {
		t.Fatalf("a freed slot reads %d, want its memory given back (zeros)", b[0])
	}
}

func TestLentBytesAreReadInPlaceUntilReleased(t *testing.T) {
	a, tx, rx := lending(t, 4)
	seg := a.Alloc(slot)
	for i := range seg {
		seg[i] = byte(i * 7)
	}
	var done []int
	lend := func(i, from, n int) uint64 {
		t.Helper()
		off, ok := a.Offset(seg[from : from+n])
		if !ok {
			t.Fatal("Offset failed")
		}
		pos, ok := tx.Lend(off, n, 3*slot/2, func() { done = append(done, i) })
		if !ok {
			t.Fatalf("Lend %d refused", i)
		}
		return pos
	}
	p1 := lend(1, 0, slot/2)
	ringed := bytes.Repeat([]byte{9}, 20<<10)
	rpos, ok := tx.Put(ringed) // ring references interleave with loans
	if !ok {
		t.Fatal("Put failed")
	}
	p2 := lend(2, slot/2, slot/2)
	if _, ok := tx.Lend(0, slot, 3*slot/2, func() {}); ok {
		t.Fatal("Lend past the limit accepted")
	}

	v1, err := rx.View(p1, slot/2)
	if err != nil || !bytes.Equal(v1, seg[:slot/2]) {
		t.Fatalf("view of loan 1: %v", err)
	}
	seg[0]++ // the consumer reads the lender's bytes themselves: no copy was made
	if v1[0] != seg[0] {
		t.Fatal("the view is a copy")
	}
	if v, err := rx.View(rpos, len(ringed)); err != nil || !bytes.Equal(v, ringed) {
		t.Fatalf("ring view between loans: %v", err)
	}
	tx.Reclaim()
	if len(done) != 0 {
		t.Fatalf("loans %v ended before any release", done)
	}
	rx.Release()
	tx.Reclaim()
	if len(done) != 1 || done[0] != 1 {
		t.Fatalf("after releasing loan 1: ended %v", done)
	}
	if v2, err := rx.View(p2, slot/2); err != nil || !bytes.Equal(v2, seg[slot/2:]) {
		t.Fatalf("view of loan 2: %v", err)
	}
	if rx.Borrowed() != 2 {
		t.Fatalf("Borrowed %d, want 2", rx.Borrowed())
	}
	if kept := tx.EndLoans(false); kept != slot/2 || len(done) != 1 {
		t.Fatalf("EndLoans(false) with loan 2 viewed, not released: kept %d, ended %v", kept, done)
	}
}

func TestEndLoansWhenTheConsumerIsGone(t *testing.T) {
	_, tx, _ := lending(t, 2)
	n := 0
	for range 3 {
		if _, ok := tx.Lend(0, 1000, slot, func() { n++ }); !ok {
			t.Fatal("Lend refused")
		}
	}
	if kept := tx.EndLoans(true); kept != 0 || n != 3 {
		t.Fatalf("EndLoans(true): kept %d, %d of 3 ended", kept, n)
	}
}

func TestProducerIgnoresNonsenseReturnCount(t *testing.T) {
	_, tx, _ := lending(t, 2)
	n := 0
	tx.Lend(0, 100, slot, func() { n++ })
	tx.returned.Store(5) // more than were lent
	tx.Reclaim()
	if n != 0 {
		t.Fatal("a return count ahead of the loans ended one")
	}
}

func TestBadArenaReferences(t *testing.T) {
	_, _, rx := lending(t, 2)
	for _, c := range []struct {
		pos uint64
		n   int
	}{
		{ArenaRef | 2*slot, 1},      // past the end
		{ArenaRef | slot, slot + 1}, // reaches past the end
		{ArenaRef, 0},               // empty
		{ArenaRef | 1<<62, 1},       // far out
	} {
		if _, err := rx.View(c.pos, c.n); !errors.Is(err, ErrRef) {
			t.Errorf("View(%#x, %d): %v, want ErrRef", c.pos, c.n, err)
		}
	}
	_, rx2, _ := offered(t, 64<<10) // a ring offered without an arena
	if _, err := rx2.View(ArenaRef, 10); !errors.Is(err, ErrRef) {
		t.Errorf("arena reference on a ring without an arena: %v, want ErrRef", err)
	}
}

func TestSlotQueue(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow-touch=%v", slow), func(t *testing.T) { slotQueue(t, slow) })
	}
}

// slotQueue: slots given are taken in order; a cold one, or any where
// first touches are slow, is to be filled with WriteSlot.
func slotQueue(t *testing.T, slow bool) {
	withTouch(t, slow)
	a, tx, rx := lending(t, 2*SlotQueue)
	if rx.SlotSize() != slot {
		t.Fatalf("SlotSize %d, want %d", rx.SlotSize(), slot)
	}
	if _, _, _, ok := rx.Take(); ok {
		t.Fatal("Take from an empty queue")
	}
	for i := range SlotQueue {
		if !tx.Give(uint64(i*slot), i == 1) {
			t.Fatalf("Give %d refused", i)
		}
	}
	if tx.Give(0, false) || tx.Queued() != SlotQueue || rx.Slots() != SlotQueue {
		t.Fatalf("full queue: Give accepted more, or Queued %d / Slots %d", tx.Queued(), rx.Slots())
	}
	for i := range 3 {
		b, off, call, ok := rx.Take()
		if !ok || off != uint64(i*slot) || len(b) != slot || cap(b) != slot || call != (i == 1 || slow) {
			t.Fatalf("Take %d: off %d len %d call %v ok %v", i, off, len(b), call, ok)
		}
		s := a.mem[i*slot : (i+1)*slot]
		if call { // filled with pwrite, seen in both mappings
			if err := rx.WriteSlot([]byte("cold"), off+5); err != nil {
				t.Fatal(err)
			}
			if string(s[5:9]) != "cold" || string(b[5:9]) != "cold" {
				t.Fatal("bytes written with WriteSlot are not in the slot")
			}
			continue
		}
		b[0] = byte(i + 1) // the consumer writes the producer's slot itself
		if s[0] != byte(i+1) {
			t.Fatal("a taken slot is not the producer's memory")
		}
	}
	if err := rx.WriteSlot(make([]byte, 2), uint64(len(a.mem)-1)); err == nil {
		t.Fatal("WriteSlot past the arena's end")
	}
	if tx.Queued() != SlotQueue-3 {
		t.Fatalf("Queued %d after 3 taken", tx.Queued())
	}
	// A producer's entry that is not a slot is refused, and skipped.
	for range SlotQueue - 3 {
		rx.Take()
	}
	tx.Give(slot+1, false)
	tx.Give(uint64(len(a.mem)), true)
	tx.Give(slot, true)
	for i, want := range []bool{false, false, true} {
		if _, _, _, ok := rx.Take(); ok != want {
			t.Fatalf("entry %d: Take %v, want %v", i, ok, want)
		}
	}
	// A count that makes no sense reads as a full queue / no slot.
	wordAt(tx.hdr, slotsTakenOffset).Store(1 << 40)
	if tx.Queued() != SlotQueue || tx.Give(0, false) {
		t.Fatal("a consumer's count ahead of the producer's is trusted")
	}
}

func TestNoSlotsWithoutArena(t *testing.T) {
	tx, rx, _ := offered(t, 64<<10)
	if tx.Give(0, false) || rx.Slots() != 0 || rx.SlotSize() != 0 {
		t.Fatal("slots without an arena")
	}
	if err := rx.WriteSlot([]byte("x"), 0); err == nil {
		t.Fatal("WriteSlot without an arena")
	}
	if _, _, _, ok := rx.Take(); ok {
		t.Fatal("Take without an arena")
	}
}

// TestReserve: Reserve takes a slot's memory (the memfd's blocks grow by
// the slot), bytes written into it with WriteSlot are in the owner's
// mapping, and anything but a whole slot, or a closed arena, is refused.
func TestReserve(t *testing.T) {
	a, tx, rx := lending(t, 4)
	blocks := func() (n int64) {
		for _, fd := range a.fds {
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				t.Fatal(err)
			}
			n += st.Blocks * 512
		}
		return n
	}
	b := a.Alloc(slot)
	before := blocks()
	if err := a.Reserve(b); err != nil {
		t.Fatal(err)
	}
	if got := blocks() - before; got < slot {
		t.Fatalf("Reserve took %d bytes of memory, want the slot's %d", got, slot)
	}
	off, _ := a.Offset(b)
	if !tx.Give(off, true) {
		t.Fatal("Give refused")
	}
	if _, got, cold, ok := rx.Take(); !ok || !cold || got != off {
		t.Fatalf("Take: off %d cold %v ok %v", got, cold, ok)
	}
	if err := rx.WriteSlot([]byte("reserved"), off+100); err != nil {
		t.Fatal(err)
	}
	if string(b[100:108]) != "reserved" {
		t.Fatal("bytes written into a reserved slot are not in the owner's mapping")
	}
	if a.Reserve(b[:10]) == nil || a.Reserve(make([]byte, slot)) == nil {
		t.Fatal("Reserve of something other than a whole slot")
	}
	a.Close()
	if a.Reserve(a.mem[slot:2*slot]) == nil {
		t.Fatal("Reserve on a closed arena")
	}
}

// TestSlotMappedOnce: a slot taken warm is populated once per process and
// remembered; taking it cold (punched out since, so unmapped) forgets
// it; a slot index past the bitmap (a header stating a smaller slot size)
// is populated without being remembered.
func TestSlotMappedOnce(t *testing.T) {
	withTouch(t, false)
	a, tx, rx := lending(t, 4)
	m := rx.arenaMap
	for _, step := range []struct {
		cold bool
		want bool
	}{{false, true}, {false, true}, {true, false}, {false, true}} {
		if !tx.Give(slot, step.cold) {
			t.Fatal("Give refused")
		}
		if _, _, _, ok := rx.Take(); !ok {
			t.Fatal("Take failed")
		}
		if slotMapped(m, 1) != step.want {
			t.Fatalf("after a %v take: mapped %v, want %v", step.cold, slotMapped(m, 1), step.want)
		}
	}
	if slotMapped(m, 0) || slotMapped(m, 2) {
		t.Fatal("slots never taken are marked mapped")
	}
	m.populate(len(m.mapped)*64, a.mem[:slot], false) // past the bitmap: no panic
}

// TestSlowTouchNeverMaps: where first touches are slow, a slot taken warm
// is filled with WriteSlot and left unmapped, and one mapped before is
// forgotten (it may be punched out and come back cold meanwhile).
func TestSlowTouchNeverMaps(t *testing.T) {
	withTouch(t, false)
	_, tx, rx := lending(t, 4)
	m := rx.arenaMap
	take := func() bool {
		t.Helper()
		if !tx.Give(slot, false) {
			t.Fatal("Give refused")
		}
		_, _, call, ok := rx.Take()
		if !ok {
			t.Fatal("Take failed")
		}
		return call
	}
	if take() || !slotMapped(m, 1) {
		t.Fatal("fast touches: a warm slot is not mapped")
	}
	withTouch(t, true)
	if !take() || slotMapped(m, 1) {
		t.Fatal("slow touches: a warm slot is not left to WriteSlot, or stays marked mapped")
	}
}

// TestCopy: Copy gives what copy gives, for lent bytes (read with pread
// where first touches are slow) and for the ring's, whole or in part.
func TestCopy(t *testing.T) {
	for _, slow := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow-touch=%v", slow), func(t *testing.T) {
			withTouch(t, slow)
			a, tx, rx := lending(t, 4)
			seg := a.Alloc(slot)
			for i := range seg {
				seg[i] = byte(i*13 + 1)
			}
			off, _ := a.Offset(seg)
			lent, ok := tx.Lend(off+100, slot-100, 2*slot, func() {})
			if !ok {
				t.Fatal("Lend refused")
			}
			ringed := bytes.Repeat([]byte{7, 8, 9}, 7<<10)
			put, ok := tx.Put(ringed)
			if !ok {
				t.Fatal("Put failed")
			}
			for _, c := range []struct {
				pos  uint64
				n    int
				want []byte
			}{{lent, slot - 100, seg[100:]}, {put, len(ringed), ringed}} {
				v, err := rx.View(c.pos, c.n)
				if err != nil {
					t.Fatal(err)
				}
				for _, size := range []int{c.n, c.n / 3, 1} {
					dst := make([]byte, size)
					if n := rx.Copy(dst, v); n != size || !bytes.Equal(dst, c.want[:size]) {
						t.Fatalf("Copy of %d into %d bytes: %d, equal %v", c.n, size, n, bytes.Equal(dst, c.want[:size]))
					}
				}
				if n := rx.Copy(make([]byte, c.n+5), v[7:]); n != c.n-7 {
					t.Fatalf("Copy of the view's tail into a larger buffer: %d, want %d", n, c.n-7)
				}
			}
			if n := rx.Copy(nil, nil); n != 0 {
				t.Fatalf("Copy of nothing: %d", n)
			}
		})
	}
}

// TestArenaFill: Fill writes into a slot with pwrite (the bytes are then
// in the mapping), and refuses what is not within one slot of the arena.
func TestArenaFill(t *testing.T) {
	a, err := NewArena(slot, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := a.Alloc(slot)
	p := bytes.Repeat([]byte("fill"), 1000)
	if err := a.Fill(b[100:], p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[100:100+len(p)], p) {
		t.Fatal("filled bytes are not in the slot")
	}
	if a.Fill(b[100:], nil) != nil {
		t.Fatal("Fill of nothing failed")
	}
	for name, dst := range map[string][]byte{
		"heap":         make([]byte, len(p)),
		"short":        b[slot-10:],
		"across slots": a.mem[slot-10 : slot+len(p)],
	} {
		if a.Fill(dst, p) == nil {
			t.Fatalf("Fill into %s accepted", name)
		}
	}
}

// slotMapped reports whether m marks slot i mapped in this process.
func slotMapped(m *sharedMap, i int) bool { return m.mapped[i/64].Load()&(1<<(i%64)) != 0 }

// TestArenaStripes: an arena's slots lie in several memfds, mapped one
// after another; Alloc takes slots from the stripes in turn (so that
// writers given successive slots write different memfds) and wraps back
// to each stripe's free ones; bytes written into any stripe with Fill or
// WriteSlot show in both mappings and read back with Copy; a WriteSlot or
// Copy across a stripe's end is refused or split.
func TestArenaStripes(t *testing.T) {
	withTouch(t, true)
	const n = 2*ArenaStripes + 3 // rounded up to 3 slots per stripe
	a, _, rx := lending(t, n)
	if len(a.fds) != ArenaStripes || a.size != 3*slot || len(a.mem) != ArenaStripes*3*slot {
		t.Fatalf("%d stripes of %d bytes, %d mapped", len(a.fds), a.size, len(a.mem))
	}
	if len(rx.arenaMap.fds) != ArenaStripes || len(rx.arena) != len(a.mem) {
		t.Fatalf("consumer: %d stripes, %d bytes", len(rx.arenaMap.fds), len(rx.arena))
	}
	var slots [][]byte
	seen := map[int]bool{}
	for i := range ArenaStripes * 3 {
		b := a.Alloc(slot)
		if b == nil {
			t.Fatalf("Alloc %d: none", i)
		}
		off, _ := a.Offset(b)
		stripe := int(off) / a.size
		if i < ArenaStripes {
			if seen[stripe] {
				t.Fatalf("Alloc %d: stripe %d again before every stripe had one", i, stripe)
			}
			seen[stripe] = true
		}
		slots = append(slots, b)
	}
	if a.Alloc(slot) != nil {
		t.Fatal("Alloc past the last slot")
	}
	for i, b := range slots {
		off, _ := a.Offset(b)
		p := []byte(fmt.Sprintf("slot %d", i))
		if i%2 == 0 {
			if err := a.Fill(b[7:], p); err != nil {
				t.Fatal(err)
			}
		} else if err := rx.WriteSlot(p, off+7); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b[7:7+len(p)], p) || !bytes.Equal(rx.arena[off+7:off+7+uint64(len(p))], p) {
			t.Fatalf("slot %d: bytes written are not in both mappings", i)
		}
		dst := make([]byte, len(p))
		if rx.Copy(dst, rx.arena[off+7:off+7+uint64(len(p))]); !bytes.Equal(dst, p) {
			t.Fatalf("slot %d: Copy read %q", i, dst)
		}
	}
	end := uint64(a.size) // the first stripe's end
	if rx.WriteSlot(make([]byte, 20), end-10) == nil {
		t.Fatal("WriteSlot across a stripe's end")
	}
	want := append(append([]byte(nil), rx.arena[end-10:end]...), rx.arena[end:end+10]...)
	if dst := make([]byte, 20); rx.Copy(dst, rx.arena[end-10:end+10]) != 20 || !bytes.Equal(dst, want) {
		t.Fatal("Copy across a stripe's end")
	}
	// A slot let go of comes back from its own stripe.
	off, _ := a.Offset(slots[5])
	if !a.Free(slots[5]) {
		t.Fatal("Free refused")
	}
	b := a.Alloc(slot)
	if got, _ := a.Offset(b); got != off {
		t.Fatalf("Alloc after Free: offset %d, want %d", got, off)
	}
	if string(b[7:13]) == "slot 5" {
		t.Fatal("a freed slot kept its bytes")
	}
}

// TestMapArenaRejectsBadStripes: stripes of different sizes, too many,
// or not a whole number of slots are refused, and their descriptors
// closed.
func TestMapArenaRejectsBadStripes(t *testing.T) {
	mk := func(size int) int {
		fd, _, err := newMemfd("test", size, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	_, _, rx := lending(t, 1)
	var many []int
	for range ArenaStripes + 1 {
		many = append(many, mk(slot))
	}
	for name, fds := range map[string][]int{
		"unequal":   {mk(slot), mk(2 * slot)},
		"too many":  many,
		"part slot": {mk(slot + pageSize)},
		"none":      {},
	} {
		r := &Rx{hdr: rx.hdr}
		if err := r.mapArena(fds); err == nil {
			t.Fatalf("%s: mapped", name)
		}
		for _, fd := range fds {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
				t.Fatalf("%s: descriptor %d left open", name, fd)
			}
		}
	}
}
