package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MaxString bounds a decoded string or byte-slice field of a control message
// (names, keys, addresses, attribute values, error texts).
const MaxString = 64 << 10

// Enc appends payload fields to a buffer. The zero value is ready to use.
type Enc struct{ B []byte }

// U8 appends one byte.
func (e *Enc) U8(v uint8) { e.B = append(e.B, v) }

// Bool appends a boolean as one byte.
func (e *Enc) Bool(v bool) {
	var b byte
	if v {
		b = 1
	}
	e.B = append(e.B, b)
}

// U64 appends an unsigned integer as a uvarint.
func (e *Enc) U64(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// I64 appends a signed integer as a varint.
func (e *Enc) I64(v int64) { e.B = binary.AppendVarint(e.B, v) }

// Bytes appends a length-prefixed byte slice.
func (e *Enc) Bytes(v []byte) {
	e.U64(uint64(len(v)))
	e.B = append(e.B, v...)
}

// String appends a length-prefixed string.
func (e *Enc) String(v string) {
	e.U64(uint64(len(v)))
	e.B = append(e.B, v...)
}

// Map appends a string map in map iteration order (the decoder does not
// depend on order).
func (e *Enc) Map(m map[string]string) {
	e.U64(uint64(len(m)))
	for k, v := range m {
		e.String(k)
		e.String(v)
	}
}

// Dec decodes payload fields. Its error is sticky: after the first failure
// every method returns a zero value, and [Dec.Done] reports the error.
type Dec struct {
	B   []byte
	err error
}

// NewDec returns a decoder over b.
func NewDec(b []byte) *Dec { return &Dec{B: b} }

func (d *Dec) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrShort, what)
	}
	d.B = nil
}

// U8 decodes one byte.
func (d *Dec) U8() uint8 {
	if len(d.B) < 1 {
		d.fail("u8")
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Bool decodes a boolean; any byte other than 0 or 1 is an error.
func (d *Dec) Bool() bool {
	v := d.U8()
	if v > 1 && d.err == nil {
		d.err = fmt.Errorf("%w: bad boolean %d", ErrProtocol, v)
	}
	return v == 1
}

// U64 decodes a uvarint.
func (d *Dec) U64() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// I64 decodes a varint.
func (d *Dec) I64() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Len decodes a length prefix bounded by max.
func (d *Dec) Len(max int) int {
	v := d.U64()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) || v > math.MaxInt32 {
		d.err = fmt.Errorf("%w: length %d exceeds %d", ErrProtocol, v, max)
		d.B = nil
		return 0
	}
	return int(v)
}

// Bytes decodes a length-prefixed byte slice of at most max bytes. The
// result aliases the payload.
func (d *Dec) Bytes(max int) []byte {
	n := d.Len(max)
	if d.err != nil {
		return nil
	}
	if len(d.B) < n {
		d.fail("bytes")
		return nil
	}
	v := d.B[:n:n]
	d.B = d.B[n:]
	return v
}

// String decodes a length-prefixed string of at most [MaxString] bytes.
func (d *Dec) String() string { return string(d.Bytes(MaxString)) }

// Map decodes a string map of at most 1024 entries.
func (d *Dec) Map() map[string]string {
	n := d.Len(1024)
	if d.err != nil || n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.String()
		m[k] = d.String()
	}
	return m
}

// Err returns the first error, without checking for trailing bytes.
func (d *Dec) Err() error { return d.err }

// Done returns the first error, or [ErrTrailing] when bytes are left over.
func (d *Dec) Done() error {
	if d.err == nil && len(d.B) != 0 {
		return fmt.Errorf("%w: %d bytes", ErrTrailing, len(d.B))
	}
	return d.err
}
