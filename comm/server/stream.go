package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pispace/pispace/comm/cache"
	"github.com/pispace/pispace/comm/internal/proto"
	"github.com/pispace/pispace/comm/lookup"
	"github.com/pispace/pispace/comm/wire"
)

// startStream serves a Read request on its own goroutine: data frames from
// the cache, waits at the current end (the lookup service wakes it), then
// an EOF frame.
func (ss *session) startStream(req uint32, m proto.Read) {
	ctx, cancel := context.WithCancel(context.Background())
	ss.mu.Lock()
	if _, dup := ss.streams[req]; dup {
		ss.mu.Unlock()
		cancel()
		ss.sendError(req, proto.CodeProtocol, fmt.Sprintf("request id %d already streaming", req))
		return
	}
	ss.streams[req] = cancel
	ss.mu.Unlock()
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer func() {
			ss.mu.Lock()
			delete(ss.streams, req)
			ss.mu.Unlock()
			cancel()
		}()
		if err := ss.stream(ctx, req, m); err != nil && ctx.Err() == nil {
			var pe *proto.Error
			if !errors.As(err, &pe) {
				pe = &proto.Error{Code: codeOf(err), Msg: err.Error()}
			}
			ss.endStream(ctx, req, proto.TError, pe)
		}
	}()
}

func (ss *session) closeStreams() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, cancel := range ss.streams {
		cancel()
	}
}

func (ss *session) stream(ctx context.Context, req uint32, m proto.Read) error {
	key := cache.Key{Space: m.Space, Instance: m.Instance}
	off := m.Offset
	if off < 0 {
		return &proto.Error{Code: proto.CodeProtocol, Msg: fmt.Sprintf("negative offset %d", off)}
	}
	frame := min(maxDataFrame, max(minDataFrame, ss.s.cfg.MaxPayload-1024))
	for ctx.Err() == nil {
		if m.Until > 0 && off >= m.Until {
			ss.endStream(ctx, req, proto.TEOF, &proto.EOF{Length: off, Sealed: false})
			return nil
		}
		body, release, err := ss.s.store.View(key, off, frame)
		if len(body) > 0 {
			ref := &dataRef{req, m.Space, m.Instance, off}
			if !ss.sendData(ctx, outFrame{body: body, release: release, data: ref}) {
				return nil
			}
			off += int64(len(body))
			continue
		}
		switch {
		case errors.Is(err, io.EOF):
			ss.endStream(ctx, req, proto.TEOF, &proto.EOF{Length: off, Sealed: true})
			return nil
		case err != nil && !errors.Is(err, cache.ErrOffset) && !errors.Is(err, cache.ErrNotFound):
			return err
		case !m.Follow:
			ss.endStream(ctx, req, proto.TEOF, &proto.EOF{Length: off, Sealed: false})
			return nil
		}
		w, err := ss.waitData(ctx, req, m, off)
		if err != nil {
			return err
		}
		if w.sealed && w.length <= off {
			if w.length < off {
				return &proto.Error{Code: proto.CodeGap, Msg: fmt.Sprintf("offset %d is past the sealed length %d", off, w.length)}
			}
			ss.endStream(ctx, req, proto.TEOF, &proto.EOF{Length: off, Sealed: true})
			return nil
		}
	}
	return nil
}

// finish gives a frame's body back to the store once it is written or
// dropped. Call it once.
func (f outFrame) finish() {
	if f.release != nil {
		f.release()
	}
}

// waitData parks the stream in the lookup service (reader ahead of writer)
// until the instance grows past off or is sealed.
func (ss *session) waitData(ctx context.Context, req uint32, m proto.Read, off int64) (wakeMsg, error) {
	key := cache.Key{Space: m.Space, Instance: m.Instance}
	ss.s.park(key, 1)
	defer ss.s.park(key, -1)
	if length, sealed, err := ss.s.store.Stat(key); err == nil && (length > off || sealed) {
		return wakeMsg{length: length, sealed: sealed}, nil // grew before it could be told
	}
	ch := make(chan wakeMsg, 1)
	ss.mu.Lock()
	ss.wakes[req] = ch
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		delete(ss.wakes, req)
		ss.mu.Unlock()
	}()
	ss.post(m.Space, req, lookup.ReaderWait{Req: lookup.ReqID(req), Session: ss.lid,
		Instance: lookup.InstanceID(m.Instance), Offset: off})
	select {
	case w := <-ch:
		return w, w.err
	case <-ctx.Done():
		return wakeMsg{}, ctx.Err()
	case <-ss.stop:
		return wakeMsg{}, context.Canceled
	}
}

// endStream sends a stream's last frame through the data queue, so it
// follows the stream's data instead of overtaking it as control frames do.
func (ss *session) endStream(ctx context.Context, req uint32, t wire.Type, m proto.Msg) {
	ss.sendData(ctx, outFrame{hdr: proto.AppendMsg(nil, t, req, m)})
}
