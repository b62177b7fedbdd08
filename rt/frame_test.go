package rt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its data in pieces of the given sizes (cycled).
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) ReadContext(_ context.Context, p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(r.sizes) > 0 {
		n = max(1, r.sizes[r.i%len(r.sizes)])
		r.i++
	}
	n = copy(p[:min(len(p), n)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

func encodeFrames(payloads [][]byte) []byte {
	var out []byte
	for i, p := range payloads {
		h := make([]byte, hdrSize)
		putHeader(h, header{code: codeBytes, op: opP2P, tag: int32(i), seq: uint64(i), n: int64(len(p))})
		out = append(append(out, h...), p...)
	}
	return out
}

// FuzzFrameReader: any chunking of a valid stream decodes to the same
// frames; arbitrary bytes never panic and end in an error.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte("hello"), 3, 1000, []byte{1, 2})
	f.Add(bytes.Repeat([]byte{7}, 70000), 1, 9999, []byte{})
	f.Fuzz(func(t *testing.T, payload []byte, split int, split2 int, junk []byte) {
		frames := [][]byte{payload, nil, payload[:len(payload)/2]}
		data := encodeFrames(frames)
		fr := newFrameReader(&chunkReader{data: data, sizes: []int{split, split2}}, 0, 1<<30)
		ctx := context.Background()
		for i, want := range frames {
			h, p, off, err := fr.next(ctx)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(p, want) || h.tag != int32(i) || h.seq != uint64(i) || off < 0 {
				t.Fatalf("frame %d: tag %d seq %d, %d bytes, want %d", i, h.tag, h.seq, len(p), len(want))
			}
		}
		if fr.off != int64(len(data)) {
			t.Fatalf("offset %d after %d bytes", fr.off, len(data))
		}
		if _, _, _, err := fr.next(ctx); err != io.EOF {
			t.Fatalf("after the last frame: %v", err)
		}
		// Garbage: must fail cleanly.
		fr = newFrameReader(&chunkReader{data: junk, sizes: []int{split}}, 0, 1<<20)
		for range 4 {
			if _, _, _, err := fr.next(ctx); err != nil {
				return
			}
		}
	})
}

func TestParseHeaderRejects(t *testing.T) {
	good := make([]byte, hdrSize)
	putHeader(good, header{code: codeFloat64, op: opBcast, tag: collTag, seq: 3, n: 16})
	if h, err := parseHeader(good, 100); err != nil || h.n != 16 || h.tag != collTag || h.op != opBcast {
		t.Fatalf("good header: %+v %v", h, err)
	}
	for name, mut := range map[string]func(b []byte){
		"version":   func(b []byte) { b[0] = 2 },
		"flags":     func(b []byte) { b[3] = 1 },
		"elem":      func(b []byte) { b[1] = byte(codeLimit) },
		"op":        func(b []byte) { b[2] = byte(opLimit) },
		"too long":  func(b []byte) { b[16] = 200 },
		"not whole": func(b []byte) { b[16] = 17 },
	} {
		b := append([]byte(nil), good...)
		mut(b)
		if _, err := parseHeader(b, 100); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckpointEncoding(t *testing.T) {
	comms := []*commState{{id: "w", splits: 2, peers: []peerState{
		{outOff: 10, outSeq: 2, inOff: 30, inSeq: 4, skip: []uint64{5, 7}}, {},
	}}}
	b := encodeCheckpoint(42, map[string]int{"halo": 3}, comms, []byte("user"))
	step, named, got, user, err := decodeCheckpoint(b)
	if err != nil || step != 42 || named["halo"] != 3 || string(user) != "user" ||
		len(got) != 1 || got[0].splits != 2 || got[0].peers[0].skip[1] != 7 || got[0].peers[0].inOff != 30 {
		t.Fatalf("round trip: %d %v %+v %q %v", step, named, got, user, err)
	}
	for cut := range len(b) {
		if _, _, _, _, err := decodeCheckpoint(b[:cut]); !errors.Is(err, ErrCheckpoint) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
}

// next returns the next frame, its payload and its start offset (the
// runtime reads header and payload separately; see inbox.step).
func (f *frameReader) next(ctx context.Context) (header, []byte, int64, error) {
	h, start, err := f.header(ctx)
	if err != nil {
		return h, nil, start, err
	}
	p, err := f.payload(ctx, nil)
	return h, p, start, err
}
