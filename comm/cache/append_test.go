package cache_test

import (
	"errors"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

// op is one step of an append table test: an Append at off, or a Seal at
// off when seal is set.
type op struct {
	off     int64
	p       []byte
	seal    bool
	wantLen int64
	wantErr error
}

func TestAppendIdempotency(t *testing.T) {
	src := pattern(1, 0, 3*seg+100)
	total := int64(len(src))
	tests := []struct {
		name string
		ops  []op
		want []byte // stream content at the end
	}{
		{"append from empty", []op{{0, src[:10], false, 10, nil}}, src[:10]},
		{"empty append creates", []op{{0, nil, false, 0, nil}}, nil},
		{"empty append at end", []op{{0, src[:10], false, 10, nil}, {10, nil, false, 10, nil}}, src[:10]},
		{"identical replay", []op{{0, src[:10], false, 10, nil}, {0, src[:10], false, 10, nil}}, src[:10]},
		{"replay prefix", []op{{0, src[:10], false, 10, nil}, {0, src[:5], false, 10, nil}}, src[:10]},
		{"replay middle", []op{{0, src[:10], false, 10, nil}, {3, src[3:7], false, 10, nil}}, src[:10]},
		{"partial overlap extending", []op{{0, src[:10], false, 10, nil}, {5, src[5:20], false, 20, nil}}, src[:20]},
		{"divergent", []op{{0, src[:10], false, 10, nil}, {2, flip(src[2:8], 3), false, 10, cache.ErrDiverged}}, src[:10]},
		{"divergent overlap writes no extension", []op{
			{0, src[:10], false, 10, nil}, {5, flip(src[5:20], 0), false, 10, cache.ErrDiverged}}, src[:10]},
		{"gap", []op{{0, src[:10], false, 10, nil}, {11, src[11:20], false, 10, cache.ErrGap}}, src[:10]},
		{"gap on empty stream", []op{{0, nil, false, 0, nil}, {1, src[1:2], false, 0, cache.ErrGap}}, nil},
		{"negative offset", []op{{0, src[:10], false, 10, nil}, {-1, src[:1], false, 0, cache.ErrOffset}}, src[:10]},
		{"one append over three boundaries", []op{{0, src, false, total, nil}}, src},
		{"append across a boundary", []op{{0, src[:4000], false, 4000, nil}, {4000, src[4000:9000], false, 9000, nil}}, src[:9000]},
		{"append ends on a boundary", []op{{0, src[:seg-1], false, seg - 1, nil}, {seg - 1, src[seg-1 : 2*seg], false, 2 * seg, nil}}, src[:2*seg]},
		{"replay across two boundaries", []op{{0, src, false, total, nil}, {100, src[100:], false, total, nil}}, src},
		{"overlap across a boundary extending", []op{{0, src[:5000], false, 5000, nil}, {4000, src[4000:10000], false, 10000, nil}}, src[:10000]},
		{"overlap from a boundary extending", []op{{0, src[:5000], false, 5000, nil}, {seg, src[seg:10000], false, 10000, nil}}, src[:10000]},
		{"divergent in a later segment", []op{{0, src[:10000], false, 10000, nil}, {3000, flip(src[3000:9000], 5000), false, 10000, cache.ErrDiverged}}, src[:10000]},
		{"divergent in the extension segment", []op{{0, src[:5000], false, 5000, nil}, {100, flip(src[100:9000], 4899), false, 5000, cache.ErrDiverged}}, src[:5000]},
		{"sealed identical replay", []op{{0, src[:5000], false, 5000, nil}, {5000, nil, true, 5000, nil}, {1000, src[1000:5000], false, 5000, nil}}, src[:5000]},
		{"sealed extend", []op{{0, src[:5000], false, 5000, nil}, {5000, nil, true, 5000, nil}, {1000, src[1000:6000], false, 5000, cache.ErrSealed}}, src[:5000]},
		{"sealed append at end", []op{{0, src[:5000], false, 5000, nil}, {5000, nil, true, 5000, nil}, {5000, src[5000:5001], false, 5000, cache.ErrSealed}}, src[:5000]},
		{"sealed divergent", []op{{0, src[:5000], false, 5000, nil}, {5000, nil, true, 5000, nil}, {0, flip(src[:5000], 4500), false, 5000, cache.ErrDiverged}}, src[:5000]},
		{"sealed gap", []op{{0, src[:5000], false, 5000, nil}, {5000, nil, true, 5000, nil}, {5001, src[5001:5002], false, 5000, cache.ErrGap}}, src[:5000]},
	}
	for _, mode := range memoryAndSpill(t) {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				s := newStore(t, mode.mutate)
				k := cache.Key{Space: "s", Instance: 1}
				for i, o := range tt.ops {
					var n int64
					var err error
					if o.seal {
						err = s.Seal(k, o.off)
						n, _, _ = s.Stat(k)
					} else {
						n, err = s.Append(k, o.off, o.p)
					}
					if !errors.Is(err, o.wantErr) || (o.wantErr == nil && err != nil) {
						t.Fatalf("op %d: err %v, want %v", i, err, o.wantErr)
					}
					if n != o.wantLen {
						t.Fatalf("op %d: length %d, want %d", i, n, o.wantLen)
					}
				}
				mustEqual(t, "content", readAll(t, s, k, 3000), tt.want)
			})
		}
	}
}

