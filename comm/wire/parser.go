package wire

// Parser is a resumable frame decoder: feed it the byte stream in chunks of
// any size and take the frames out as they complete. It never allocates more
// than one payload of at most the maximum size. A Parser is not safe for
// concurrent use.
type Parser struct {
	max  int
	hdr  [HeaderSize]byte
	nh   int // header bytes collected
	cur  header
	body []byte // payload being collected, len == bytes collected
	err  error
}

// NewParser returns a parser that rejects payloads longer than max bytes
// (zero means [DefaultMaxPayload]).
func NewParser(max int) *Parser {
	if max <= 0 {
		max = DefaultMaxPayload
	}
	return &Parser{max: max}
}

// Feed consumes bytes from p until one frame is complete or p is exhausted.
// It returns how many bytes it consumed and, when a frame completed, that
// frame with ok set. The frame's payload is valid until the next call to
// Feed. After an error every call returns the same error.
func (p *Parser) Feed(b []byte) (n int, f Frame, ok bool, err error) {
	if p.err != nil {
		return 0, Frame{}, false, p.err
	}
	if p.nh < HeaderSize {
		c := copy(p.hdr[p.nh:], b)
		p.nh += c
		n += c
		if p.nh < HeaderSize {
			return n, Frame{}, false, nil
		}
		h, err := parseHeader(p.hdr[:], p.max)
		if err != nil {
			p.err = err
			return n, Frame{}, false, err
		}
		p.cur = h
		if cap(p.body) < h.n {
			p.body = make([]byte, 0, h.n)
		}
		p.body = p.body[:0]
	}
	need := p.cur.n - len(p.body)
	take := min(need, len(b)-n)
	p.body = append(p.body, b[n:n+take]...)
	n += take
	if len(p.body) < p.cur.n {
		return n, Frame{}, false, nil
	}
	p.nh = 0
	return n, Frame{Type: p.cur.typ, Flags: p.cur.flags, Req: p.cur.req, Payload: p.body}, true, nil
}

// Pending reports whether a frame has been started but not completed: at the
// end of a stream that means the stream was truncated.
func (p *Parser) Pending() bool { return p.nh > 0 }
