package wire

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func frames() []Frame {
	return []Frame{
		{Type: 1, Req: 7, Payload: []byte("hello")},
		{Type: 2, Flags: 3, Req: 0, Payload: nil},
		{Type: 255, Req: 1<<32 - 1, Payload: bytes.Repeat([]byte{0xab}, 70000)},
	}
}

func stream(fs []Frame) []byte {
	var b []byte
	for _, f := range fs {
		b = AppendFrame(b, f)
	}
	return b
}

func equal(a, b Frame) bool {
	return a.Type == b.Type && a.Flags == b.Flags && a.Req == b.Req && bytes.Equal(a.Payload, b.Payload)
}

// parseAll feeds b to a parser in the given chunk sizes and returns copies of
// the frames it produced.
func parseAll(p *Parser, chunks [][]byte) ([]Frame, error) {
	var out []Frame
	for _, c := range chunks {
		for len(c) > 0 {
			n, f, ok, err := p.Feed(c)
			if err != nil {
				return out, err
			}
			c = c[n:]
			if ok {
				f.Payload = bytes.Clone(f.Payload)
				out = append(out, f)
			}
		}
	}
	return out, nil
}

func TestParserAnyChunking(t *testing.T) {
	want := frames()
	b := stream(want)
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		var chunks [][]byte
		rest := b
		for len(rest) > 0 {
			n := 1 + r.IntN(min(len(rest), 1+trial*37))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		p := NewParser(1 << 20)
		got, err := parseAll(p, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || p.Pending() {
			t.Fatalf("trial %d: got %d frames (pending %v), want %d", trial, len(got), p.Pending(), len(want))
		}
		for i := range want {
			if !equal(got[i], want[i]) {
				t.Fatalf("trial %d frame %d differs", trial, i)
			}
		}
	}
}

func TestReaderRoundTrip(t *testing.T) {
	want := frames()
	r := NewReader(bytes.NewReader(stream(want)), 1<<20)
	for i := range want {
		f, err := r.Next()
		if err != nil || !equal(f, want[i]) {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: got %v, want io.EOF", err)
	}
}

func TestReadIntoDirect(t *testing.T) {
	want := frames()
	r := NewReader(bytes.NewReader(stream(want)), 1<<20)
	dst := make([]byte, 100)
	for i := range want {
		f, direct, err := r.ReadInto(dst)
		if err != nil || !equal(f, want[i]) {
			t.Fatalf("frame %d: %v", i, err)
		}
		if direct != (len(want[i].Payload) <= len(dst)) {
			t.Fatalf("frame %d: direct=%v", i, direct)
		}
	}
}

func TestBadFrames(t *testing.T) {
	good := AppendFrame(nil, Frame{Type: 1, Payload: []byte("abc")})
	badVersion := bytes.Clone(good)
	badVersion[0] = 9
	badFlags := bytes.Clone(good)
	badFlags[3] = 0x80
	huge := AppendHeader(nil, 1, 0, 0, 1<<30)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"version", badVersion, ErrVersion},
		{"flags", badFlags, ErrFlags},
		{"oversized", huge, ErrTooLarge},
		{"truncated", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"truncated header", good[:5], io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(c.in), 1<<20).Next()
			if !errors.Is(err, c.want) {
				t.Fatalf("Reader: got %v, want %v", err, c.want)
			}
			if errors.Is(c.want, ErrProtocol) {
				_, err := parseAll(NewParser(1<<20), [][]byte{c.in})
				if !errors.Is(err, c.want) {
					t.Fatalf("Parser: got %v, want %v", err, c.want)
				}
			}
		})
	}
}

func TestCodecRoundTrip(t *testing.T) {
	var e Enc
	e.U8(7)
	e.Bool(true)
	e.U64(1 << 60)
	e.I64(-12345)
	e.String("space/α")
	e.Bytes([]byte{1, 2, 3})
	e.Map(map[string]string{"k": "v"})
	d := NewDec(e.B)
	if d.U8() != 7 || !d.Bool() || d.U64() != 1<<60 || d.I64() != -12345 ||
		d.String() != "space/α" || !bytes.Equal(d.Bytes(10), []byte{1, 2, 3}) || d.Map()["k"] != "v" {
		t.Fatal("round trip mismatch")
	}
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
	for i := range len(e.B) {
		d := NewDec(e.B[:i])
		decodeAll(d)
		if d.Done() == nil {
			t.Fatalf("truncation at %d not detected", i)
		}
	}
	d = NewDec(append(bytes.Clone(e.B), 0))
	decodeAll(d)
	if !errors.Is(d.Done(), ErrTrailing) {
		t.Fatal("trailing byte not detected")
	}
}

// decodeAll decodes the fields TestCodecRoundTrip encodes, in order.
func decodeAll(d *Dec) {
	d.U8()
	d.Bool()
	d.U64()
	d.I64()
	_ = d.String()
	d.Bytes(10)
	d.Map()
}
