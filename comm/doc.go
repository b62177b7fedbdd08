// Package comm is the π-channel layer: persistent, named, one-way byte (or
// typed element) streams in shared spaces, served by the lookup and cache
// services of package comm/server.
//
// A process makes a [Client] with the servers' addresses, opens a [Space]
// by name (create-or-open, atomic under races), and in it creates channels
// ([Space.Create] returns a [Writer]) and attaches to them ([Space.Attach]
// returns a [Reader]). A writer never waits for its reader: its bytes go to
// the cache service and, while a reader is attached, straight to that
// reader too (the direct path). A reader that comes late, or restarts,
// reads what it missed from the cache, from any offset.
//
// Ordering and identity: two creates of one name make two instances, which
// Attach returns in creation order; an instance stays "unread" until some
// reader has read it to its end, and Attach returns the oldest unread one,
// so readers attaching at the same time share one instance (implicit
// multicast). AttachAny returns the oldest instance whatever its state, and
// AtInstance a given one. Reading never deletes.
//
// Durability: [Writer.Close] returns only when the whole payload is held by
// the cache service. A writer created with [WithWriterKey] can be resumed
// after a crash: creating with the same key returns the same instance, and
// bytes written again below the stored length are dropped, not duplicated.
//
// Typed channels: [CreateTyped] and [AttachTyped] carry fixed-size numeric
// elements, little-endian on the wire; the element type is fixed at
// creation and checked at attach ([ErrElemType]).
//
// Blocking calls take a context.Context; errors are the sentinels declared
// in this package, wrapped with context, and are documented per method.
// Buffers passed to Write may be reused as soon as it returns.
package comm
