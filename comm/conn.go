package comm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/wire"
)

// conn is one client connection to a server (or, on the direct path, to a
// writer). Reads are done by exactly one goroutine at a time (its owner);
// writes are serialised by wmu.
type conn struct {
	c   net.Conn
	r   *wire.Reader
	wmu sync.Mutex
	req uint32 // last request id used; owner-only
}

// dialConn connects to addr and performs the hello handshake.
func dialConn(ctx context.Context, d Dialer, addr string, maxPayload int) (*conn, error) {
	nc, err := d(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("comm: dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &conn{c: nc, r: wire.NewReader(nc, maxPayload+1024)}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	f, err := c.call(proto.THello, &proto.Hello{Magic: proto.Magic, Version: proto.Version, Peer: "comm client"})
	if err == nil && f.Type != proto.TOK {
		err = fmt.Errorf("%w: unexpected hello reply type %d", ErrProtocol, f.Type)
	}
	if err != nil {
		nc.Close()
		return nil, ctxErr(ctx, fmt.Errorf("comm: handshake with %s: %w", addr, err))
	}
	return c, nil
}

// send writes one message frame with a fresh request id and returns it.
func (c *conn) send(t wire.Type, m proto.Msg) (uint32, error) {
	c.req++
	if c.req == 0 {
		c.req = 1
	}
	req := c.req
	b := proto.AppendMsg(nil, t, req, m)
	c.wmu.Lock()
	_, err := c.c.Write(b)
	c.wmu.Unlock()
	return req, err
}

// sendReq writes a frame carrying the given request id (a cancel, say).
func (c *conn) sendReq(t wire.Type, req uint32, m proto.Msg) error {
	b := proto.AppendMsg(nil, t, req, m)
	c.wmu.Lock()
	_, err := c.c.Write(b)
	c.wmu.Unlock()
	return err
}

// call sends a request and reads frames until the one answering it. An
// Error reply is returned as an error.
func (c *conn) call(t wire.Type, m proto.Msg) (wire.Frame, error) {
	req, err := c.send(t, m)
	if err != nil {
		return wire.Frame{}, err
	}
	return c.await(req)
}

// await reads frames until one answers req, skipping stale ones.
func (c *conn) await(req uint32) (wire.Frame, error) {
	for {
		f, err := c.r.Next()
		if err != nil {
			return f, err
		}
		if f.Req != req && f.Req != 0 {
			continue // a late answer to a request given up on
		}
		if f.Type == proto.TError {
			return f, decodeError(f)
		}
		return f, nil
	}
}

func decodeError(f wire.Frame) error {
	var e proto.Error
	if err := proto.Unmarshal(f.Payload, &e); err != nil {
		return fmt.Errorf("%w: undecodable error frame: %v", ErrProtocol, err)
	}
	return remoteError(&e)
}

// callInfo performs a request answered by an Info frame. Cancelling ctx
// sends a Cancel for the request (for blocking attaches) and unblocks the
// read; the connection is then unusable and the caller must drop it.
func (c *conn) callInfo(ctx context.Context, t wire.Type, m proto.Msg) (*proto.Info, error) {
	req, err := c.send(t, m)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() {
		c.sendReq(proto.TCancel, 0, &proto.Cancel{Req: uint64(req)})
		c.c.SetReadDeadline(time.Now().Add(time.Second))
	})
	defer stop()
	f, err := c.await(req)
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if f.Type != proto.TInfo {
		return nil, fmt.Errorf("%w: reply type %d, want info", ErrProtocol, f.Type)
	}
	var info proto.Info
	if err := proto.Unmarshal(f.Payload, &info); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return &info, nil
}

func (c *conn) close() error { return c.c.Close() }

// ctxErr prefers the context's error when the context ended, so callers see
// context.Canceled or DeadlineExceeded rather than an I/O timeout.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errCanceled) {
		return context.Canceled
	}
	return err
}

// Dialer opens a connection to addr. Tests inject one to put a faulty
// network between parties.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

func defaultDialer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
