package cache_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

// spillMode is how a test store writes its spill files.
type spillMode struct {
	name    string
	dir     func(t *testing.T) string
	setup   func(*cache.Store)
	segSize int
	direct  bool // every spill file is expected to be written with O_DIRECT
}

func spillModes(t *testing.T) []spillMode {
	tmp := func(t *testing.T) string { return t.TempDir() }
	none := func(*cache.Store) {}
	modes := []spillMode{
		{"direct", tmp, none, 4 * seg, true},
		{"refused", tmp, cache.RefuseDirect, 4 * seg, false}, // as on a file system without O_DIRECT
		{"buffered", tmp, cache.NoDirect, 4 * seg, false},
		{"unaligned-size", tmp, none, 5000, false}, // padded length exceeds the buffer: buffered per file
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm := func(t *testing.T) string {
			d, err := os.MkdirTemp("/dev/shm", "cachetest-")
			if err != nil {
				t.Skip(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
		modes = append(modes, spillMode{"shm", shm, none, 4 * seg, false})
	}
	return modes
}

func openMode(t *testing.T, m spillMode, mem, recycle int64) *cache.Store {
	dir := m.dir(t)
	s := newStore(t, func(c *cache.Config) {
		c.Dir, c.SegmentSize, c.MemoryBytes, c.RecycleBytes = dir, m.segSize, mem, recycle
		c.DirectIO = true // modes without it turn it off through their setup
	})
	m.setup(s)
	return s
}

// TestSpillLayoutRoundTrip spills full and short sealed segments (a short
// last one in a recycled buffer holding stale bytes, and a stream shorter
// than one block) and reads them back, checking the file layout: a padded
// header block, the data at SpillAlign, zero padding to a block boundary.
func TestSpillLayoutRoundTrip(t *testing.T) {
	for _, m := range spillModes(t) {
		t.Run(m.name, func(t *testing.T) {
			size := int64(m.segSize)
			s := openMode(t, m, 8*size, 4*size)
			// Leave free buffers full of 0xAA for the streams below.
			z := cache.Key{Space: "z", Instance: 1}
			if _, err := s.Append(z, 0, bytes.Repeat([]byte{0xAA}, int(4*size))); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(z); err != nil {
				t.Fatal(err)
			}
			streams := map[cache.Key][]byte{
				{Space: "rt", Instance: 1}: pattern(21, 0, 3*size+size/2+7), // short last segment
				{Space: "rt", Instance: 2}: pattern(22, 0, 100),             // one tiny segment
				{Space: "rt", Instance: 3}: pattern(23, 0, 2*size),          // full segments only
			}
			for k, src := range streams {
				if _, err := s.Append(k, 0, src); err != nil {
					t.Fatal(err)
				}
				if err := s.Seal(k, int64(len(src))); err != nil {
					t.Fatal(err)
				}
			}
			// Push every segment of those streams out of memory.
			f := cache.Key{Space: "filler", Instance: 1}
			if _, err := s.Append(f, 0, pattern(24, 0, 16*size)); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if m.direct {
				if d := cache.DirectSpills(s); d != st.Spills || !cache.SpillsDirect(s) {
					t.Errorf("%d of %d spills written with O_DIRECT, direct %v; want all", d, st.Spills, cache.SpillsDirect(s))
				}
			}
			switch d := cache.DirectSpills(s); m.name {
			case "refused", "buffered":
				if d != 0 {
					t.Errorf("%d spills written with O_DIRECT, want 0", d)
				}
			case "unaligned-size": // only the tiny stream's 4 KiB buffer can go direct
				if d >= st.Spills {
					t.Errorf("%d of %d spills written with O_DIRECT, want fewer", d, st.Spills)
				}
			}
			if m.name == "refused" && cache.SpillsDirect(s) {
				t.Error("store still tries O_DIRECT after EINVAL")
			}
			if m.name == "unaligned-size" && !cache.SpillsDirect(s) {
				t.Error("an unaligned buffer turned O_DIRECT off for the store")
			}
			for k, src := range streams {
				for i := 0; int64(i)*size < int64(len(src)); i++ {
					if cache.InMemory(s, k, i) {
						t.Fatalf("%v segment %d still in memory", k, i)
					}
					want := src[int64(i)*size : min(int64(i+1)*size, int64(len(src)))]
					checkSpillFile(t, cache.SpillPath(s, k, i), want)
				}
				mustEqual(t, k.String(), readAll(t, s, k, int(size)+3), src)
				data, _, release, err := s.Segment(k, (len(src)-1)/int(size))
				if err != nil {
					t.Fatalf("Segment: %v", err)
				}
				mustEqual(t, "last segment", data, src[(len(src)-1)/int(size)*int(size):])
				release()
			}
		})
	}
}

// checkSpillFile checks the layout of a spill file holding data.
func checkSpillFile(t *testing.T, path string, data []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const a = cache.SpillAlign
	padded := (len(data) + a - 1) / a * a
	if len(b) != a+padded {
		t.Fatalf("%s: %d bytes, want %d", path, len(b), a+padded)
	}
	if string(b[:4]) != "PSEG" || binary.LittleEndian.Uint32(b[4:]) != 2 ||
		binary.LittleEndian.Uint32(b[32:]) != uint32(len(data)) {
		t.Fatalf("%s: header %x", path, b[:48])
	}
	if i := bytes.IndexFunc(b[a:][len(data):], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("%s: padding byte %d after the data is not zero", path, i)
	}
	mustEqual(t, path, b[a:a+len(data)], data)
}

// TestSpillLayoutCorrupt damages the file of a short, sealed, spilled
// segment in every region of the layout.
func TestSpillLayoutCorrupt(t *testing.T) {
	const a = cache.SpillAlign
	const size = 4 * seg
	const n = size + 1000 // segment 1 holds 1000 bytes
	damage := map[string]func([]byte) []byte{
		"data first byte":  func(b []byte) []byte { b[a] ^= 1; return b },
		"data last byte":   func(b []byte) []byte { b[a+999] ^= 0x80; return b },
		"magic":            func(b []byte) []byte { b[0] ^= 1; return b },
		"old version":      func(b []byte) []byte { b[4] = 1; return b },
		"size field":       func(b []byte) []byte { b[32]++; return b },
		"header padding":   func(b []byte) []byte { b[a-1] = 1; return b },
		"padding dropped":  func(b []byte) []byte { return b[:a+1000] },
		"truncated header": func(b []byte) []byte { return b[:a/2] },
		"extra block":      func(b []byte) []byte { return append(b, make([]byte, a)...) },
		"no header block":  func(b []byte) []byte { return b[a:] },
	}
	for _, mode := range []string{"direct", "refused"} {
		for name, fn := range damage {
			t.Run(mode+"/"+name, func(t *testing.T) {
				s := newStore(t, func(c *cache.Config) { c.SegmentSize, c.DirectIO = size, true }, spilling(t, 2*size))
				if mode == "refused" {
					cache.RefuseDirect(s)
				}
				k := cache.Key{Space: "c", Instance: 1}
				src := pattern(31, 0, n)
				if _, err := s.Append(k, 0, src); err != nil {
					t.Fatal(err)
				}
				if err := s.Seal(k, n); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Append(cache.Key{Space: "c", Instance: 2}, 0, pattern(32, 0, 4*size)); err != nil {
					t.Fatal(err)
				}
				if cache.InMemory(s, k, 1) {
					t.Fatal("segment 1 still in memory")
				}
				path := cache.SpillPath(s, k, 1)
				if err := rewrite(path, fn); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, n)
				if got, err := s.ReadAt(k, buf, 0); !errors.Is(err, cache.ErrCorrupt) || got != size {
					t.Fatalf("ReadAt = %d, %v; want %d, ErrCorrupt", got, err, size)
				}
				if _, _, _, err := s.Segment(k, 1); !errors.Is(err, cache.ErrCorrupt) {
					t.Errorf("Segment: %v, want ErrCorrupt", err)
				}
			})
		}
	}
}

// TestSpillReuseFiles deletes a spilled stream and spills another: the new
// spills overwrite the old files (a full segment's file cut down to a
// short segment's) rather than create new ones.
func TestSpillReuseFiles(t *testing.T) {
	for _, m := range spillModes(t)[:3] { // direct, refused, buffered
		t.Run(m.name, func(t *testing.T) {
			size := int64(m.segSize)
			s := openMode(t, m, 2*size, -1)
			old := cache.Key{Space: "old", Instance: 1}
			if _, err := s.Append(old, 0, pattern(41, 0, 8*size)); err != nil {
				t.Fatal(err)
			}
			spilled := int(s.Stats().Spills)
			if err := s.Delete(old); err != nil {
				t.Fatal(err)
			}
			if n := cache.FreeFiles(s); n != spilled {
				t.Fatalf("%d free files after deleting %d spilled segments", n, spilled)
			}
			k := cache.Key{Space: "new", Instance: 1}
			src := pattern(42, 0, 2*size+100)
			if _, err := s.Append(k, 0, src); err != nil {
				t.Fatal(err)
			}
			if err := s.Seal(k, int64(len(src))); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Append(cache.Key{Space: "new", Instance: 2}, 0, pattern(43, 0, 4*size)); err != nil {
				t.Fatal(err)
			}
			files, _ := os.ReadDir(s.SpillDir())
			if st := s.Stats(); len(files) != spilled || cache.FreeFiles(s) != spilled-int(st.Spills)+spilled {
				t.Errorf("%d files, %d free, %d spills in all; want the %d files of the old stream reused",
					len(files), cache.FreeFiles(s), st.Spills, spilled)
			}
			for i := 0; i < 3; i++ {
				if cache.InMemory(s, k, i) {
					t.Fatalf("segment %d still in memory", i)
				}
				checkSpillFile(t, cache.SpillPath(s, k, i), src[int64(i)*size:min(int64(i+1)*size, int64(len(src)))])
			}
			mustEqual(t, "stream on reused files", readAll(t, s, k, int(size)), src)
		})
	}
}

// TestSpillLongSpace spills a segment of a space whose name does not fit
// in one header block: the header takes two blocks and the data follows.
func TestSpillLongSpace(t *testing.T) {
	const a = cache.SpillAlign
	s := newStore(t, spilling(t, 2*seg))
	k := cache.Key{Space: string(bytes.Repeat([]byte("long/"), 1000)), Instance: 1}
	src := pattern(51, 0, 6*seg)
	if _, err := s.Append(k, 0, src); err != nil {
		t.Fatal(err)
	}
	if cache.InMemory(s, k, 0) {
		t.Fatal("segment 0 still in memory")
	}
	b, err := os.ReadFile(cache.SpillPath(s, k, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2*a+seg || string(b[44:49]) != "long/" {
		t.Fatalf("spill file of %d bytes, header %q; want %d bytes", len(b), b[:49], 2*a+seg)
	}
	mustEqual(t, "data after two header blocks", b[2*a:], src[:seg])
	mustEqual(t, "read back", readAll(t, s, k, 3*seg), src)
}

// TestSpillBufferedByDefault: without Config.DirectIO every spill file is
// written through the page cache.
func TestSpillBufferedByDefault(t *testing.T) {
	s := newStore(t, spilling(t, 2*seg))
	k := cache.Key{Space: "sp", Instance: 1}
	if _, err := s.Append(k, 0, pattern(1, 0, 8*seg)); err != nil {
		t.Fatal(err)
	}
	if cache.SpillsDirect(s) {
		t.Fatal("a store without DirectIO would write with O_DIRECT")
	}
	if st := s.Stats(); st.Spills == 0 {
		t.Fatal("nothing spilled")
	}
}
