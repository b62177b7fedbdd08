package comm

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"unsafe"
)

// Elem is the element type of a channel, fixed when the channel is created
// and checked when a reader attaches. Elements travel little-endian.
type Elem uint8

// Element types. Bytes is a raw byte stream.
const (
	Bytes Elem = iota
	Int8
	Uint8
	Int16
	Uint16
	Int32
	Uint32
	Int64
	Uint64
	Float32
	Float64
	Complex64
	Complex128
	numElems
	// AnyElem, given when attaching, accepts any element type and reads the
	// channel as raw bytes.
	AnyElem Elem = 255
)

var elemNames = [...]string{"bytes", "int8", "uint8", "int16", "uint16", "int32", "uint32",
	"int64", "uint64", "float32", "float64", "complex64", "complex128"}

func (e Elem) String() string {
	if e < numElems {
		return elemNames[e]
	}
	if e == AnyElem {
		return "any"
	}
	return fmt.Sprintf("elem(%d)", uint8(e))
}

// Size is the encoded size of one element in bytes (1 for Bytes).
func (e Elem) Size() int {
	switch e {
	case Int16, Uint16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64, Complex64:
		return 8
	case Complex128:
		return 16
	}
	return 1
}

// Valid reports whether e names an element type.
func (e Elem) Valid() bool { return e < numElems }

// Numeric is the set of fixed-size element types a typed channel carries.
type Numeric interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 |
		~float32 | ~float64 | ~complex64 | ~complex128
}

// ElemOf returns the element type code of T (named types count as their
// underlying type).
func ElemOf[T Numeric]() Elem {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Int8:
		return Int8
	case reflect.Uint8:
		return Uint8
	case reflect.Int16:
		return Int16
	case reflect.Uint16:
		return Uint16
	case reflect.Int32:
		return Int32
	case reflect.Uint32:
		return Uint32
	case reflect.Int64:
		return Int64
	case reflect.Uint64:
		return Uint64
	case reflect.Float32:
		return Float32
	case reflect.Float64:
		return Float64
	case reflect.Complex64:
		return Complex64
	default:
		return Complex128
	}
}

// wordSize is the size of the numbers an element is made of: complex
// values are two floats.
func (e Elem) wordSize() int {
	if e == Complex64 || e == Complex128 {
		return e.Size() / 2
	}
	return e.Size()
}

// littleEndian reports whether this machine stores numbers little-endian,
// in which case encoding is a plain copy.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// AsBytes returns the little-endian encoding of s. On little-endian
// machines it aliases s (no copy); otherwise it is a new slice.
func AsBytes[T Numeric](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	size := int(unsafe.Sizeof(s[0]))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*size)
	if littleEndian {
		return raw
	}
	out := make([]byte, len(raw))
	swapInto(out, raw, ElemOf[T]().wordSize())
	return out
}

// FromBytes decodes little-endian b into dst, which must hold exactly
// len(b)/size elements.
func FromBytes[T Numeric](dst []T, b []byte) {
	if len(dst) == 0 {
		return
	}
	size := int(unsafe.Sizeof(dst[0]))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(dst)*size)
	if littleEndian {
		copy(raw, b)
		return
	}
	swapInto(raw, b, ElemOf[T]().wordSize())
}

// swapInto reverses the byte order of each word when copying src to dst.
func swapInto(dst, src []byte, word int) {
	for i := 0; i+word <= len(src); i += word {
		switch word {
		case 2:
			binary.BigEndian.PutUint16(dst[i:], binary.LittleEndian.Uint16(src[i:]))
		case 4:
			binary.BigEndian.PutUint32(dst[i:], binary.LittleEndian.Uint32(src[i:]))
		case 8:
			binary.BigEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:]))
		default:
			dst[i] = src[i]
		}
	}
}
