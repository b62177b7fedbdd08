package launcher

import "errors"

var (
	// ErrUsage is returned for a bad command line; Main exits 2.
	ErrUsage = errors.New("launcher: usage")
	// ErrFrameTooLarge is returned when a frame's length exceeds MaxFrame.
	ErrFrameTooLarge = errors.New("launcher: frame too large")
	// ErrProtocol is returned for malformed or unexpected protocol input.
	ErrProtocol = errors.New("launcher: protocol error")
	// ErrAuth is returned when a peer does not prove it holds the cluster key.
	ErrAuth = errors.New("launcher: authentication failed")
	// ErrNoKey is returned when joining an encrypted cluster without its key.
	ErrNoKey = errors.New("launcher: cluster is encrypted and this process has no key or the wrong key (give --key-file or PIRUN_KEY)")
	// ErrMetaTooLarge is returned when a node's metadata exceeds memberlist's 512 bytes.
	ErrMetaTooLarge = errors.New("launcher: node metadata exceeds 512 bytes (too many or too long labels)")
	// ErrClosed is returned by a closed Node or Servent.
	ErrClosed = errors.New("launcher: closed")
	// ErrJoin is returned when no seed of a cluster could be reached.
	ErrJoin = errors.New("launcher: cannot join cluster")
)
