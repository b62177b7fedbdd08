package rt

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
)

// Frame layout on a pair channel (little-endian), followed by length bytes
// of payload:
//
//	0  version  uint8  (frameVersion)
//	1  elem     uint8  (element type code)
//	2  op       uint8  (0 point-to-point, else the collective)
//	3  flags    uint8  (0)
//	4  tag      int32
//	8  seq      uint64 (per channel, from 0, +1 per frame)
//	16 length   uint64 (payload bytes)
const (
	hdrSize      = 24
	frameVersion = 1
)

type header struct {
	code elemCode
	op   opCode
	tag  int32
	seq  uint64
	n    int64 // payload bytes
}

func putHeader(b []byte, h header) {
	b[0] = frameVersion
	b[1] = byte(h.code)
	b[2] = byte(h.op)
	b[3] = 0
	binary.LittleEndian.PutUint32(b[4:], uint32(h.tag))
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.n))
}

// parseHeader decodes and validates a header; max bounds the payload.
func parseHeader(b []byte, max int64) (header, error) {
	h := header{
		code: elemCode(b[1]),
		op:   opCode(b[2]),
		tag:  int32(binary.LittleEndian.Uint32(b[4:])),
		seq:  binary.LittleEndian.Uint64(b[8:]),
	}
	n := binary.LittleEndian.Uint64(b[16:])
	switch {
	case b[0] != frameVersion:
		return h, fmt.Errorf("%w: version %d", ErrCorrupt, b[0])
	case b[3] != 0:
		return h, fmt.Errorf("%w: flags %#x", ErrCorrupt, b[3])
	case h.code >= codeLimit:
		return h, fmt.Errorf("%w: element code %d", ErrCorrupt, b[1])
	case h.op >= opLimit:
		return h, fmt.Errorf("%w: op %d", ErrCorrupt, b[2])
	case n > uint64(max):
		return h, fmt.Errorf("%w: length %d over limit %d", ErrCorrupt, n, max)
	case n%uint64(h.code.size()) != 0:
		return h, fmt.Errorf("%w: length %d not a multiple of %s", ErrCorrupt, n, h.code)
	}
	h.n = int64(n)
	return h, nil
}

// frameReader splits a channel's byte stream into frames. Small payloads
// are returned as views of its buffer (valid until the next call); larger
// ones in a scratch slice the caller may keep (see owned), or straight in
// a receive buffer the caller names. Reading is resumable: when a read
// fails (a cancelled context), the partly read frame stays current and the
// next call continues it, so whichever goroutine reads next loses nothing.
type frameReader struct {
	r      ChanReader
	buf    []byte
	rp, wp int   // unread bytes are buf[rp:wp]
	off    int64 // channel offset of buf[rp] (of the next unread byte)
	max    int64

	// The current frame, once its header is read.
	inFrame bool
	h       header
	start   int64  // channel offset of the frame
	part    []byte // large payload being assembled (scratch or a receive buffer)
	got     int    // bytes of part filled

	scratch []byte
}

const readBufSize = 64 << 10

func newFrameReader(r ChanReader, off, max int64) *frameReader {
	return &frameReader{r: r, buf: make([]byte, readBufSize), off: off, max: max}
}

// fill ensures at least need (<= len(buf)) unread bytes are buffered.
func (f *frameReader) fill(ctx context.Context, need int) error {
	if f.wp-f.rp >= need {
		return nil
	}
	if f.rp+need > len(f.buf) {
		f.wp = copy(f.buf, f.buf[f.rp:f.wp])
		f.rp = 0
	}
	for f.wp-f.rp < need {
		n, err := f.r.ReadContext(ctx, f.buf[f.wp:])
		f.wp += n
		if err != nil {
			if err == io.EOF && (f.wp-f.rp > 0 || f.inFrame) {
				return fmt.Errorf("%w: stream ends inside a frame", ErrCorrupt)
			}
			return err
		}
	}
	return nil
}

// header reads the current frame's header (again, if already read) and
// returns it with the frame's start offset.
func (f *frameReader) header(ctx context.Context) (header, int64, error) {
	if f.inFrame {
		return f.h, f.start, nil
	}
	start := f.off
	if err := f.fill(ctx, hdrSize); err != nil {
		return header{}, start, err
	}
	h, err := parseHeader(f.buf[f.rp:f.rp+hdrSize], f.max)
	if err != nil {
		return h, start, err
	}
	f.consume(hdrSize)
	f.inFrame, f.h, f.start, f.part, f.got = true, h, start, nil, 0
	return h, start, nil
}

// payload reads the current frame's payload, which ends the frame. With
// dst nil it returns a view of the buffer or the scratch slice; else dst
// (of exactly the payload's length) receives it.
func (f *frameReader) payload(ctx context.Context, dst []byte) ([]byte, error) {
	n := int(f.h.n)
	if f.part == nil && (n == 0 || dst == nil && n <= len(f.buf)) {
		if err := f.fill(ctx, n); err != nil {
			return nil, err
		}
		p := f.buf[f.rp : f.rp+n]
		f.consume(n)
		f.inFrame = false
		return p, nil
	}
	target := dst
	if target == nil {
		if cap(f.scratch) < n {
			f.scratch = make([]byte, n)
		}
		target = f.scratch[:n]
	}
	switch {
	case f.part == nil:
		f.part, f.got = target, 0
	case &f.part[0] != &target[0]:
		copy(target, f.part[:f.got])
		f.part = target
	}
	k := copy(f.part[f.got:], f.buf[f.rp:f.wp])
	f.consume(k)
	f.got += k
	for f.got < n {
		k, err := f.r.ReadContext(ctx, f.part[f.got:])
		f.got += k
		f.off += int64(k)
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: stream ends inside a frame", ErrCorrupt)
			}
			return nil, err
		}
	}
	p := f.part
	f.part, f.inFrame = nil, false
	return p, nil
}

// abandon moves a payload partly read into a receive buffer to the scratch
// slice, so that the buffer can go back to its owner and the frame can be
// finished later.
func (f *frameReader) abandon() {
	if f.part == nil || len(f.scratch) > 0 && &f.part[0] == &f.scratch[0] {
		return
	}
	n := len(f.part)
	if cap(f.scratch) < n {
		f.scratch = make([]byte, n)
	}
	f.scratch = f.scratch[:n]
	copy(f.scratch, f.part[:f.got])
	f.part = f.scratch
}

func (f *frameReader) consume(n int) {
	f.rp += n
	f.off += int64(n)
}

// owned returns a copy of payload p that outlives the next read,
// taking over the scratch slice when p is it.
func (f *frameReader) owned(p []byte) []byte {
	if len(p) > 0 && len(f.scratch) > 0 && &p[0] == &f.scratch[0] {
		f.scratch = nil
		return p
	}
	return append([]byte(nil), p...)
}
