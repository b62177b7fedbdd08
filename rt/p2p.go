package rt

import "context"

// Sendrecv sends send to dst with sendTag and receives into recv from src
// with recvTag (either may be AnySource/AnyTag), as one call. Since sends
// never wait for receivers it cannot deadlock on a cycle of ranks.
func Sendrecv[T Elem](ctx context.Context, c *Comm, send []T, dst, sendTag int, recv []T, src, recvTag int) (Status, error) {
	if err := Send(ctx, c, dst, sendTag, send); err != nil {
		return Status{}, err
	}
	return Recv(ctx, c, src, recvTag, recv)
}
