package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// program is the binary a job ships to nodes, content-addressed by sha256.
type program struct {
	Path string // local file
	Name string // base name, argv[0] on the node
	Hash string // sha256, hex
	Size int64
}

// resolveProgram finds the job's executable: a file path, a name on PATH, or
// a directory holding a Go main package, which it builds with `go build` into
// a cache directory first (build errors go to stderr).
func resolveProgram(ctx context.Context, arg string, stderr io.Writer) (program, error) {
	path := arg
	fi, err := os.Stat(arg)
	switch {
	case err == nil && fi.IsDir():
		if path, err = buildDir(ctx, arg, stderr); err != nil {
			return program{}, err
		}
	case err == nil:
		if fi.Mode()&0o111 == 0 {
			return program{}, fmt.Errorf("%w: %s is not executable", ErrUsage, arg)
		}
	case !strings.ContainsRune(arg, '/'):
		if path, err = exec.LookPath(arg); err != nil {
			return program{}, fmt.Errorf("%w: program %s: %v", ErrUsage, arg, err)
		}
	default:
		return program{}, fmt.Errorf("%w: program %s: %v", ErrUsage, arg, err)
	}
	return hashProgram(path)
}

func hashProgram(path string) (program, error) {
	f, err := os.Open(path)
	if err != nil {
		return program{}, fmt.Errorf("launcher: program: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return program{}, fmt.Errorf("launcher: program: %w", err)
	}
	return program{Path: path, Name: filepath.Base(path), Hash: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// buildDir runs `go build` in dir and returns the binary's path in the cache.
func buildDir(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	sum := sha256.Sum256([]byte(abs))
	outDir := filepath.Join(cache, "pispace", "build", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("launcher: build cache: %w", err)
	}
	out := filepath.Join(outDir, filepath.Base(abs))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = abs
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("launcher: go build %s: %w", dir, err)
	}
	return out, nil
}
