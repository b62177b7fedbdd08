package local

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHostIDPerNetworkNamespace: a process in another network namespace
// of this kernel has another host identity, and cannot reach an abstract
// socket of this one: the identity claims exactly the reach the sockets
// have. It runs this test binary again under `unshare -n` (root only).
func TestHostIDPerNetworkNamespace(t *testing.T) {
	if os.Getenv("LOCAL_NETNS_CHILD") != "" {
		t.Skip("child side: see TestNetnsChild")
	}
	if os.Getuid() != 0 || HostID() == "" {
		t.Skip("needs root and a host identity")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	l, ep, err := Listen("netns-test")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	name, _ := Find(ep)
	cmd := exec.Command(unshare, "-n", os.Args[0], "-test.run=^TestNetnsChild$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCAL_NETNS_CHILD="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child in a new network namespace: %v\n%s", err, out)
	}
	var child, dial string
	for line := range strings.SplitSeq(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "HOSTID "); ok {
			child = v
		}
		if v, ok := strings.CutPrefix(line, "DIAL "); ok {
			dial = v
		}
	}
	if child == "" || child == HostID() {
		t.Fatalf("host id in another network namespace %q, here %q: want a different, non-empty one\n%s", child, HostID(), out)
	}
	if dial == "ok" {
		t.Fatalf("the abstract socket %s was reachable from another network namespace", name)
	}
	if _, ok := Find(ep); !ok {
		t.Fatal("our own endpoint is not found as local")
	}
}

// TestNetnsChild is the child side of TestHostIDPerNetworkNamespace: it
// prints its host identity and whether it could dial the parent's socket.
func TestNetnsChild(t *testing.T) {
	name := os.Getenv("LOCAL_NETNS_CHILD")
	if name == "" {
		t.Skip("runs as the child of TestHostIDPerNetworkNamespace")
	}
	os.Stdout.WriteString("HOSTID " + HostID() + "\n")
	if c, err := net.Dial("unix", name); err == nil {
		c.Close()
		os.Stdout.WriteString("DIAL ok\n")
	} else {
		os.Stdout.WriteString("DIAL " + err.Error() + "\n")
	}
}
