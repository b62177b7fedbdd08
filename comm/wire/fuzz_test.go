package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func addSeeds(f *testing.F) {
	f.Add(stream(frames()[:2]))
	f.Add(AppendHeader(nil, 1, 0, 0, 1<<30))
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 'a', 'b'})
	f.Add([]byte{})
}

// FuzzParser checks that the resumable parser and the blocking reader agree
// on every input, whatever the split point: same frames, and an error from
// one exactly when the other fails. Inputs are fed in two halves, as
// nats-server's FuzzParser does, and byte by byte.
func FuzzParser(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 16
		var want []Frame
		r := NewReader(bytes.NewReader(data), max)
		var rerr error
		for {
			fr, err := r.Next()
			if err != nil {
				rerr = err
				break
			}
			fr.Payload = bytes.Clone(fr.Payload)
			want = append(want, fr)
		}
		half := len(data) / 2
		splits := [][][]byte{{data[:half], data[half:]}, bytewise(data)}
		for _, chunks := range splits {
			p := NewParser(max)
			got, perr := parseAll(p, chunks)
			if len(got) != len(want) {
				t.Fatalf("parser %d frames, reader %d", len(got), len(want))
			}
			for i := range got {
				if !equal(got[i], want[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}
			readerProto := errors.Is(rerr, ErrProtocol)
			if (perr != nil) != readerProto {
				t.Fatalf("parser err %v, reader err %v", perr, rerr)
			}
			if perr == nil && p.Pending() != (rerr != io.EOF) {
				t.Fatalf("pending %v but reader ended with %v", p.Pending(), rerr)
			}
		}
	})
}

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// FuzzRoundTrip checks that encoding a frame and decoding it gives it back.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(1), uint16(0), uint32(5), []byte("payload"))
	f.Add(uint8(0), uint16(0xff), uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, typ uint8, flags uint16, req uint32, payload []byte) {
		in := Frame{Type: Type(typ), Flags: flags & FlagMask, Req: req, Payload: payload}
		out, err := NewReader(bytes.NewReader(AppendFrame(nil, in)), len(payload)).Next()
		if err != nil {
			t.Fatal(err)
		}
		if !equal(in, out) {
			t.Fatalf("got %+v, want %+v", out, in)
		}
	})
}

// FuzzDec checks that decoding arbitrary payloads never panics and that the
// decoder never returns more bytes than it was given.
func FuzzDec(f *testing.F) {
	var e Enc
	e.String("name")
	e.U64(3)
	e.Map(map[string]string{"a": "b"})
	f.Add(e.B)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDec(data)
		s := d.String()
		d.U64()
		d.Map()
		b := d.Bytes(1 << 20)
		if len(s)+len(b) > len(data) {
			t.Fatal("decoded more than input")
		}
		_ = d.Done()
	})
}
