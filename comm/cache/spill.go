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
	"syscall"
	"unsafe"
)

// Spill file layout, all integers little-endian:
//
//	header: magic "PSEG" | version u32 | instance u64 | generation u64 |
//	        index u64 | size u32 | crc32c u32 | len(space) u32 | space,
//	        zero-padded to a multiple of spillAlign (one 4096-byte block
//	        unless the space name is longer than 4052 bytes)
//	data:   size bytes, zero-padded to a multiple of spillAlign
//
// The data starts at the end of the header's blocks, so that header and
// data can each be written with O_DIRECT (see writeSpill), and the file is
// the same whichever way it was written. On read-back the whole header
// block and the file's size are compared with what the store expects and
// the data's CRC-32C is recomputed, so a damaged or misplaced file is
// ErrCorrupt, never wrong data.
const (
	spillMagic   = "PSEG"
	spillVersion = 2
	spillFixed   = 4 + 4 + 8 + 8 + 8 + 4 + 4 + 4
	// spillAlign is the alignment O_DIRECT needs of the buffer address,
	// the file offset and the length: the logical block size of the
	// devices we expect (512 or 4096).
	spillAlign = 4096
)

// alignUp rounds n up to a multiple of spillAlign.
func alignUp(n int) int { return (n + spillAlign - 1) &^ (spillAlign - 1) }

// aligned reports whether b starts at a multiple of spillAlign.
func aligned(b []byte) bool {
	return cap(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))%spillAlign == 0
}

// alignedBlock returns n zero bytes starting at a multiple of spillAlign.
func alignedBlock(n int) []byte {
	b := make([]byte, n+spillAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(unsafe.SliceData(b))) % spillAlign); r != 0 {
		off = spillAlign - r
	}
	return b[off : off+n : off+n]
}

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

// spillHeader writes seg's header block into dst if it is big enough, or
// a new buffer, and returns it: the header fields zero-padded to a
// multiple of spillAlign.
func spillHeader(seg *segment, dst []byte) []byte {
	k := seg.st.key
	n := alignUp(spillFixed + len(k.Space))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	h := dst[:0]
	h = append(h, spillMagic...)
	h = binary.LittleEndian.AppendUint32(h, spillVersion)
	h = binary.LittleEndian.AppendUint64(h, k.Instance)
	h = binary.LittleEndian.AppendUint64(h, seg.st.gen)
	h = binary.LittleEndian.AppendUint64(h, uint64(seg.index))
	h = binary.LittleEndian.AppendUint32(h, uint32(seg.size))
	h = binary.LittleEndian.AppendUint32(h, seg.storedCRC())
	h = binary.LittleEndian.AppendUint32(h, uint32(len(k.Space)))
	h = append(h, k.Space...)
	clear(h[len(h):n])
	return h[:n]
}

// writeSpill writes seg's bytes, the first seg.size of buf, the whole
// buffer holding them, to path, and reports whether it wrote them with
// O_DIRECT. A failed write leaves no file behind. s.spillMu must be held
// (for the header scratch block), and seg.mu, which makes the padding
// buf[seg.size:] the caller's to clear: no reader looks there.
//
// O_DIRECT writes bypass the page cache: no copy, no page-cache pages to
// fault in and reclaim. They are used when the buffer is aligned and can
// be written padded from itself; the store falls back to buffered writes
// for good once opening a file with O_DIRECT fails with EINVAL, or a
// direct write does (the file system does not support it, or needs a
// larger alignment).
//
// The file is a free one renamed to path when there is one (see
// retireFile), overwritten in place and cut to its new length.
func (s *Store) writeSpill(path string, seg *segment, buf []byte) (direct bool, err error) {
	seg.checksum(buf) // the header carries it
	n := alignUp(seg.size)
	if n <= len(buf) {
		clear(buf[seg.size:n]) // the padding: no stale bytes on disk
	}
	w := spillWrite{path: path, reused: s.reuseFile(path)}
	if !s.noDirect.Load() && n <= len(buf) && aligned(buf) {
		if s.spillHdr == nil {
			s.spillHdr = alignedBlock(spillAlign)
		}
		hdr := spillHeader(seg, s.spillHdr)
		if !aligned(hdr) { // a long space name outgrew the scratch block
			hdr = spillHeader(seg, alignedBlock(len(hdr)))
		}
		w.direct = true
		err := w.write(s.openDirect, hdr, buf[:n], nil)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, errNoDirect) && !errors.Is(err, syscall.EINVAL) {
			return false, err
		}
		s.noDirect.Store(true)
		w.reused, w.direct = false, false // the failed write removed the file
	}
	data, pad := buf[:seg.size], []byte(nil)
	if n <= len(buf) {
		data = buf[:n]
	} else {
		pad = make([]byte, n-seg.size)
	}
	return false, w.write(openBuffered, spillHeader(seg, nil), data, pad)
}

