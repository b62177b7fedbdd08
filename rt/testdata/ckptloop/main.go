// Command ckptloop is a rank program for rt's multi-process tests: a loop
// of Allreduce steps, checkpointing its state every step. With
// CKPTLOOP_KILL=R:S, rank R of incarnation 0 kills itself with SIGKILL at
// step S, before that step's checkpoint; pirun restarts it, it restores and
// continues. Each rank prints its final state.
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pispace/pispace/rt"
)

const steps = 30

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "ckptloop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	w, err := rt.Init(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	killRank, killStep := parseKill(os.Getenv("CKPTLOOP_KILL"))
	if err := w.WaitForMin(ctx); err != nil {
		return err
	}
	step, acc := int64(0), 0.0
	if s, state, ok, err := w.Restore(ctx); err != nil {
		return err
	} else if ok {
		step, acc = s+1, math.Float64frombits(binary.LittleEndian.Uint64(state))
		fmt.Fprintf(os.Stderr, "rank %d incarnation %d restored step %d\n", w.Rank(), w.Incarnation(), s)
	}
	vec := make([]float64, 1000)
	out := make([]float64, len(vec))
	for ; step < steps; step++ {
		for i := range vec {
			vec[i] = float64(w.Rank()+1)*float64(step+1) + float64(i)*0.5 + acc*1e-3
		}
		if err := rt.Allreduce(ctx, w, vec, out, rt.Sum[float64]()); err != nil {
			return err
		}
		acc += out[int(step)%len(out)]
		if w.Rank() == killRank && int(step) == killStep && w.Incarnation() == 0 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		state := binary.LittleEndian.AppendUint64(nil, math.Float64bits(acc))
		if err := w.Checkpoint(ctx, step, state); err != nil {
			return err
		}
	}
	fmt.Printf("rank %d final %.6f\n", w.Rank(), acc)
	return nil
}

func parseKill(s string) (rank, step int) {
	r, st, ok := strings.Cut(s, ":")
	if !ok {
		return -1, -1
	}
	rank, _ = strconv.Atoi(r)
	step, _ = strconv.Atoi(st)
	return rank, step
}
