// Command osurank is the pispace side of `go run ./bench osu`: OSU-style
// point-to-point and collective measurements that mirror bench/osu/osu.c
// (the Open MPI side) case for case. Run it under pirun:
//
//	pirun -n 2 osurank lat:8:1000:100 bw:1048576:8:1
//	pirun -n 4 osurank allreduce:1048576:10:2 barrier:0:1000:100
//
// Each argument is one case, KIND:PARAM:ITERS:WARMUP, run in order:
//
//	lat:SIZE        ping-pong between ranks 0 and 1, half round trip in µs
//	bw:SIZE         windows of 64 Isends 0 -> 1, then a 4-byte ack back; MB/s (1e6 bytes)
//	allreduce:COUNT Allreduce (sum) of COUNT float64s, µs per call
//	barrier:0       Barrier, µs per call
//
// Rank 0 prints one line per case, "osu KIND PARAM VALUE UNIT". Every rank
// checks the allreduce result and exits non-zero on a wrong sum.
//
// With OSURANK_CPUPROFILE=PREFIX in the environment each rank writes a CPU
// profile of its cases to PREFIX.RANK (for go tool pprof).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pispace/pispace/rt"
)

// window is the number of sends in flight per bandwidth iteration, as in
// osu_bw.
const window = 64

// Tags of the measurements; the ack of a bandwidth window has its own.
const (
	tagLat = 1
	tagBW  = 2
	tagAck = 3
)

var errCase = errors.New("osurank: bad case (want KIND:PARAM:ITERS:WARMUP)")

