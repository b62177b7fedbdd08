package local

import (
	"net"
	"strings"
	"testing"
)

func TestHostID(t *testing.T) {
	h := HostID()
	if h == "" {
		t.Skip("no /proc here: no host identity")
	}
	if strings.ContainsAny(h, ",:") {
		t.Fatalf("host id %q holds an endpoint separator", h)
	}
}

func TestFindAndTCP(t *testing.T) {
	h := HostID()
	if h == "" {
		t.Skip("no host identity")
	}
	cases := []struct {
		eps   string
		name  string
		found bool
		tcp   string
	}{
		{"127.0.0.1:1", "", false, "127.0.0.1:1"},
		{"127.0.0.1:1,unix:" + h + ":@a", "@a", true, "127.0.0.1:1"},
		{"unix:" + h + ":@a,10.0.0.1:2", "@a", true, "10.0.0.1:2"},
		{"127.0.0.1:1,unix:elsewhere.4026531840:@a", "", false, "127.0.0.1:1"},
		{"unix:elsewhere:@b,unix:" + h + ":@c,h:3", "@c", true, "h:3"},
		{"unix:" + h, "", false, ""}, // no name
		{"", "", false, ""},
	}
	for _, c := range cases {
		name, ok := Find(c.eps)
		if name != c.name || ok != c.found {
			t.Errorf("Find(%q) = %q, %v; want %q, %v", c.eps, name, ok, c.name, c.found)
		}
		if got := TCP(c.eps); got != c.tcp {
			t.Errorf("TCP(%q) = %q, want %q", c.eps, got, c.tcp)
		}
	}
}

// TestListenAndDial: the endpoint Listen returns is found on this host
// and reachable.
func TestListenAndDial(t *testing.T) {
	if HostID() == "" {
		t.Skip("no host identity")
	}
	l, ep, err := Listen("test")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	name, ok := Find("127.0.0.1:9," + ep)
	if !ok {
		t.Fatalf("endpoint %q not found as local", ep)
	}
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := net.Dial("unix", name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}
