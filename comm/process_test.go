package comm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/commtest"
	"github.com/pispace/pispace/comm/server"
)

// The test binary doubles as the writer and reader processes of the
// multi-process tests: TestMain runs a child role when PISPACE_CHILD is set.
func TestMain(m *testing.M) {
	switch os.Getenv("PISPACE_CHILD") {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(childWriter())
	case "reader":
		os.Exit(childReader())
	default:
		fmt.Fprintln(os.Stderr, "unknown child role")
		os.Exit(2)
	}
}

func childSpace(ctx context.Context) (*comm.Client, *comm.Space, error) {
	c, err := comm.New(comm.Config{Servers: []string{os.Getenv("PISPACE_SERVER")}})
	if err != nil {
		return nil, nil, err
	}
	s, err := c.OpenSpace(ctx, "proc")
	return c, s, err
}

// childWriter writes PISPACE_SIZE bytes of payload(PISPACE_SEED) and exits.
func childWriter() int {
	ctx := context.Background()
	c, s, err := childSpace(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	size, _ := strconv.Atoi(os.Getenv("PISPACE_SIZE"))
	seed, _ := strconv.ParseUint(os.Getenv("PISPACE_SEED"), 10, 64)
	data := payload(seed, size)
	w, err := s.Create(ctx, "big")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; i < len(data); i += 1 << 20 {
		if _, err := w.Write(data[i:min(len(data), i+1<<20)]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := w.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childReader appends what it reads to PISPACE_OUT, resuming at the file's
// length (its offset) when the file already exists, and reads slowly when
// PISPACE_SLOW is set so that the test can kill it mid-stream.
func childReader() int {
	ctx := context.Background()
	c, s, err := childSpace(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	out, err := os.OpenFile(os.Getenv("PISPACE_OUT"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer out.Close()
	st, _ := out.Stat()
	r, err := s.AttachAny(ctx, "big", comm.AtOffset(st.Size()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if _, werr := out.Write(buf[:n]); werr != nil {
			fmt.Fprintln(os.Stderr, werr)
			return 1
		}
		if err == io.EOF {
			return 0
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if os.Getenv("PISPACE_SLOW") != "" {
			time.Sleep(time.Millisecond)
		}
	}
}

func child(t *testing.T, role, addr string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PISPACE_CHILD="+role, "PISPACE_SERVER="+addr)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

// TestProcessWriterThenReader is the test 1: a writer process writes
// 64 MiB and exits; a reader process started afterwards reads it all.
func TestProcessWriterThenReader(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{Dir: t.TempDir(), MemoryBytes: 32 << 20})
	const size = 64 << 20
	w := child(t, "writer", addr, "PISPACE_SIZE="+strconv.Itoa(size), "PISPACE_SEED=11")
	if err := w.Run(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	outPath := t.TempDir() + "/out"
	if err := child(t, "reader", addr, "PISPACE_OUT="+outPath).Run(); err != nil {
		t.Fatalf("reader: %v", err)
	}
	got, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != size || sum(got) != sum(payload(11, size)) {
		t.Fatalf("reader got %d bytes (sha %s), want %d identical", len(got), sum(got)[:12], size)
	}
}

// TestProcessReaderKilled is the test 2: a reader killed with
// SIGKILL mid-stream is restarted, resumes at its offset, and the total it
// read is byte-identical to what was written.
func TestProcessReaderKilled(t *testing.T) {
	_, addr := commtest.StartServer(t, server.Config{})
	const size = 16 << 20
	if err := child(t, "writer", addr, "PISPACE_SIZE="+strconv.Itoa(size), "PISPACE_SEED=12").Run(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	outPath := t.TempDir() + "/out"
	r := child(t, "reader", addr, "PISPACE_OUT="+outPath, "PISPACE_SLOW=1")
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	commtest.Eventually(t, 20*time.Second, func() bool {
		st, err := os.Stat(outPath)
		return err == nil && st.Size() > 1<<20
	}, "reader made no progress")
	r.Process.Signal(syscall.SIGKILL)
	r.Wait()
	st, _ := os.Stat(outPath)
	if st.Size() >= size {
		t.Fatal("reader finished before it was killed: the test proved nothing")
	}
	if err := child(t, "reader", addr, "PISPACE_OUT="+outPath).Run(); err != nil {
		t.Fatalf("restarted reader: %v", err)
	}
	got, _ := os.ReadFile(outPath)
	if !bytes.Equal(got, payload(12, size)) {
		t.Fatalf("total read %d bytes, want %d identical", len(got), size)
	}
}
