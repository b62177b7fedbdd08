package launcher

import (
	"errors"
	"log/slog"
	"net"
	"sync"

	"github.com/pispace/pispace/comm/server"
)

// commHost runs the node's comm server (lookup and cache services of the
// π-channel layer) on its own listener.
type commHost struct {
	srv  *server.Server
	wg   sync.WaitGroup
	once sync.Once
}

// hostComm starts the comm server on l, spilling to dir beyond mem bytes
// of cached payload (0: the server's default).
func hostComm(l net.Listener, dir string, mem int64, log *slog.Logger) (*commHost, error) {
	srv, err := server.New(server.Config{Dir: dir, MemoryBytes: mem, Logger: log})
	if err != nil {
		l.Close()
		return nil, err
	}
	h := &commHost{srv: srv}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, server.ErrServerClosed) {
			log.Warn("comm server stopped", "err", err)
		}
	}()
	return h, nil
}

// Close stops the comm server and waits for it; idempotent.
func (h *commHost) Close() error {
	h.once.Do(func() {
		h.srv.Close()
		h.wg.Wait()
	})
	return nil
}
