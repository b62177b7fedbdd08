package rt

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// Checkpoints of rank r live in the space as sealed data channels
// "_rt/ckpt/<r>/<incarnation>.<n>" plus, per incarnation, an index channel
// "_rt/ckpt/<r>/index.<incarnation>" of fixed-size records (sealed by
// Close, which makes them durable). A record is written only after its data
// channel is sealed, so a valid record always names a complete checkpoint.
// Restore takes the last valid record of the newest incarnation that has
// one, finding the index channels with Stat.
//
// Index record (little-endian, recSize bytes):
//
//	0  magic   uint32 (recMagic)
//	4  crc     uint32 (CRC-32C of bytes 8..40)
//	8  step    int64
//	16 inc     int64  incarnation that wrote the data
//	24 n       uint32 its checkpoint number in that incarnation
//	28 dcrc    uint32 CRC-32C of the data
//	32 length  uint64 data bytes
const (
	recSize  = 40
	recMagic = 0x4b435452 // "RTCK"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ckptLog is the world's checkpoint writer state (guarded by ckptMu).
type ckptLog struct {
	index ChanWriter
	n     int // checkpoints written by this incarnation
}

type ckptRecord struct {
	step   int64
	inc    int64
	n      uint32
	dcrc   uint32
	length uint64
}

func (r ckptRecord) encode() []byte {
	b := make([]byte, recSize)
	binary.LittleEndian.PutUint32(b[0:], recMagic)
	binary.LittleEndian.PutUint64(b[8:], uint64(r.step))
	binary.LittleEndian.PutUint64(b[16:], uint64(r.inc))
	binary.LittleEndian.PutUint32(b[24:], r.n)
	binary.LittleEndian.PutUint32(b[28:], r.dcrc)
	binary.LittleEndian.PutUint64(b[32:], r.length)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	return b
}

func decodeRecord(b []byte) (ckptRecord, bool) {
	if binary.LittleEndian.Uint32(b[0:]) != recMagic ||
		binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:recSize], castagnoli) {
		return ckptRecord{}, false
	}
	return ckptRecord{
		step:   int64(binary.LittleEndian.Uint64(b[8:])),
		inc:    int64(binary.LittleEndian.Uint64(b[16:])),
		n:      binary.LittleEndian.Uint32(b[24:]),
		dcrc:   binary.LittleEndian.Uint32(b[28:]),
		length: binary.LittleEndian.Uint64(b[32:]),
	}, true
}

func (w *world) ckptPrefix() string { return "_rt/ckpt/" + strconv.Itoa(w.cfg.Rank) + "/" }

func (w *world) indexName(inc int) string { return w.ckptPrefix() + "index." + strconv.Itoa(inc) }

func (w *world) dataName(inc int64, n uint32) string {
	return w.ckptPrefix() + strconv.FormatInt(inc, 10) + "." + strconv.FormatUint(uint64(n), 10)
}

// Checkpoint stores state durably in the space as this rank's checkpoint
// for step, together with the runtime's own position on every
// communicator (what it has sent and received), so that [Comm.Restore] in
// a later incarnation continues exactly here. It is a local operation (no
// other rank takes part). Call it between communication steps: it fails
// with ErrPending while receives are posted, and sends from other
// goroutines must not run concurrently. state may be reused on return.
//
// Deterministic replay is assumed: after a restore, a rank resends what
// its previous incarnation sent after this checkpoint, and the space
// drops those bytes if they match (a mismatch fails the send).
func (c *Comm) Checkpoint(ctx context.Context, step int64, state []byte) error {
	if err := c.check(ctx, "checkpoint"); err != nil {
		return err
	}
	w := c.w
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	data, marks, err := w.encodeState(step, state)
	if err != nil {
		return err
	}
	if err := w.flushWriters(ctx); err != nil {
		return rankErr(w.cfg.Rank, "checkpoint", err)
	}
	rec := ckptRecord{step: step, inc: int64(w.cfg.Incarnation), n: uint32(w.ckpt.n),
		dcrc: crc32.Checksum(data, castagnoli), length: uint64(len(data))}
	w.ckpt.n++
	if err := w.writeData(ctx, w.dataName(rec.inc, rec.n), data); err != nil {
		return rankErr(w.cfg.Rank, "checkpoint", err)
	}
	if err := w.appendIndex(ctx, rec.encode()); err != nil {
		return rankErr(w.cfg.Rank, "checkpoint", err)
	}
	w.trimCheckpointed(ctx, marks)
	w.trimOldState(ctx, rec)
	return nil
}

// trimOldState lets the space discard the state of this incarnation's
// checkpoint before the previous one, once rec is durable: a restore takes
// the latest valid checkpoint and falls back to the one before only when
// the latest is damaged, and the channels keep what those two need (see
// trimCheckpointed). A job that checkpoints a large state often would
// otherwise keep every state it ever saved. A failure only keeps bytes.
func (w *world) trimOldState(ctx context.Context, rec ckptRecord) {
	if t, ok := w.space.(spaceTrimmer); ok && rec.n >= 2 {
		t.Trim(ctx, w.dataName(rec.inc, rec.n-2), 0, math.MaxInt64)
	}
}

