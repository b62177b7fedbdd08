package rt

import "sync"

// Collectives need scratch vectors as long as the user's (Allreduce's
// receive buffer for the partner's vector, say). Large ones come from
// per-element-type pools: a fresh 8 MiB vector per call costs its zeroing
// and, once the GC has returned the memory, page faults on every call.

// scratchMin is the smallest scratch vector, in bytes, taken from a pool.
const scratchMin = 64 << 10

var scratchPools [codeLimit]sync.Pool // of *[]T, by T's element code

// getScratch returns a vector of n elements whose contents are undefined,
// and, for a large one, the handle putScratch gives back to its pool.
func getScratch[T Elem](n int) ([]T, *[]T) {
	if n*sizeOf[T]() < scratchMin {
		return make([]T, n), nil
	}
	if p, ok := scratchPools[codeOf[T]()].Get().(*[]T); ok && cap(*p) >= n {
		return (*p)[:n], p
	}
	s := make([]T, n)
	return s, &s
}

// putScratch returns a vector from getScratch to its pool (nil: none).
// Callers must not touch it afterwards, nor give back one a failed
// receive may still be writing to.
func putScratch[T Elem](p *[]T) {
	if p != nil {
		scratchPools[codeOf[T]()].Put(p)
	}
}
