package main

import (
	"context"
	"os"

	"github.com/pispace/pispace/launcher"
)

// runLaunch measures pirun's launch-to-exit time against mpirun (when Open
// MPI is installed), elastic-join latency and failover time; the measuring
// code lives in package launcher.
func runLaunch(ctx context.Context, quick bool) error {
	header("launch")
	return launcher.BenchLaunch(ctx, launcher.BenchConfig{Quick: quick, Stdout: os.Stdout, Stderr: os.Stderr})
}