func TestAppendUnknownStreamGap(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "s", Instance: 9}
	if _, err := s.Append(k, 5, []byte("x")); !errors.Is(err, cache.ErrGap) {
		t.Fatalf("Append at 5 of unknown stream: %v, want ErrGap", err)
	}
	if _, _, err := s.Stat(k); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a failed Append created the stream: Stat %v", err)
	}
}

func TestSealRules(t *testing.T) {
	s := newStore(t)
	k := cache.Key{Space: "s", Instance: 1}
	src := pattern(2, 0, seg+10)
	if _, err := s.Append(k, 0, src); err != nil {
		t.Fatal(err)
	}
	for _, l := range []int64{0, seg + 9, seg + 11, -1} {
		if err := s.Seal(k, l); !errors.Is(err, cache.ErrLength) {
			t.Errorf("Seal at %d of a %d-byte stream: %v, want ErrLength", l, len(src), err)
		}
	}
	if _, sealed, _ := s.Stat(k); sealed {
		t.Fatal("a rejected Seal sealed the stream")
	}
	for range 2 { // idempotent
		if err := s.Seal(k, seg+10); err != nil {
			t.Fatalf("Seal: %v", err)
		}
	}
	if err := s.Seal(k, seg+11); !errors.Is(err, cache.ErrLength) {
		t.Errorf("Seal at another length after Seal: %v, want ErrLength", err)
	}
	if n, sealed, err := s.Stat(k); n != seg+10 || !sealed || err != nil {
		t.Errorf("Stat = %d, %v, %v", n, sealed, err)
	}

	empty := cache.Key{Space: "s", Instance: 2}
	if err := s.Seal(empty, 0); err != nil {
		t.Fatalf("Seal of an unknown stream at 0: %v", err)
	}
	if n, sealed, err := s.Stat(empty); n != 0 || !sealed || err != nil {
		t.Errorf("Stat of an empty sealed stream = %d, %v, %v", n, sealed, err)
	}
	if err := s.Seal(cache.Key{Space: "s", Instance: 3}, 4); !errors.Is(err, cache.ErrLength) {
		t.Errorf("Seal of an unknown stream at 4: %v, want ErrLength", err)
	}
}

func TestMemoryOnlyFull(t *testing.T) {
	s := newStore(t, func(c *cache.Config) { c.MemoryBytes = 4 * seg })
	k := cache.Key{Space: "s", Instance: 1}
	src := pattern(3, 0, 6*seg)
	n, err := s.Append(k, 0, src)
	if !errors.Is(err, cache.ErrFull) || n != 4*seg {
		t.Fatalf("Append past the cap = %d, %v; want %d, ErrFull", n, err, 4*seg)
	}
	if m := s.Stats().MemoryBytes; m != 4*seg {
		t.Errorf("MemoryBytes = %d, want %d", m, 4*seg)
	}
	mustEqual(t, "stored prefix", readAll(t, s, k, seg), src[:n])
	if err := s.Delete(k); err != nil {
		t.Fatal(err)
	}
	if m := s.Stats().MemoryBytes; m != 0 {
		t.Errorf("MemoryBytes after Delete = %d, want 0", m)
	}
	if n, err := s.Append(k, 0, src[:seg]); err != nil || n != seg {
		t.Errorf("Append after Delete = %d, %v", n, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		in      cache.Config
		want    cache.Config
		wantErr bool
	}{
		{cache.Config{}, cache.Config{MemoryBytes: cache.DefaultMemoryBytes, SegmentSize: cache.DefaultSegmentSize,
			RecycleBytes: cache.DefaultMemoryBytes / 4}, false},
		{cache.Config{MemoryBytes: 5, SegmentSize: 8192}, cache.Config{MemoryBytes: 5, SegmentSize: 8192, RecycleBytes: 1}, false},
		{cache.Config{MemoryBytes: 4 << 30}, cache.Config{MemoryBytes: 4 << 30, SegmentSize: cache.DefaultSegmentSize,
			RecycleBytes: cache.MaxRecycleBytes}, false},
		{cache.Config{RecycleBytes: -1}, cache.Config{MemoryBytes: cache.DefaultMemoryBytes, SegmentSize: cache.DefaultSegmentSize,
			RecycleBytes: -1}, false},
		{cache.Config{MemoryBytes: -1}, cache.Config{}, true},
		{cache.Config{SegmentSize: cache.MinSegmentSize - 1}, cache.Config{}, true},
		{cache.Config{SegmentSize: -4096}, cache.Config{}, true},
		{cache.Config{SegmentSize: cache.MaxSegmentSize + 1}, cache.Config{}, true},
	}
	for i, tt := range tests {
		got, err := tt.in.Validate()
		if tt.wantErr {
			if !errors.Is(err, cache.ErrConfig) {
				t.Errorf("%d: Validate(%+v) err %v, want ErrConfig", i, tt.in, err)
			}
			if _, err := cache.Open(tt.in); err == nil {
				t.Errorf("%d: Open(%+v) accepted a bad config", i, tt.in)
			}
			continue
		}
		if err != nil || got.MemoryBytes != tt.want.MemoryBytes || got.SegmentSize != tt.want.SegmentSize ||
			got.RecycleBytes != tt.want.RecycleBytes {
			t.Errorf("%d: Validate(%+v) = %+v, %v; want %+v", i, tt.in, got, err, tt.want)
		}
	}
}
