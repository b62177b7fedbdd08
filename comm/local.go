package comm

import (
	"context"
	"net"

	"github.com/pispace/pispace/comm/internal/local"
)

// dialEndpoints connects to one of the comma-separated endpoints: the
// same-host Unix socket if there is one (see package local) and no
// Config.Dialer is set, TCP otherwise or when the Unix socket refuses.
// Connections made through a Config.Dialer always use TCP, so that a
// dialer injecting faults sees every connection.
func dialEndpoints(ctx context.Context, cfg Config, endpoints string) (net.Conn, error) {
	var d net.Dialer
	if cfg.Dialer == nil {
		if name, ok := local.Find(endpoints); ok {
			if nc, err := d.DialContext(ctx, "unix", name); err == nil {
				return nc, nil
			}
		}
	}
	addr := local.TCP(endpoints)
	if cfg.Dialer != nil {
		return cfg.Dialer(ctx, addr)
	}
	return d.DialContext(ctx, "tcp", addr)
}
