package comm_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/pispace/pispace/comm"
	"github.com/pispace/pispace/comm/server"
)

// A writer writes and closes a channel before any reader exists; a reader
// that comes later reads it all from the space's cache.
func Example() {
	ctx := context.Background()
	srv, _ := server.New(server.Config{})
	defer srv.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)

	writer, _ := comm.New(comm.Config{Servers: []string{l.Addr().String()}})
	defer writer.Close()
	s, _ := writer.OpenSpace(ctx, "example")
	w, _ := s.Create(ctx, "greeting")
	w.Write([]byte("hello, late reader"))
	w.Close(ctx) // returns once the cache holds every byte

	reader, _ := comm.New(comm.Config{Servers: []string{l.Addr().String()}})
	defer reader.Close()
	s2, _ := reader.OpenSpace(ctx, "example")
	r, _ := s2.Attach(ctx, "greeting")
	b, _ := io.ReadAll(r)
	fmt.Println(string(b))
	// Output: hello, late reader
}

// Typed channels carry fixed-size numbers; the element type is checked
// when a reader attaches.
func Example_typed() {
	ctx := context.Background()
	srv, _ := server.New(server.Config{})
	defer srv.Close()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(l)
	c, _ := comm.New(comm.Config{Servers: []string{l.Addr().String()}})
	defer c.Close()
	s, _ := c.OpenSpace(ctx, "typed")

	w, _ := comm.CreateTyped[float64](ctx, s, "temperatures")
	w.Write([]float64{21.5, 22.0, 22.75})
	w.Close(ctx)

	_, err := comm.AttachTyped[int32](ctx, s, "temperatures")
	fmt.Println(err != nil)
	r, _ := comm.AttachTyped[float64](ctx, s, "temperatures")
	vals := make([]float64, 3)
	r.ReadFull(ctx, vals)
	fmt.Println(vals)
	// Output:
	// true
	// [21.5 22 22.75]
}
