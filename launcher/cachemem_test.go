package launcher

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pispace/pispace/comm"
)

// TestNodeCacheMem: a node's comm cache keeps CacheMem bytes of channel
// data in memory and spills the rest to its data directory.
func TestNodeCacheMem(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	n, err := StartNode(ctx, NodeConfig{Bind: "127.0.0.1:0", DataDir: dir, CacheMem: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c, err := comm.New(comm.Config{Servers: []string{n.info.Comm}, DirectAddr: "off"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.OpenSpace(ctx, "cache-mem")
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for range 8 {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	spilled, err := filepath.Glob(filepath.Join(dir, "comm", "*", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(spilled) == 0 {
		entries, _ := os.ReadDir(filepath.Join(dir, "comm"))
		t.Fatalf("8 MiB written past a 2 MiB cache and nothing spilled (comm dir holds %v)", entries)
	}
}
