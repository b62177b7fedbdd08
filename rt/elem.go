package rt

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Elem is the set of element types a typed message may carry: fixed-size
// numbers encoded little-endian on the wire. Raw bytes travel with
// [SendBytes] and [RecvBytes] instead (element type "bytes"), so a []uint8
// sent with Send is not a raw-byte message.
type Elem interface {
	int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 |
		float32 | float64 | complex64 | complex128
}

// Ordered is the subset of Elem with an order, usable with [Min] and [Max].
type Ordered interface {
	int8 | uint8 | int16 | uint16 | int32 | uint32 | int64 | uint64 |
		float32 | float64
}

// elemCode is the wire code of an element type (shared with package comm).
type elemCode uint8

const (
	codeBytes elemCode = iota
	codeInt8
	codeUint8
	codeInt16
	codeUint16
	codeInt32
	codeUint32
	codeInt64
	codeUint64
	codeFloat32
	codeFloat64
	codeComplex64
	codeComplex128
	codeLimit // first invalid code
)

var codeNames = [...]string{"bytes", "int8", "uint8", "int16", "uint16", "int32",
	"uint32", "int64", "uint64", "float32", "float64", "complex64", "complex128"}

// codeSizes is the element size of each code; bytes count one.
var codeSizes = [...]int{1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8, 8, 16}

func (c elemCode) String() string {
	if c < codeLimit {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

func (c elemCode) size() int { return codeSizes[c] }

// codeOf returns the wire code of T without reflection.
func codeOf[T Elem]() elemCode {
	switch any((*T)(nil)).(type) {
	case *int8:
		return codeInt8
	case *uint8:
		return codeUint8
	case *int16:
		return codeInt16
	case *uint16:
		return codeUint16
	case *int32:
		return codeInt32
	case *uint32:
		return codeUint32
	case *int64:
		return codeInt64
	case *uint64:
		return codeUint64
	case *float32:
		return codeFloat32
	case *float64:
		return codeFloat64
	case *complex64:
		return codeComplex64
	default:
		return codeComplex128
	}
}

// nativeLE reports whether the host stores numbers little-endian, in which
// case a []T is already its own wire encoding.
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// partlyOverlap reports whether a and b share memory without being the
// same vector.
func partlyOverlap[T Elem](a, b []T) bool {
	x, y := asBytes(a), asBytes(b)
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	px, py := uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&y[0]))
	return px < py+uintptr(len(y)) && py < px+uintptr(len(x))
}

// asBytes views s as its bytes in host order, without copying.
func asBytes[T Elem](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}

// wireBytes returns the little-endian encoding of s: a view of s on
// little-endian hosts, a swapped copy elsewhere.
func wireBytes[T Elem](s []T) []byte {
	b := asBytes(s)
	if nativeLE {
		return b
	}
	c := append([]byte(nil), b...)
	swapOrder(c, codeOf[T]())
	return c
}

// fromWire converts b, just received into a []T's memory, to host order.
func fromWire(b []byte, code elemCode) {
	if !nativeLE {
		swapOrder(b, code)
	}
}

// swapOrder reverses the bytes of each scalar in b (complex numbers are two
// scalars).
func swapOrder(b []byte, code elemCode) {
	unit := code.size()
	if code == codeComplex64 || code == codeComplex128 {
		unit /= 2
	}
	if unit == 1 {
		return
	}
	for i := 0; i+unit <= len(b); i += unit {
		s := b[i : i+unit]
		for l, r := 0, unit-1; l < r; l, r = l+1, r-1 {
			s[l], s[r] = s[r], s[l]
		}
	}
}