// encodeState snapshots every open communicator (and restored states of
// those not yet re-created) and encodes them with the user's state. It
// also returns where this rank's reading of each open communicator's
// channels stands.
func (w *world) encodeState(step int64, user []byte) ([]byte, []readMark, error) {
	w.mu.Lock() // one snapshot: a communicator is either open or pending
	open := slices.Collect(maps.Values(w.comms))
	states := slices.Collect(maps.Values(w.pending))
	named := maps.Clone(w.named)
	w.mu.Unlock()
	var marks []readMark
	for _, c := range open {
		st, err := c.snapshot()
		if err != nil {
			return nil, nil, err
		}
		states = append(states, st)
		for s, p := range st.peers {
			marks = append(marks, readMark{c.pairName(s, c.rank), p.inOff})
		}
	}
	slices.SortFunc(states, func(a, b *commState) int { return cmp.Compare(a.id, b.id) })
	return encodeCheckpoint(step, named, states, user), marks, nil
}

// readMark is where a checkpoint resumes reading a channel: the offset of
// the first frame not consumed.
type readMark struct {
	name string
	off  int64
}

// trimMark is what checkpoints let the space discard of one channel this
// rank reads: the bytes from base, where this incarnation's first
// checkpoint read it (the program's initial Splits, which a restarted
// rank replays from the start of its channels, read below), up to prev,
// where the checkpoint before the latest one resumes.
type trimMark struct {
	base, prev int64
	done       int64 // the end of the last range trimmed
}

// spaceTrimmer is a Space that can discard a channel's bytes in a range
// of offsets (comm's can; the in-process space keeps everything).
type spaceTrimmer interface {
	Trim(ctx context.Context, name string, from, to int64) (int64, error)
}

// trimCheckpointed lets the space discard, once a checkpoint is durable,
// what no restore can need of the channels this rank reads: a restarted
// rank replays its initial Splits from the start of its channels and then
// resumes at its latest valid checkpoint, so the bytes between the first
// checkpoint's reading positions and those of the checkpoint before the
// latest go (one checkpoint of slack: a restore that finds the latest one
// damaged falls back to the one before). A channel is trimmed when its
// range grew by trimEvery bytes, always from base: the space drops whole
// segments only, so the segment one trim cut goes with the next. A
// failure only keeps bytes.
// With Config.TrimConsumed the inbox trims as it consumes instead.
// ckptMu held.
func (w *world) trimCheckpointed(ctx context.Context, marks []readMark) {
	t, ok := w.space.(spaceTrimmer)
	if !ok || w.cfg.TrimConsumed {
		return
	}
	if w.trims == nil {
		w.trims = make(map[string]*trimMark)
	}
	for _, m := range marks {
		tm := w.trims[m.name]
		if tm == nil {
			w.trims[m.name] = &trimMark{base: m.off, prev: m.off, done: m.off}
			continue
		}
		to := tm.prev
		tm.prev = m.off
		if to-tm.done >= trimEvery {
			if _, err := t.Trim(ctx, m.name, tm.base, to); err == nil {
				tm.done = to
			}
		}
	}
}

// flusher is a ChanWriter whose Write may return before the bytes are
// safe from the writer's crash (queued in the process); Flush returns once
// everything written so far is.
type flusher interface {
	Flush(ctx context.Context) error
}

