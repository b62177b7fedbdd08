package cache

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Spill file layout, all integers little-endian:
//
//	magic "PSEG" | version u32 | instance u64 | generation u64 | index u64 |
//	size u32 | crc32c u32 | len(space) u32 | space | size bytes of data
//
// Every header field is compared with what the store expects on read-back
// and the data's CRC-32C is recomputed, so a damaged or misplaced file is
// ErrCorrupt, never wrong data.
const (
	spillMagic   = "PSEG"
	spillVersion = 1
	spillFixed   = 4 + 4 + 8 + 8 + 8 + 4 + 4 + 4
)

// spillPath names seg's file: a readable token of the space, a hash of it,
// the instance, the stream generation (so a deleted and re-created key
// never shares a name with the old one) and the segment index.
func (s *Store) spillPath(seg *segment) string {
	k := seg.st.key
	name := spaceToken(k.Space) + "-" + strconv.FormatUint(k.Instance, 16) +
		"-" + strconv.FormatUint(seg.st.gen, 16) + "-" + strconv.Itoa(seg.index) + ".seg"
	return filepath.Join(s.runDir, name)
}

// spaceToken is a file-name-safe form of space: up to 32 of its characters
// with anything outside [A-Za-z0-9._] replaced by '_', then a 64-bit FNV-1a
// hash of the whole name.
func spaceToken(space string) string {
	var b []byte
	for i := 0; i < len(space) && len(b) < 32; i++ {
		c := space[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_'
		if !ok {
			c = '_'
		}
		b = append(b, c)
	}
	h := fnv.New64a()
	h.Write([]byte(space))
	return string(b) + "_" + strconv.FormatUint(h.Sum64(), 16)
}

func spillHeader(seg *segment) []byte {
	k := seg.st.key
	h := make([]byte, 0, spillFixed+len(k.Space))
	h = append(h, spillMagic...)
	h = binary.LittleEndian.AppendUint32(h, spillVersion)
	h = binary.LittleEndian.AppendUint64(h, k.Instance)
	h = binary.LittleEndian.AppendUint64(h, seg.st.gen)
	h = binary.LittleEndian.AppendUint64(h, uint64(seg.index))
	h = binary.LittleEndian.AppendUint32(h, uint32(seg.size))
	h = binary.LittleEndian.AppendUint32(h, seg.crc)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(k.Space)))
	return append(h, k.Space...)
}

// writeSpill writes data, the bytes of seg, to path. A failed write leaves
// no file behind.
func writeSpill(path string, seg *segment, data []byte) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if _, err = f.Write(spillHeader(seg)); err != nil {
		return err
	}
	_, err = f.Write(data)
	return err
}

// readSpill reads seg's bytes back from path into dst (a free buffer of
// at least seg.size bytes, or nil to allocate one of seg.size) and checks
// them. It returns the whole buffer (len == cap), or dst on error.
func readSpill(path string, seg *segment, dst []byte) ([]byte, error) {
	b, err := readSpillFile(path, seg, dst)
	if err != nil {
		return dst, fmt.Errorf("%w: segment %d of %v: %w", ErrCorrupt, seg.index, seg.st.key, err)
	}
	if got := Checksum(b[:seg.size]); got != seg.crc {
		return dst, fmt.Errorf("%w: segment %d of %v: crc32c %08x, want %08x",
			ErrCorrupt, seg.index, seg.st.key, got, seg.crc)
	}
	return b, nil
}

// readSpillFile reads and compares the header of path, then reads the data
// into dst (or a new buffer).
func readSpillFile(path string, seg *segment, dst []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := spillHeader(seg)
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() != int64(len(want)+seg.size) {
		return nil, errors.New("bad header or size")
	}
	hdr := make([]byte, len(want))
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr, want) {
		return nil, errors.New("bad header or size")
	}
	if dst == nil {
		dst = make([]byte, seg.size)
	}
	dst = dst[:cap(dst)]
	if _, err := io.ReadFull(f, dst[:seg.size]); err != nil {
		return nil, err
	}
	if n, _ := f.Read(hdr[:1]); n != 0 { // grew since Stat
		return nil, errors.New("bad header or size")
	}
	return dst, nil
}

type victim struct {
	seg *segment
	use int64
}

// maybeSpill evicts immutable segments, least recently used first, once the
// bytes in memory exceed Config.MemoryBytes, down to 7/8 of it so that
// spills come in batches. Open tails are never evicted, so memory can stay
// above the bound when they alone exceed it. Only one goroutine spills at a
// time; the others wait for it, which slows writers down to the disk's pace.
func (s *Store) maybeSpill() error {
	if s.runDir == "" || s.memBytes.Load() <= s.cfg.MemoryBytes {
		return nil
	}
	s.spillMu.Lock()
	defer s.spillMu.Unlock()
	if s.memBytes.Load() <= s.cfg.MemoryBytes {
		return nil
	}
	target := s.cfg.MemoryBytes - s.cfg.MemoryBytes/8
	for _, v := range s.lruOrder() {
		if s.memBytes.Load() <= target {
			break
		}
		if err := s.evict(v.seg); err != nil {
			return err
		}
	}
	clear(s.victims) // let evicted segments be collected
	return nil
}

// lruOrder returns the resident segments, least recently used first. The
// slice is s.victims, reused across calls; s.spillMu must be held.
func (s *Store) lruOrder() []victim {
	v := s.victims[:0]
	s.lruMu.Lock()
	for seg := range s.resident {
		v = append(v, victim{seg, seg.lastUse.Load()})
	}
	s.lruMu.Unlock()
	slices.SortFunc(v, func(a, b victim) int { return cmp.Compare(a.use, b.use) })
	s.victims = v
	return v
}
