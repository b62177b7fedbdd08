package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Reader reads frames from a byte stream. It is the blocking counterpart of
// [Parser] for connections: it reads the header, checks it, then reads the
// payload into a buffer it reuses. A Reader is not safe for concurrent use.
type Reader struct {
	r   *bufio.Reader
	max int
	hdr [HeaderSize]byte
	buf []byte
	err error
}

// NewReader returns a Reader on r that rejects payloads longer than max
// bytes (zero means [DefaultMaxPayload]).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxPayload
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Next returns the next frame. Its payload is valid until the next call.
// At a clean end of stream (between frames) it returns io.EOF; a stream cut
// inside a frame gives io.ErrUnexpectedEOF; a malformed header gives an error
// wrapping [ErrProtocol]. Errors are sticky.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next()
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	h, err := parseHeader(r.hdr[:], r.max)
	if err != nil {
		return Frame{}, err
	}
	if cap(r.buf) < h.n {
		r.buf = make([]byte, h.n)
	}
	body := r.buf[:h.n]
	if _, err := io.ReadFull(r.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("wire: reading %d-byte payload: %w", h.n, err)
	}
	return Frame{Type: h.typ, Flags: h.flags, Req: h.req, Payload: body}, nil
}

// ReadInto reads the next frame's header and, when its payload fits in dst,
// reads the payload straight into dst (no copy through the internal buffer).
// It is for data frames on hot paths. It returns the frame with Payload
// aliasing dst[:n] when direct is true, or aliasing the internal buffer as
// [Reader.Next] does otherwise.
func (r *Reader) ReadInto(dst []byte) (f Frame, direct bool, err error) {
	if r.err != nil {
		return Frame{}, false, r.err
	}
	defer func() {
		if err != nil {
			r.err = err
		}
	}()
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, false, err
	}
	h, err := parseHeader(r.hdr[:], r.max)
	if err != nil {
		return Frame{}, false, err
	}
	body := dst
	if h.n <= len(dst) {
		direct = true
	} else {
		if cap(r.buf) < h.n {
			r.buf = make([]byte, h.n)
		}
		body = r.buf
	}
	body = body[:h.n]
	if _, err := io.ReadFull(r.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, false, fmt.Errorf("wire: reading %d-byte payload: %w", h.n, err)
	}
	return Frame{Type: h.typ, Flags: h.flags, Req: h.req, Payload: body}, direct, nil
}
