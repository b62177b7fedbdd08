package launcher

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/pispace/pispace/sched"
)

// Member roles advertised in metadata.
const (
	roleNode   = "node"   // a `pirun node`: runs ranks
	roleClient = "client" // an initiator or `pirun status`: runs nothing
)

// metaVersion is the version of the metadata encoding.
const metaVersion = 1

// NodeInfo is what a member advertises in its memberlist metadata, with the
// service addresses resolved against the member's gossip address.
type NodeInfo struct {
	Name      string            `json:"name"`
	Role      string            `json:"role"`
	Addr      string            `json:"addr"` // gossip host:port
	Servent   string            `json:"servent,omitempty"`
	Comm      string            `json:"comm,omitempty"`
	Slots     int               `json:"slots"`
	FreeSlots int               `json:"free_slots"`
	Mem       int64             `json:"mem"`
	FreeMem   int64             `json:"free_mem"`
	MaxTime   time.Duration     `json:"max_time,omitempty"`
	Seq       uint64            `json:"seq"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Sched returns the node as the scheduler sees it.
func (n NodeInfo) Sched() sched.Node {
	return sched.Node{Name: n.Name, Slots: n.Slots, FreeSlots: n.FreeSlots, Mem: n.Mem,
		FreeMem: n.FreeMem, MaxTime: n.MaxTime, Seq: n.Seq}
}

// meta is the compact wire form (memberlist allows 512 bytes). Service
// addresses travel as ports: the host is the member's own gossip address, so
// they work behind any bind address and in network namespaces.
type meta struct {
	V  int               `json:"v"`
	R  string            `json:"r"`
	S  int               `json:"s,omitempty"`
	F  int               `json:"f,omitempty"`
	M  int64             `json:"m,omitempty"`
	FM int64             `json:"fm,omitempty"`
	T  int64             `json:"t,omitempty"` // max time, ms
	Q  uint64            `json:"q,omitempty"`
	SP int               `json:"sp,omitempty"`
	CP int               `json:"cp,omitempty"`
	L  map[string]string `json:"l,omitempty"`
}

// encodeMeta renders info for NodeMeta; it returns ErrMetaTooLarge above
// memberlist.MetaMaxSize.
func encodeMeta(info NodeInfo) ([]byte, error) {
	m := meta{V: metaVersion, R: info.Role, S: info.Slots, F: info.FreeSlots, M: info.Mem,
		FM: info.FreeMem, T: info.MaxTime.Milliseconds(), Q: info.Seq,
		SP: portOf(info.Servent), CP: portOf(info.Comm), L: info.Labels}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMetaTooLarge, len(b))
	}
	return b, nil
}

// decodeMember returns the NodeInfo a member advertises; ok is false for
// members whose metadata is not ours.
func decodeMember(n *memberlist.Node) (NodeInfo, bool) {
	var m meta
	if err := json.Unmarshal(n.Meta, &m); err != nil || m.V != metaVersion {
		return NodeInfo{}, false
	}
	host := n.Addr.String()
	info := NodeInfo{Name: n.Name, Role: m.R, Addr: net.JoinHostPort(host, strconv.Itoa(int(n.Port))),
		Slots: m.S, FreeSlots: m.F, Mem: m.M, FreeMem: m.FM, MaxTime: time.Duration(m.T) * time.Millisecond,
		Seq: m.Q, Labels: m.L}
	if m.SP > 0 {
		info.Servent = net.JoinHostPort(host, strconv.Itoa(m.SP))
	}
	if m.CP > 0 {
		info.Comm = net.JoinHostPort(host, strconv.Itoa(m.CP))
	}
	return info, true
}

func portOf(addr string) int {
	if addr == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
