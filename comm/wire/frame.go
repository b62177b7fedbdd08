package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this package writes and accepts.
const Version = 1

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 12

// DefaultMaxPayload is the payload bound used when a zero maximum is given.
const DefaultMaxPayload = 16 << 20

// Errors returned by the decoder. All decode errors wrap [ErrProtocol].
var (
	ErrProtocol = errors.New("wire: protocol error")
	ErrVersion  = fmt.Errorf("%w: unsupported version", ErrProtocol)
	ErrTooLarge = fmt.Errorf("%w: frame too large", ErrProtocol)
	ErrFlags    = fmt.Errorf("%w: reserved flags set", ErrProtocol)
	ErrTrailing = fmt.Errorf("%w: trailing bytes in payload", ErrProtocol)
	ErrShort    = fmt.Errorf("%w: truncated payload", ErrProtocol)
)

// FlagMask holds the flag bits version 1 defines; the others must be zero.
const FlagMask uint16 = 0x00ff

// Type is a frame type. Its meaning belongs to the protocol using the frame.
type Type uint8

// Frame is one decoded frame. Payload aliases the decoder's buffer and is
// valid only until the next call to the decoder.
type Frame struct {
	Type    Type
	Flags   uint16
	Req     uint32
	Payload []byte
}

// AppendHeader appends the header of a frame with the given fields and a
// payload of n bytes to dst.
func AppendHeader(dst []byte, t Type, flags uint16, req uint32, n int) []byte {
	var h [HeaderSize]byte
	h[0] = Version
	h[1] = byte(t)
	binary.LittleEndian.PutUint16(h[2:], flags)
	binary.LittleEndian.PutUint32(h[4:], req)
	binary.LittleEndian.PutUint32(h[8:], uint32(n))
	return append(dst, h[:]...)
}

// AppendFrame appends a whole frame (header and payload) to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	dst = AppendHeader(dst, f.Type, f.Flags, f.Req, len(f.Payload))
	return append(dst, f.Payload...)
}

// WriteFrame writes f to w in one Write call.
func WriteFrame(w io.Writer, f Frame) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderSize+len(f.Payload)), f))
	return err
}

// header is a parsed frame header.
type header struct {
	typ   Type
	flags uint16
	req   uint32
	n     int
}

// parseHeader checks and decodes a header.
func parseHeader(b []byte, max int) (header, error) {
	if b[0] != Version {
		return header{}, fmt.Errorf("%w %d (want %d)", ErrVersion, b[0], Version)
	}
	h := header{
		typ:   Type(b[1]),
		flags: binary.LittleEndian.Uint16(b[2:]),
		req:   binary.LittleEndian.Uint32(b[4:]),
		n:     int(binary.LittleEndian.Uint32(b[8:])),
	}
	if h.flags&^FlagMask != 0 {
		return header{}, fmt.Errorf("%w: %#04x", ErrFlags, h.flags)
	}
	if h.n < 0 || h.n > max {
		return header{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, h.n, max)
	}
	return h, nil
}
