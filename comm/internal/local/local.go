// Package local names same-host endpoints: abstract Unix sockets that a
// comm server or a client's direct-path listener opens beside its TCP
// address, because they are faster than loopback TCP and need no file.
//
// An endpoint is advertised as "unix:HOST:@NAME", HOST naming the kernel
// and network namespace it lives in ([HostID]): an abstract socket is
// reachable exactly from that namespace, so a peer with the same HOST
// dials it and any other peer (on another machine, or in another network
// namespace of this one) uses TCP. Endpoint lists are comma-separated.
package local

import (
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/google/uuid"
)

const prefix = "unix:"

var host = sync.OnceValue(func() string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/net") // "net:[INODE]"
	if err != nil {
		return ""
	}
	ns = strings.Trim(strings.TrimPrefix(ns, "net:"), "[]")
	return strings.TrimSpace(string(boot)) + "." + ns
})

// HostID names this process's kernel instance and network namespace, or
// is empty where that cannot be told (then no Unix socket is used).
func HostID() string { return host() }

// Listen opens an abstract Unix socket with a fresh name (tagged with
// role, for whoever lists sockets) and returns it with its endpoint. It
// fails where there is no host identity.
func Listen(role string) (net.Listener, string, error) {
	h := HostID()
	if h == "" {
		return nil, "", syscall.EAFNOSUPPORT
	}
	name := "@pispace-" + role + "-" + uuid.NewString()
	l, err := net.Listen("unix", name)
	if err != nil {
		return nil, "", err
	}
	return l, prefix + h + ":" + name, nil
}

// Find returns the name of the Unix socket among endpoints that lives on
// this host, if any.
func Find(endpoints string) (string, bool) {
	h := HostID()
	if h == "" {
		return "", false
	}
	for e := range strings.SplitSeq(endpoints, ",") {
		rest, ok := strings.CutPrefix(e, prefix)
		if !ok {
			continue
		}
		eh, name, ok := strings.Cut(rest, ":")
		if ok && eh == h {
			return name, true
		}
	}
	return "", false
}

// TCP returns the first endpoint that is not a Unix socket.
func TCP(endpoints string) string {
	for e := range strings.SplitSeq(endpoints, ",") {
		if !strings.HasPrefix(e, prefix) {
			return e
		}
	}
	return ""
}
