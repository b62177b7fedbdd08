package server

import (
	"fmt"

	"github.com/pispace/pispace/comm/cache"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/lookup"
)

// A writer of the server's host may write its bytes straight into cache
// segments: it asks with TArena, the session offers its ring with the
// arena (see offerRing), and gives it free segment buffers (slots of the
// arena) through the ring's header (shm.Tx.Give). The writer copies the
// bytes of a segment into a slot, starting at the segment's first byte,
// and sends references to them (shm.ArenaRef positions); the store takes
// the slot as the segment's buffer (cache.Store.AppendOwned), and later
// bytes of that segment written into it are appended where they already
// are. Nothing is copied in the server.
//
// A slot is the session's from TakeBuffer until the writer is done with
// it: it has written past the end of the slot's segment (it writes in
// order, also when it replays bytes the stream has), or closed the
// instance, or the session ended. The segment keeps it pinned
// until then (the writer may still write into it); a slot no segment took
// (the bytes were copied instead) goes back to the store. A session the
// server cut keeps its slots for good: the writer may still write into
// them.

// slotsWanted is how many slots a session keeps in its writer's queue at
// first, slotsMax how many at most (see slotTarget).
const (
	slotsWanted = 4
	slotsMax    = 16
)

// slotTarget returns how many slots a session keeps in its writer's queue,
// cur until now, when queued are left there and given says whether any
// were given before: twice as many (up to slotsMax) once the writer has
// taken them all, since its burst of large writes then outran the refills
// and went through its ring, for the server to copy. On a shadow-paging
// guest a quarter of a bandwidth run's bytes went so with 4 slots, and a
// copy into fresh segment memory through the server's mapping is slow
// there (see shm's touchSlow); growing to 16, a few percent did (OSU by
// default, 2 rounds: 1 MiB bandwidth 1101-1123 -> 1473-1626 MB/s, 2-rank
// 1 Mi Allreduce 40.9-42.7 -> 10.9-13.3 ms). Slots queued are not yet
// counted against the cache's bound, so a session that never runs dry
// keeps four.
func slotTarget(cur, queued int, given bool) int {
	if queued == 0 && given {
		return min(2*cur, slotsMax)
	}
	return cur
}

// slotUse is one slot given to the session's writer.
type slotUse struct {
	buf   []byte
	key   cache.Key
	seg   int64  // the segment the writer fills, once it wrote; -1 before
	unpin func() // set once the segment took buf
}

// onArena handles TArena: the client reads descriptors from now on, and
// the ring (with its arena) is offered with the first slots once it
// writes a large payload (startArena); a client whose channels carry
// small messages never pays for them.
func (ss *session) onArena() {
	ss.arenaAsked = ss.s.arena != nil && ss.fds != nil
}

// startArena offers the ring and gives slots from then on, for a client
// that asked (onArena) and now writes large payloads.
func (ss *session) startArena() {
	ss.arenaAsked = false
	ss.slotMu.Lock()
	ss.wantSlots = true
	ss.slotMu.Unlock()
	if ss.offered.Load() != nil { // offered already, for read replies
		ss.refill()
		return
	}
	ss.wantRing.Store(true)
	select {
	case ss.ctrlSig <- struct{}{}: // the writing goroutine offers the ring
	default:
	}
}

// refill gives the writer slots up to its target (slotTarget), once the
// ring that carries them is offered: by the writing goroutine right after
// the offer, by the reading one after each write.
func (ss *session) refill() {
	tx := ss.offered.Load()
	if tx == nil || tx.Queued() >= int(ss.slotsWant.Load()) { // also a ring without an arena
		return
	}
	ss.slotMu.Lock()
	defer ss.slotMu.Unlock()
	if !ss.wantSlots {
		return
	}
	want := slotTarget(int(ss.slotsWant.Load()), tx.Queued(), len(ss.slots) > 0)
	ss.slotsWant.Store(int32(want))
	for tx.Queued() < want {
		b, cold := ss.s.store.TakeBuffer()
		off, ok := ss.s.arena.Offset(b)
		if !ok || len(b) != ss.s.arena.SlotSize() || off%uint64(len(b)) != 0 || !tx.Give(off, cold) {
			ss.s.store.GiveBuffer(b)
			ss.wantSlots = ok // a heap buffer: the arena is used up, stop for now
			return
		}
		if ss.slots == nil {
			ss.slots = map[uint64]*slotUse{}
		}
		ss.slots[off] = &slotUse{buf: b, seg: -1}
	}
}

