//go:build !linux

package cache

import "os"

// openDirectFile reports errNoDirect: spill files are written with O_DIRECT
// on Linux only.
func openDirectFile(path string, flag int) (*os.File, error) { return nil, errNoDirect }

// writeAll writes bufs to f in order.
func writeAll(f *os.File, bufs [][]byte) error { return writeEach(f, bufs) }
