package launcher

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pispace/pispace/sched"
)

// ClusterStatus is what `pirun status` shows: every node with its resources
// and the ranks it runs.
type ClusterStatus struct {
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one node's advertised resources and its running ranks.
type NodeStatus struct {
	NodeInfo
	Ranks []RunningRank `json:"ranks"`
	Error string        `json:"error,omitempty"`
}

// StatusConfig says how to reach a cluster for Status.
type StatusConfig struct {
	Join    []string
	Key     []byte
	Profile string
	Bind    string
}

// Status joins the cluster briefly as a client and asks every node's
// servent what it runs.
func Status(ctx context.Context, cfg StatusConfig) (ClusterStatus, error) {
	if len(cfg.Join) == 0 {
		return ClusterStatus{}, fmt.Errorf("%w: status needs --join or PIRUN_JOIN", ErrUsage)
	}
	m, err := joinAsClient(ctx, cfg.Join, cfg.Bind, cfg.Profile, cfg.Key, nil, false)
	if err != nil {
		return ClusterStatus{}, err
	}
	defer m.leave(200*time.Millisecond, 0)
	nodes := m.members(roleNode)
	slices.SortFunc(nodes, func(a, b NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	st := ClusterStatus{Nodes: make([]NodeStatus, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		st.Nodes[i].NodeInfo = n
		wg.Go(func() {
			ranks, err := queryServent(ctx, n.Servent, cfg.Key)
			st.Nodes[i].Ranks = ranks
			if err != nil {
				st.Nodes[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return st, nil
}

// queryServent asks one servent for its running ranks.
func queryServent(ctx context.Context, addr string, key []byte) ([]RunningRank, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := dialServent(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fr, fw := newFrameReader(conn), newFrameWriter(conn, 3*time.Second)
	hello, err := fr.nextCtl()
	if err != nil {
		return nil, err
	}
	req := ctl{Op: opStatus, Version: ProtocolVersion}
	if key != nil {
		req.Auth = authProof(key, hello.Nonce)
	}
	if err := fw.ctl(req); err != nil {
		return nil, err
	}
	ans, err := fr.nextCtl()
	if err != nil {
		return nil, err
	}
	if ans.Op == opError {
		return nil, fmt.Errorf("servent: %s", ans.Error)
	}
	return ans.Ranks, nil
}

func mainStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("pirun status", stderr)
	var cf clusterFlags
	cf.register(fs.FlagSet, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	key, err := cf.resolve()
	if err != nil {
		return err
	}
	st, err := Status(ctx, StatusConfig{Join: cf.join, Key: key, Profile: cf.profile, Bind: cf.bind})
	if err != nil {
		return err
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st ClusterStatus) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "node\taddr\tslots\tfree\tmem\tfree mem\tmax time\tlabels")
	for _, n := range st.Nodes {
		mt := "-"
		if n.MaxTime > 0 {
			mt = n.MaxTime.String()
		}
		var labels []string
		for k, v := range n.Labels {
			labels = append(labels, k+"="+v)
		}
		slices.Sort(labels)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Addr, n.Slots, n.FreeSlots,
			sched.FormatBytes(n.Mem), sched.FormatBytes(n.FreeMem), mt, strings.Join(labels, ","))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "job\trank\tinc\tnode\tpid\trunning\tprogram")
	for _, n := range st.Nodes {
		if n.Error != "" {
			fmt.Fprintf(tw, "?\t?\t?\t%s\t?\t?\t(%s)\n", n.Name, n.Error)
		}
		for _, r := range n.Ranks {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%s\n", r.Job, r.Rank, r.Incarnation, n.Name, r.PID, r.Running, r.Program)
		}
	}
	tw.Flush()
}