// spec is one case from the command line.
type spec struct {
	kind                 string
	param, iters, warmup int
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	specs := make([]spec, 0, len(args))
	for _, a := range args {
		s, err := parseSpec(a)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	w, err := rt.Init(ctx)
	if err != nil {
		return fmt.Errorf("osurank: %w", err)
	}
	defer w.Close()
	if prefix := os.Getenv("OSURANK_CPUPROFILE"); prefix != "" {
		stop, err := profile(fmt.Sprintf("%s.%d", prefix, w.Rank()))
		if err != nil {
			return fmt.Errorf("osurank: %w", err)
		}
		defer stop()
	}
	for _, s := range specs {
		if err := runCase(ctx, w, s); err != nil {
			return fmt.Errorf("osurank: %s:%d: %w", s.kind, s.param, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("osurank: close: %w", err)
	}
	return nil
}

// profile starts a CPU profile written to path; stop ends it.
func profile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func parseSpec(a string) (spec, error) {
	f := strings.Split(a, ":")
	if len(f) != 4 {
		return spec{}, fmt.Errorf("%w: %q", errCase, a)
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(f[i+1])
		if err != nil || v < 0 {
			return spec{}, fmt.Errorf("%w: %q", errCase, a)
		}
		n[i] = v
	}
	if n[1] < 1 {
		return spec{}, fmt.Errorf("%w: %q: ITERS < 1", errCase, a)
	}
	if !slices.Contains([]string{"lat", "bw", "allreduce", "barrier"}, f[0]) {
		return spec{}, fmt.Errorf("%w: %q: unknown kind", errCase, a)
	}
	return spec{kind: f[0], param: n[0], iters: n[1], warmup: n[2]}, nil
}

func runCase(ctx context.Context, w *rt.Comm, s spec) error {
	var (
		v    float64
		unit = "us"
		err  error
	)
	switch s.kind {
	case "lat", "bw":
		if w.Size() < 2 {
			return errors.New("point-to-point cases need 2 ranks")
		}
		if s.kind == "lat" {
			v, err = latency(ctx, w, s)
		} else {
			unit = "MB/s"
			v, err = bandwidth(ctx, w, s)
		}
	case "allreduce":
		v, err = allreduce(ctx, w, s)
	case "barrier":
		v, err = barrier(ctx, w, s)
	default:
		return fmt.Errorf("%w: unknown kind %q", errCase, s.kind)
	}
	if err != nil {
		return err
	}
	if w.Rank() == 0 {
		fmt.Printf("osu %s %d %.6g %s\n", s.kind, s.param, v, unit)
	}
	return nil
}

// timed runs step warmup+iters times after a barrier and returns the
// duration of the last iters.
func timed(ctx context.Context, w *rt.Comm, s spec, step func() error) (time.Duration, error) {
	if err := w.Barrier(ctx); err != nil {
		return 0, err
	}
	var t0 time.Time
	for i := range s.warmup + s.iters {
		if i == s.warmup {
			t0 = time.Now()
		}
		if err := step(); err != nil {
			return 0, err
		}
	}
	return time.Since(t0), nil
}

func latency(ctx context.Context, w *rt.Comm, s spec) (float64, error) {
	buf := make([]byte, s.param)
	step := func() error {
		switch w.Rank() {
		case 0:
			if err := rt.SendBytes(ctx, w, 1, tagLat, buf); err != nil {
				return err
			}
			return recvFull(ctx, w, 1, tagLat, buf)
		case 1:
			if err := recvFull(ctx, w, 0, tagLat, buf); err != nil {
				return err
			}
			return rt.SendBytes(ctx, w, 0, tagLat, buf)
		}
		return nil
	}
	d, err := timed(ctx, w, s, step)
	return float64(d.Nanoseconds()) / 1e3 / float64(2*s.iters), err
}

func recvFull(ctx context.Context, w *rt.Comm, src, tag int, buf []byte) error {
	st, err := rt.RecvBytes(ctx, w, src, tag, buf)
	if err == nil && st.Count != len(buf) {
		err = fmt.Errorf("received %d bytes, want %d", st.Count, len(buf))
	}
	return err
}

func bandwidth(ctx context.Context, w *rt.Comm, s spec) (float64, error) {
	// Like osu_bw, the sender sends one buffer window times; each receive
	// has its own buffer, as no two pending receives may share one.
	sbuf, bufs := make([]byte, s.param), make([][]byte, window)
	if w.Rank() == 1 {
		for i := range bufs {
			bufs[i] = make([]byte, s.param)
		}
	}
	ack := make([]byte, 4)
	reqs := make([]*rt.Request, window)
	step := func() error {
		var err error
		switch w.Rank() {
		case 0:
			for i := range reqs {
				if reqs[i], err = rt.Isend(ctx, w, 1, tagBW, sbuf); err != nil {
					return err
				}
			}
			if _, err := rt.WaitAll(ctx, reqs...); err != nil {
				return err
			}
			return recvFull(ctx, w, 1, tagAck, ack)
		case 1:
			for i := range reqs {
				if reqs[i], err = rt.Irecv(ctx, w, 0, tagBW, bufs[i]); err != nil {
					return err
				}
			}
			if _, err := rt.WaitAll(ctx, reqs...); err != nil {
				return err
			}
			return rt.SendBytes(ctx, w, 0, tagAck, ack)
		}
		return nil
	}
	d, err := timed(ctx, w, s, step)
	return float64(s.param) * window * float64(s.iters) / d.Seconds() / 1e6, err
}

func allreduce(ctx context.Context, w *rt.Comm, s spec) (float64, error) {
	send, recv := make([]float64, s.param), make([]float64, s.param)
	for j := range send {
		send[j] = float64(w.Rank() + 1 + j%7)
	}
	d, err := timed(ctx, w, s, func() error {
		return rt.Allreduce(ctx, w, send, recv, rt.Sum[float64]())
	})
	if err != nil {
		return 0, err
	}
	n := float64(w.Size())
	for j, v := range recv {
		if want := n*(n+1)/2 + n*float64(j%7); v != want {
			return 0, fmt.Errorf("allreduce: element %d is %v, want %v", j, v, want)
		}
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(s.iters), nil
}

func barrier(ctx context.Context, w *rt.Comm, s spec) (float64, error) {
	d, err := timed(ctx, w, s, func() error { return w.Barrier(ctx) })
	return float64(d.Nanoseconds()) / 1e3 / float64(s.iters), err
}
