package rt

// Op is a reduction operator for [Reduce], [Allreduce] and [Scan]. The
// zero Op is invalid.
//
// Reductions apply ops in rank order: the result over ranks 0..n-1 is
// x0 op x1 op ... op x(n-1), so associative but non-commutative operators
// (matrix products, concatenations) are correct. Floating-point results
// are deterministic for a given rank count, element count and Config, and
// identical on every rank of an Allreduce.
type Op[T Elem] struct {
	fn    func(dst, a, b []T)
	block int
	name  string
}

// NewOp returns an operator computing dst = a op b over vectors of equal
// length; dst may be the same slice as a or b, so read every input element
// an output depends on before writing it. fn must not keep its arguments:
// they may be the runtime's reused scratch vectors. block says how the runtime may
// split vectors: fn may be called on any sub-range whose start and length
// are multiples of block (1 for element-wise ops, 4 for packed 2x2
// matrices, ...); block 0 means fn always gets whole vectors. Splitting is
// what the bandwidth-optimal algorithms for large vectors need.
func NewOp[T Elem](name string, block int, fn func(dst, a, b []T)) Op[T] {
	return Op[T]{fn: fn, block: max(block, 0), name: name}
}

// Sum adds element-wise.
func Sum[T Elem]() Op[T] {
	return Op[T]{block: 1, name: "sum", fn: func(dst, a, b []T) {
		for i := range dst {
			dst[i] = a[i] + b[i]
		}
	}}
}

// Prod multiplies element-wise.
func Prod[T Elem]() Op[T] {
	return Op[T]{block: 1, name: "prod", fn: func(dst, a, b []T) {
		for i := range dst {
			dst[i] = a[i] * b[i]
		}
	}}
}

// Min takes the element-wise minimum (the built-in min: a NaN wins).
func Min[T Ordered]() Op[T] {
	return Op[T]{block: 1, name: "min", fn: func(dst, a, b []T) {
		for i := range dst {
			dst[i] = min(a[i], b[i])
		}
	}}
}

// Max takes the element-wise maximum (the built-in max: a NaN wins).
func Max[T Ordered]() Op[T] {
	return Op[T]{block: 1, name: "max", fn: func(dst, a, b []T) {
		for i := range dst {
			dst[i] = max(a[i], b[i])
		}
	}}
}

// String returns the op's name.
func (o Op[T]) String() string { return o.name }

// apply computes dst = a op b on the element range [lo, hi).
func (o Op[T]) apply(dst, a, b []T, lo, hi int) {
	if lo < hi {
		o.fn(dst[lo:hi], a[lo:hi], b[lo:hi])
	}
}

// splittable reports whether vectors of n elements may be cut into p
// pieces on block boundaries, and returns the number of blocks.
func (o Op[T]) splittable(n, p int) (int, bool) {
	if o.block == 0 || n%o.block != 0 {
		return 0, false
	}
	nb := n / o.block
	return nb, nb >= p
}
