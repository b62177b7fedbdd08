package shm

import (
	"net"
	"syscall"
)

// UnixConn is what rings and arenas need of a Unix stream connection: a
// *net.UnixConn, or a connection over a descriptor of its own that reads
// and writes descriptors the same way (package fdconn).
type UnixConn interface {
	net.Conn
	syscall.Conn
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
	WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error)
}

var _ UnixConn = (*net.UnixConn)(nil)