// onArenaWrite appends the n bytes at arena offset aoff, which the writer
// put in a slot given to it, at offset off of key's stream.
func (ss *session) onArenaWrite(req uint32, key cache.Key, off int64, aoff uint64, n int) error {
	if ss.s.arena == nil {
		return fmt.Errorf("write reference to arena offset %d: the server has no arena", aoff)
	}
	size := uint64(ss.s.arena.SlotSize())
	at := aoff % size
	ss.slotMu.Lock()
	u := ss.slots[aoff-at]
	ss.slotMu.Unlock()
	seg := off / int64(size)
	switch {
	case u == nil:
		return fmt.Errorf("write reference to arena offset %d, in no slot given", aoff)
	case n <= 0 || off < 0 || at+uint64(n) > size || uint64(off)%size != at:
		return fmt.Errorf("write reference of %d bytes at arena offset %d for offset %d: not where the segment holds them", n, aoff, off)
	case u.seg >= 0 && (u.seg != seg || u.key != key):
		return fmt.Errorf("write reference to the slot of segment %d of %v for segment %d of %v", u.seg, u.key, seg, key)
	}
	if !ss.isWriter(key) {
		ss.sendError(req, proto.CodeNotWriter, fmt.Sprintf("session does not write instance %d of space %q", key.Instance, key.Space))
		return nil
	}
	if u.seg < 0 {
		u.seg, u.key = seg, key
		if ss.slotsOf == nil {
			ss.slotsOf = map[cache.Key][]uint64{}
		}
		ss.slotsOf[key] = append(ss.slotsOf[key], aoff-at)
	}
	data := u.buf[at : at+uint64(n)]
	var length int64
	var err error
	if u.unpin == nil {
		length, u.unpin, err = ss.s.store.AppendOwned(key, off, u.buf, data)
	} else {
		length, err = ss.s.store.Append(key, off, data) // in place: no copy
	}
	if err != nil {
		ss.sendError(req, codeOf(err), fmt.Sprintf("write at offset %d: %v", off, err))
		return nil
	}
	ss.appended(req, key, off+int64(n), length)
	return nil
}

// appended follows a write to key's stream that ended at offset end and
// left the stream length bytes long: slots of segments the writer is past
// go back, and parked readers hear of the growth.
func (ss *session) appended(req uint32, key cache.Key, end, length int64) {
	ss.endSlots(key, end)
	ss.refill()
	// Only parked readers need to hear of the growth, and only the lookup
	// service can wake them; the lengths the lookup service reports are
	// read from the store (driver.info). A stream counts itself as parked
	// before it looks at the store one last time (waitData), so either it
	// sees these bytes or this sees it.
	if ss.s.hasWaiters(key) {
		ss.post(key.Space, req, lookup.Appended{Instance: lookup.InstanceID(key.Instance), Length: length})
	}
}

// endSlots ends the slots of key's segments that end at or below the
// writer's offset end (all of them for end < 0): it is done with them.
func (ss *session) endSlots(key cache.Key, end int64) {
	offs := ss.slotsOf[key]
	if len(offs) == 0 {
		return
	}
	ss.slotMu.Lock()
	defer ss.slotMu.Unlock()
	size := int64(ss.s.arena.SlotSize())
	kept := offs[:0]
	for _, off := range offs {
		u := ss.slots[off]
		if end >= 0 && (u.seg+1)*size > end {
			kept = append(kept, off)
			continue
		}
		ss.endSlot(u)
		delete(ss.slots, off)
	}
	if len(kept) == 0 {
		delete(ss.slotsOf, key)
	} else {
		ss.slotsOf[key] = kept
	}
}

// endSlot gives u back: its segment's pin, or the buffer itself.
func (ss *session) endSlot(u *slotUse) {
	if u.unpin != nil {
		u.unpin()
	} else {
		ss.s.store.GiveBuffer(u.buf)
	}
}

// closeSlots ends every slot when the writer closed the connection; when
// the server cut it, the slots are kept for good (the writer may still
// write into them) and their count is returned.
func (ss *session) closeSlots(clientClosed bool) (kept int) {
	ss.slotMu.Lock()
	defer ss.slotMu.Unlock()
	if !clientClosed {
		return len(ss.slots)
	}
	for _, u := range ss.slots {
		ss.endSlot(u)
	}
	ss.slots, ss.slotsOf = nil, nil
	return 0
}
