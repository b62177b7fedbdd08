package launcher

import (
	"context"
	"log/slog"
	"runtime"
)

// EmbeddedConfig sizes the in-process cluster pirun starts when no cluster
// is named. Zero values are documented per field.
type EmbeddedConfig struct {
	Nodes int   // nodes; 0 means the number of CPUs, at most 4
	Slots int   // slots per node; 0 means an even share of max(ranks, CPUs), so the whole job runs at once
	Mem   int64 // memory per node; 0 means the machine's total divided by Nodes
	// Logger receives the nodes' logs; nil means discard.
	Logger *slog.Logger
}

// sized fills the zero values for a job of ranks ranks. The embedded
// cluster oversubscribes on purpose: it gives every rank a slot even beyond
// the core count (like `mpirun --oversubscribe`), because a local run exists
// to run the program, and ranks waiting for each other's messages must all
// be running.
func (c EmbeddedConfig) sized(ranks int) EmbeddedConfig {
	if c.Nodes <= 0 {
		c.Nodes = min(max(runtime.NumCPU(), 1), 4)
	}
	if c.Slots <= 0 {
		c.Slots = (max(ranks, runtime.NumCPU()) + c.Nodes - 1) / c.Nodes
	}
	if c.Mem <= 0 {
		c.Mem = totalMemory() / int64(c.Nodes)
	}
	return c
}

// Cluster is an in-process cluster of nodes on loopback with the tuned
// profile: the same nodes, servents and protocol as a real cluster.
type Cluster struct {
	nodes []*Node
}

// StartEmbedded starts cfg.Nodes nodes on 127.0.0.1 and joins them.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Cluster, error) {
	cfg = cfg.sized(1)
	c := &Cluster{}
	for i := range cfg.Nodes {
		// The nodes share this machine: one P per rank when their slots
		// together oversubscribe it.
		nc := NodeConfig{Bind: "127.0.0.1:0", Slots: cfg.Slots, Procs: rankProcs(cfg.Nodes*cfg.Slots, runtime.NumCPU()),
			Mem: cfg.Mem, Profile: ProfileTuned, Logger: cfg.Logger,
			Labels: map[string]string{"embedded": "true"}}
		if i > 0 {
			nc.Join = []string{c.nodes[0].Addr()}
		}
		n, err := StartNode(ctx, nc)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.nodes = append(c.nodes, n)
	}
	return c, nil
}

// Seeds returns the gossip addresses to join.
func (c *Cluster) Seeds() []string {
	var s []string
	for _, n := range c.nodes {
		s = append(s, n.Addr())
	}
	return s
}

// Close stops every node (ranks still running are killed); idempotent.
func (c *Cluster) Close() error {
	for _, n := range c.nodes {
		n.Kill()
	}
	return nil
}
