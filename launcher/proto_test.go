package launcher

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	fw := newFrameWriter(&buf, 0)
	if err := fw.ctl(ctl{Op: opOffer, Rank: 3, Args: []string{"a b"}}); err != nil {
		t.Fatal(err)
	}
	if err := fw.write(frameStdout, []byte("line\n")); err != nil {
		t.Fatal(err)
	}
	if err := fw.write(frameBinary, make([]byte, MaxFrame)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized write: %v", err)
	}
	fr := newFrameReader(&buf)
	c, err := fr.nextCtl()
	if err != nil || c.Op != opOffer || c.Rank != 3 || c.Args[0] != "a b" {
		t.Fatalf("ctl = %+v, %v", c, err)
	}
	typ, p, err := fr.next()
	if err != nil || typ != frameStdout || string(p) != "line\n" {
		t.Fatalf("frame = %q %q %v", typ, p, err)
	}
	if _, _, err := fr.next(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}
}

// FuzzFrameReader: any input yields frames or an error, never a panic, and
// never a frame above MaxFrame.
func FuzzFrameReader(f *testing.F) {
	f.Add(frame(frameCtl, []byte(`{"op":"offer","rank":1}`)))
	f.Add(frame(frameStdout, []byte("x")))
	f.Add([]byte{0, 0, 0, 2, 'C'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := newFrameReader(bytes.NewReader(b))
		for {
			typ, p, err := fr.next()
			if err != nil {
				return
			}
			if len(p)+1 > MaxFrame {
				t.Fatalf("frame of %d bytes", len(p))
			}
			if typ == frameCtl {
				decodeCtl(p)
			}
		}
	})
}