// flushWriters makes every byte the checkpoint's offsets count safe from
// this process's crash, for writers that need it, so that a restarted rank
// resumes its channels where the checkpoint says.
func (w *world) flushWriters(ctx context.Context) error {
	var errs []error
	for _, c := range w.openComms() {
		for i := range c.outs {
			o := &c.outs[i]
			o.mu.Lock()
			if f, ok := o.w.(flusher); ok {
				if err := f.Flush(ctx); err != nil {
					errs = append(errs, rankErr(i, "checkpoint", err))
				}
			}
			o.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (w *world) writeData(ctx context.Context, name string, data []byte) error {
	cw, err := w.space.Create(ctx, name, name, 0)
	if err != nil {
		return err
	}
	if n, err := cw.Write(data); err != nil || n != len(data) {
		return cmp.Or(err, io.ErrShortWrite)
	}
	return cw.Close(ctx)
}

// appendIndex appends a record to the index, opening it on first use at
// its current end (aligned with zero padding after a torn record).
func (w *world) appendIndex(ctx context.Context, rec []byte) error {
	if w.ckpt.index == nil {
		name := w.indexName(w.cfg.Incarnation)
		length, _, _, err := w.space.Stat(ctx, name)
		if err != nil {
			return err
		}
		iw, err := w.space.Create(ctx, name, name, length)
		if err != nil {
			return err
		}
		if pad := length % recSize; pad != 0 {
			if _, err := iw.Write(make([]byte, recSize-pad)); err != nil {
				return err
			}
		}
		w.ckpt.index = iw
	}
	if _, err := w.ckpt.index.Write(rec); err != nil {
		return err
	}
	// Checkpoint returns only when the record is durable, so a restart
	// resumes from the latest checkpoint, not an earlier one.
	if f, ok := w.ckpt.index.(flusher); ok {
		return f.Flush(ctx)
	}
	return nil
}

// closeCkpt makes the index durable; the world's Shutdown calls it.
func (w *world) closeCkpt(ctx context.Context) error {
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	if w.ckpt.index == nil {
		return nil
	}
	err := w.ckpt.index.Close(ctx)
	w.ckpt.index = nil
	return err
}

// Restore finds this rank's latest checkpoint and returns its step and
// state (ok=false, err=nil if there is none). It also moves every
// communicator back to the position recorded with it: receives continue
// at the first message not consumed then, sends continue at the recorded
// offsets (the space drops the bytes the previous incarnation already
// wrote). Communicators split after the restore point get their state when
// Split re-creates them.
//
// Call it once at start-up, after Init and after the Splits the program
// performs before its main loop (these are replayed from the space), and
// before any other communication; it fails with ErrPending while receives
// are posted.
func (c *Comm) Restore(ctx context.Context) (step int64, state []byte, ok bool, err error) {
	if err := c.check(ctx, "restore"); err != nil {
		return 0, nil, false, err
	}
	w := c.w
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	data, found, err := w.latest(ctx)
	if err != nil {
		return 0, nil, false, rankErr(w.cfg.Rank, "restore", err)
	}
	if !found {
		return 0, nil, false, nil
	}
	step, named, comms, user, err := decodeCheckpoint(data)
	if err != nil {
		return 0, nil, false, rankErr(w.cfg.Rank, "restore", err)
	}
	if err := w.apply(named, comms); err != nil {
		return 0, nil, false, err
	}
	return step, user, true, nil
}

// latest returns the data of the newest valid checkpoint.
func (w *world) latest(ctx context.Context) ([]byte, bool, error) {
	var errs []error
	for inc := w.cfg.Incarnation; inc >= 0; inc-- {
		data, found, err := w.latestIn(ctx, w.indexName(inc))
		if found {
			return data, true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return nil, false, errors.Join(errs...)
}

// latestIn returns the data of the last valid checkpoint in one index.
func (w *world) latestIn(ctx context.Context, name string) ([]byte, bool, error) {
	length, _, found, err := w.space.Stat(ctx, name)
	if err != nil || !found || length < recSize {
		return nil, false, err
	}
	index, err := readN(ctx, w.space, name, length)
	if err != nil {
		return nil, false, err
	}
	var errs []error
	for off := (length/recSize - 1) * recSize; off >= 0; off -= recSize {
		rec, ok := decodeRecord(index[off : off+recSize])
		if !ok {
			continue
		}
		data, err := readN(ctx, w.space, w.dataName(rec.inc, rec.n), int64(rec.length))
		if err == nil && crc32.Checksum(data, castagnoli) == rec.dcrc {
			return data, true, nil
		}
		errs = append(errs, fmt.Errorf("%w: step %d: %w", ErrCheckpoint, rec.step, cmp.Or(err, errors.New("checksum"))))
	}
	if len(errs) == 0 {
		return nil, false, nil
	}
	return nil, false, errors.Join(errs...)
}

// readN reads the first n bytes of a channel.
func readN(ctx context.Context, sp Space, name string, n int64) ([]byte, error) {
	r, err := sp.Attach(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, n)
	for got := 0; got < len(buf); {
		k, err := r.ReadContext(ctx, buf[got:])
		got += k
		if err != nil && got < len(buf) {
			return nil, err
		}
	}
	return buf, nil
}

// apply installs restored state: open communicators move at once, others
// when they are created.
func (w *world) apply(named map[string]int, comms []*commState) error {
	w.mu.Lock()
	w.named = named
	w.pending = map[string]*commState{}
	var open []*Comm
	var states []*commState
	for _, st := range comms {
		if c := w.comms[st.id]; c != nil && c.size == len(st.peers) {
			open, states = append(open, c), append(states, st)
		} else {
			w.pending[st.id] = st
		}
	}
	w.mu.Unlock()
	for i, c := range open {
		if err := c.applyState(states[i]); err != nil {
			return err
		}
	}
	return nil
}

// WaitForMin blocks until at least Config.Min ranks of the world (PIRUN_MIN
// under pirun) have started, polling the space for their announcements
// with a backoff from 1 ms to 100 ms. A rank counts from its first start
// on, even if it has exited since.
func (c *Comm) WaitForMin(ctx context.Context) error {
	if err := c.check(ctx, "waitformin"); err != nil {
		return err
	}
	w := c.w
	up := make([]bool, w.cfg.Size)
	count := 0
	delay := time.Millisecond
	for {
		for r := range up {
			if up[r] {
				continue
			}
			_, _, found, err := w.space.Stat(ctx, upName(r))
			if err != nil {
				return rankErr(r, "waitformin", err)
			}
			if found {
				up[r] = true
				count++
			}
		}
		if count >= w.cfg.Min {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return rankErr(c.rank, "waitformin", ctx.Err())
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}
