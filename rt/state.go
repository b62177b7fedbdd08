package rt

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// commState is the checkpointed position of one communicator: for every
// peer, where this rank's writer to it stands and where its reader from it
// must resume.
type commState struct {
	id     string
	splits int
	peers  []peerState
}

type peerState struct {
	outOff int64  // bytes written to the peer
	outSeq uint64 // next frame sequence number to the peer
	inOff  int64  // offset of the first frame from the peer not yet consumed
	inSeq  uint64 // its sequence number
	skip   []uint64
	// skip lists frames at or after inSeq that were already consumed (a
	// later tag taken before an earlier one); they are dropped on replay.
}

// snapshot captures c's position. It fails with ErrPending while receives
// are posted.
func (c *Comm) snapshot() (*commState, error) {
	st := &commState{id: c.id, peers: make([]peerState, c.size)}
	c.splitMu.Lock()
	st.splits = c.splits
	c.splitMu.Unlock()
	for i := range c.outs {
		o := &c.outs[i]
		o.mu.Lock()
		st.peers[i].outOff, st.peers[i].outSeq = o.off, o.seq
		err := o.err
		o.mu.Unlock()
		if err != nil {
			return nil, rankErr(i, "checkpoint", err)
		}
	}
	if err := c.in.snapshot(st.peers); err != nil {
		return nil, rankErr(c.rank, "checkpoint", err)
	}
	return st, nil
}

func (in *inbox) snapshot(peers []peerState) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pending() {
		return ErrPending
	}
	queued := map[uint64]bool{}
	for s := range in.srcs {
		src := &in.srcs[s]
		p := &peers[s]
		p.inOff, p.inSeq = src.consumed, src.nextSeq
		clear(queued)
		first := true
		for _, m := range in.queue {
			if m.src != s {
				continue
			}
			if first {
				p.inOff, p.inSeq, first = m.off, m.h.seq, false
			}
			queued[m.h.seq] = true
		}
		for q := p.inSeq; q < src.nextSeq; q++ {
			if !queued[q] {
				p.skip = append(p.skip, q)
			}
		}
		p.skip = append(p.skip, slices.Sorted(maps.Keys(src.skip))...)
	}
	return nil
}

// applyState moves c to a checkpointed position: pumps are stopped and
// restart from the recorded offsets, writers are re-created at theirs (the
// old handles are dropped without Close, which would seal the channel).
func (c *Comm) applyState(st *commState) error {
	if err := c.in.stopPumps(); err != nil {
		return rankErr(c.rank, "restore", err)
	}
	c.splitMu.Lock()
	c.splits = st.splits
	c.splitMu.Unlock()
	for i := range c.outs {
		o := &c.outs[i]
		o.mu.Lock()
		o.w, o.err = nil, nil
		o.off, o.seq = st.peers[i].outOff, st.peers[i].outSeq
		o.mu.Unlock()
	}
	in := &c.in
	in.mu.Lock()
	defer in.mu.Unlock()
	in.queue = nil
	for s := range in.srcs {
		src := &in.srcs[s]
		p := st.peers[s]
		src.consumed, src.nextSeq, src.queued, src.err = p.inOff, p.inSeq, 0, nil
		src.skip = nil
		if len(p.skip) > 0 {
			src.skip = make(map[uint64]bool, len(p.skip))
			for _, q := range p.skip {
				src.skip[q] = true
			}
		}
	}
	return nil
}

// ckptMagic starts an encoded checkpoint.
const ckptMagic = "PIRTCK01"

// encodeCheckpoint lays out a checkpoint: magic, step, named-channel
// counters, communicator states, user state.
func encodeCheckpoint(step int64, named map[string]int, comms []*commState, user []byte) []byte {
	b := []byte(ckptMagic)
	b = binary.LittleEndian.AppendUint64(b, uint64(step))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(named)))
	for _, name := range slices.Sorted(maps.Keys(named)) {
		b = appendString(b, name)
		b = binary.LittleEndian.AppendUint64(b, uint64(named[name]))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comms)))
	for _, cs := range comms {
		b = appendString(b, cs.id)
		b = binary.LittleEndian.AppendUint64(b, uint64(cs.splits))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(cs.peers)))
		for _, p := range cs.peers {
			for _, v := range []uint64{uint64(p.outOff), p.outSeq, uint64(p.inOff), p.inSeq, uint64(len(p.skip))} {
				b = binary.LittleEndian.AppendUint64(b, v)
			}
			for _, q := range p.skip {
				b = binary.LittleEndian.AppendUint64(b, q)
			}
		}
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(user)))
	return append(b, user...)
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// decoder reads the encoding above, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n uint64) []byte {
	if d.err != nil || n > uint64(len(d.b)) {
		if d.err == nil {
			d.err = fmt.Errorf("%w: truncated", ErrCheckpoint)
		}
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u64() uint64 {
	p := d.take(8)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

func (d *decoder) u32() uint32 {
	p := d.take(4)
	if d.err != nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

func (d *decoder) str() string { return string(d.take(uint64(d.u32()))) }

// count reads a length and bounds it by the bytes left (each item takes
// at least min bytes), so corrupt input cannot make huge allocations.
func (d *decoder) count(n uint64, min int) int {
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.err = fmt.Errorf("%w: count %d", ErrCheckpoint, n)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func decodeCheckpoint(b []byte) (step int64, named map[string]int, comms []*commState, user []byte, err error) {
	if len(b) < len(ckptMagic) || string(b[:len(ckptMagic)]) != ckptMagic {
		return 0, nil, nil, nil, fmt.Errorf("%w: bad magic", ErrCheckpoint)
	}
	d := &decoder{b: b[len(ckptMagic):]}
	step = int64(d.u64())
	named = map[string]int{}
	for range d.count(uint64(d.u32()), 12) {
		name := d.str()
		named[name] = int(d.u64())
	}
	for range d.count(uint64(d.u32()), 16) {
		cs := &commState{id: d.str(), splits: int(d.u64())}
		cs.peers = make([]peerState, d.count(uint64(d.u32()), 40))
		for i := range cs.peers {
			p := &cs.peers[i]
			p.outOff, p.outSeq, p.inOff, p.inSeq = int64(d.u64()), d.u64(), int64(d.u64()), d.u64()
			p.skip = make([]uint64, d.count(d.u64(), 8))
			for j := range p.skip {
				p.skip[j] = d.u64()
			}
		}
		comms = append(comms, cs)
	}
	user = d.take(d.u64())
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCheckpoint, len(d.b))
	}
	if d.err != nil {
		return 0, nil, nil, nil, d.err
	}
	return step, named, comms, user, nil
}
