package cache_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/pispace/pispace/comm/cache"
)

// model is the naive reference of one stream.
type model struct {
	data   []byte
	sealed bool
}

// refAppend is Append on the reference: the result a Store must give.
func refAppend(m *model, off int64, p []byte) (*model, int64, error) {
	if m == nil {
		if off != 0 {
			return nil, 0, cache.ErrGap
		}
		m = &model{}
	}
	l := int64(len(m.data))
	if off > l {
		return m, l, cache.ErrGap
	}
	ov := min(off+int64(len(p)), l)
	if !bytes.Equal(m.data[off:ov], p[:ov-off]) {
		return m, l, cache.ErrDiverged
	}
	if off+int64(len(p)) > l {
		if m.sealed {
			return m, l, cache.ErrSealed
		}
		m.data = append(m.data, p[l-off:]...)
	}
	return m, int64(len(m.data)), nil
}

// TestProperty runs random operation sequences against a Store and the
// naive reference and requires the same results.
func TestProperty(t *testing.T) {
	for seed := range uint64(12) {
		name := fmt.Sprintf("seed%d", seed)
		t.Run(name, func(t *testing.T) {
			var mutate func(*cache.Config)
			switch seed % 3 {
			case 0:
				mutate = func(*cache.Config) {} // memory only
			case 1:
				mutate = spilling(t, 3*seg)
			case 2:
				mutate = spilling(t, 1) // everything immutable on disk
			}
			runProperty(t, newStore(t, mutate), rand.New(rand.NewPCG(seed, 7)), 600)
		})
	}
}

func runProperty(t *testing.T, s *cache.Store, rng *rand.Rand, steps int) {
	keys := []cache.Key{{Space: "p", Instance: 0}, {Space: "p", Instance: 1}, {Space: "q", Instance: 0}}
	ref := map[cache.Key]*model{}
	fresh := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	size := func() int { // mostly small, sometimes over several segments
		if rng.IntN(4) == 0 {
			return rng.IntN(3 * seg)
		}
		return rng.IntN(300)
	}
	for step := range steps {
		k := keys[rng.IntN(len(keys))]
		m := ref[k]
		l := int64(0)
		if m != nil {
			l = int64(len(m.data))
		}
		var what string
		var err, wantErr error
		switch op := rng.IntN(100); {
		case op < 30: // append at the end
			what = "append"
			p := fresh(size())
			var got, want int64
			got, err = s.Append(k, l, p)
			ref[k], want, wantErr = refAppend(m, l, p)
			if got != want {
				t.Fatalf("step %d %s %v: length %d, want %d", step, what, k, got, want)
			}
		case op < 55: // replay from anywhere, perhaps extending, perhaps diverging, perhaps past the end
			what = "replay"
			off := rng.Int64N(l + 2)
			var p []byte
			if m != nil && off < l {
				p = bytes.Clone(m.data[off:min(l, off+int64(size()))])
			}
			if rng.IntN(3) == 0 {
				p = append(p, fresh(size())...)
			}
			if len(p) > 0 && rng.IntN(5) == 0 {
				p[rng.IntN(len(p))] ^= byte(1 + rng.IntN(255))
			}
			var got, want int64
			got, err = s.Append(k, off, p)
			ref[k], want, wantErr = refAppend(m, off, p)
			if got != want {
				t.Fatalf("step %d %s %v at %d: length %d, want %d", step, what, k, off, got, want)
			}
		case op < 62: // seal, at the right length or not
			what = "seal"
			at := l
			if rng.IntN(3) == 0 {
				at = l + int64(rng.IntN(3)) - 1
			}
			err = s.Seal(k, at)
			switch {
			case at != l:
				wantErr = cache.ErrLength
			case m == nil:
				ref[k] = &model{sealed: true}
			default:
				m.sealed = true
			}
		case op < 65: // delete
			what = "delete"
			err = s.Delete(k)
			if m == nil {
				wantErr = cache.ErrNotFound
			}
			delete(ref, k)
		case op < 90: // read anywhere
			what = "read"
			off := rng.Int64N(l+2) - rng.Int64N(2)
			p := make([]byte, size())
			var n int
			n, err = s.ReadAt(k, p, off)
			wantN := 0
			switch {
			case m == nil:
				wantErr = cache.ErrNotFound
			case off < 0 || off > l:
				wantErr = cache.ErrOffset
			case off == l && m.sealed:
				wantErr = io.EOF
			default:
				wantN = int(min(int64(len(p)), l-off))
				if !bytes.Equal(p[:n], m.data[off:off+int64(n)]) {
					t.Fatalf("step %d read %v at %d: wrong bytes", step, k, off)
				}
			}
			if n != wantN {
				t.Fatalf("step %d read %v at %d: n %d, want %d", step, k, off, n, wantN)
			}
		default: // stat
			what = "stat"
			var gl int64
			var sealed bool
			gl, sealed, err = s.Stat(k)
			if m == nil {
				wantErr = cache.ErrNotFound
			} else if gl != l || sealed != m.sealed {
				t.Fatalf("step %d stat %v = %d, %v; want %d, %v", step, k, gl, sealed, l, m.sealed)
			}
		}
		if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Fatalf("step %d %s %v: err %v, want %v", step, what, k, err, wantErr)
		}
	}
	for k, m := range ref { // finally, everything reads back
		mustEqual(t, k.String(), readAll(t, s, k, seg+7), m.data)
	}
}