// spillWrite is the file writeSpill writes: path, whether it is a reused
// free file (opened without O_TRUNC, cut to length after writing), and
// whether it is written with O_DIRECT.
type spillWrite struct {
	path   string
	reused bool
	direct bool
}

// write creates or opens w.path with open and writes hdr, data and pad to
// it. It removes the file on failure.
func (w spillWrite) write(open func(path string, flag int) (*os.File, error), hdr, data, pad []byte) (err error) {
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if w.reused {
		flag &^= os.O_TRUNC // overwrite the allocated blocks in place
	}
	f, err := open(w.path, flag)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(w.path)
		}
	}()
	if w.direct {
		err = writeAll(f, [][]byte{hdr, data, pad}) // one device request
	} else {
		err = writeEach(f, [][]byte{hdr, data, pad}) // the page cache copies a single buffer faster
	}
	if err != nil {
		return err
	}
	if w.reused {
		err = f.Truncate(int64(len(hdr) + len(data) + len(pad)))
	}
	return err
}

// writeEach writes bufs to f in order, one write call each.
func writeEach(f *os.File, bufs [][]byte) error {
	for _, b := range bufs {
		if _, err := f.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func openBuffered(path string, flag int) (*os.File, error) {
	return os.OpenFile(path, flag, 0o600)
}

// maxFreeFileBytes bounds the spill files kept for reuse (see retireFile).
const maxFreeFileBytes = 512 << 20

// retireFile takes the spill file at path out of use: it keeps it, renamed,
// for a later spill to overwrite while the free files fit in
// maxFreeFileBytes (at least one is kept), and removes it otherwise.
// Creating a file costs a file system more CPU than renaming one: ext4
// without a journal, for one, scans its inode table past every inode
// freed in the last seconds on each create, which made a store that
// deletes and spills at the same time spend half its CPU in file creation.
func (s *Store) retireFile(path string) error {
	s.fileMu.Lock()
	keep := int64(len(s.freeFiles)+1)*int64(s.cfg.SegmentSize) <= maxFreeFileBytes || len(s.freeFiles) == 0
	s.fileSeq++
	name := filepath.Join(s.runDir, "free-"+strconv.FormatUint(s.fileSeq, 16))
	s.fileMu.Unlock()
	if keep {
		if os.Rename(path, name) == nil {
			s.fileMu.Lock()
			s.freeFiles = append(s.freeFiles, name)
			s.fileMu.Unlock()
			return nil
		}
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// reuseFile renames a free spill file, if there is one, to path and
// reports whether it did.
func (s *Store) reuseFile(path string) bool {
	s.fileMu.Lock()
	n := len(s.freeFiles)
	if n == 0 {
		s.fileMu.Unlock()
		return false
	}
	name := s.freeFiles[n-1]
	s.freeFiles = s.freeFiles[:n-1]
	s.fileMu.Unlock()
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return false
	}
	return true
}

// readSpill reads seg's bytes back from path into dst (a free buffer of
// at least seg.size bytes, or nil to allocate one of seg.size) and checks
// them. It returns the whole buffer (len == cap), or dst on error.
func readSpill(path string, seg *segment, dst []byte) ([]byte, error) {
	b, err := readSpillFile(path, seg, dst)
	if err != nil {
		return dst, fmt.Errorf("%w: segment %d of %v: %w", ErrCorrupt, seg.index, seg.st.key, err)
	}
	if got, want := Checksum(b[:seg.size]), seg.storedCRC(); got != want {
		return dst, fmt.Errorf("%w: segment %d of %v: crc32c %08x, want %08x",
			ErrCorrupt, seg.index, seg.st.key, got, want)
	}
	return b, nil
}

// readSpillFile compares the size and the header block of path with what
// seg's file must hold, then reads the data (not the padding) into dst (or
// a new buffer). Reads go through the page cache.
func readSpillFile(path string, seg *segment, dst []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := spillHeader(seg, nil)
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	end := int64(len(want) + alignUp(seg.size))
	if fi.Size() != end {
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
	if n, _ := f.ReadAt(hdr[:1], end); n != 0 { // grew since Stat
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
