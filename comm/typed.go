package comm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// TypedWriter writes elements of type T to a channel created for T.
type TypedWriter[T Numeric] struct{ w *Writer }

// CreateTyped creates a channel of T elements (see [Space.Create]).
func CreateTyped[T Numeric](ctx context.Context, s *Space, name string, opts ...CreateOption) (*TypedWriter[T], error) {
	w, err := s.Create(ctx, name, append(opts, WithElem(ElemOf[T]()))...)
	if err != nil {
		return nil, err
	}
	return &TypedWriter[T]{w: w}, nil
}

// NewTypedWriter wraps w, which must have been created for T
// (ErrElemType otherwise).
func NewTypedWriter[T Numeric](w *Writer) (*TypedWriter[T], error) {
	if want := ElemOf[T](); w.Info().Elem != want {
		return nil, fmt.Errorf("comm: %w: channel %q carries %v, not %v", ErrElemType, w.Info().Name, w.Info().Elem, want)
	}
	return &TypedWriter[T]{w: w}, nil
}

// Write appends vals, little-endian. vals may be reused after it returns.
func (t *TypedWriter[T]) Write(vals []T) error {
	_, err := t.w.Write(AsBytes(vals))
	return err
}

// Close seals the channel (see [Writer.Close]).
func (t *TypedWriter[T]) Close(ctx context.Context) error { return t.w.Close(ctx) }

// Writer returns the underlying byte writer.
func (t *TypedWriter[T]) Writer() *Writer { return t.w }

// TypedReader reads elements of type T. It never returns part of an
// element.
type TypedReader[T Numeric] struct {
	r    *Reader
	part []byte // bytes of an incomplete element carried to the next Read
}

// AttachTyped attaches a channel of T elements; a channel of another
// element type gives ErrElemType.
func AttachTyped[T Numeric](ctx context.Context, s *Space, name string, opts ...AttachOption) (*TypedReader[T], error) {
	r, err := s.Attach(ctx, name, append(opts, ExpectElem(ElemOf[T]()))...)
	if err != nil {
		return nil, err
	}
	return &TypedReader[T]{r: r}, nil
}

// NewTypedReader wraps r, whose channel must carry T (ErrElemType
// otherwise).
func NewTypedReader[T Numeric](r *Reader) (*TypedReader[T], error) {
	if want := ElemOf[T](); r.Info().Elem != want {
		return nil, fmt.Errorf("comm: %w: channel %q carries %v, not %v", ErrElemType, r.Info().Name, r.Info().Elem, want)
	}
	return &TypedReader[T]{r: r}, nil
}

// Read fills dst with up to len(dst) elements, blocking until at least one
// is there; io.EOF after the last. The bytes are read straight into dst's
// memory, so elements of dst past the count returned may be overwritten. A
// stream that ends inside an element gives ErrPartial.
func (t *TypedReader[T]) Read(ctx context.Context, dst []T) (int, error) {
	if len(dst) == 0 {
		return 0, nil
	}
	var z T
	size := int(unsafe.Sizeof(z))
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), len(dst)*size)
	have := copy(raw, t.part)
	t.part = t.part[:0]
	for have < size {
		n, err := t.r.ReadContext(ctx, raw[have:])
		have += n
		if errors.Is(err, io.EOF) {
			if have > 0 && have < size {
				return 0, fmt.Errorf("%w: %d trailing bytes", ErrPartial, have)
			}
			if have == 0 {
				return 0, io.EOF
			}
			break
		}
		if err != nil {
			t.part = append(t.part, raw[:have]...)
			return 0, err
		}
	}
	whole := have / size
	t.part = append(t.part, raw[whole*size:have]...)
	if !littleEndian {
		swapInto(raw[:whole*size], raw[:whole*size], ElemOf[T]().wordSize())
	}
	return whole, nil
}

// ReadFull reads exactly len(dst) elements (io.ErrUnexpectedEOF if the
// channel ends first).
func (t *TypedReader[T]) ReadFull(ctx context.Context, dst []T) error {
	for got := 0; got < len(dst); {
		n, err := t.Read(ctx, dst[got:])
		got += n
		if errors.Is(err, io.EOF) && got < len(dst) {
			return io.ErrUnexpectedEOF
		}
		if err != nil && got < len(dst) {
			return err
		}
	}
	return nil
}

// Reader returns the underlying byte reader.
func (t *TypedReader[T]) Reader() *Reader { return t.r }

// Close detaches the reader.
func (t *TypedReader[T]) Close() error { return t.r.Close() }
