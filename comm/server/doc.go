// Package server is the π-space node service: the lookup service (which
// channel instances exist, who writes and who waits) and the cache service
// (the payload bytes) behind one TCP listener.
//
// One driver goroutine owns every space's lookup state machine
// (package lookup): connection goroutines post events to it and it executes
// the actions the machines emit, sending replies to the sessions concerned.
// Payload bytes never pass through the driver: a writer's data frames are
// appended to the cache store (package cache) by the writer connection's own
// goroutine, and read streams send from the store to their connection (the
// bytes of immutable segments as they are, those of an open tail copied).
// The driver hears of appends (lookup.Appended) only while some read stream
// waits at the instance's end, which is the only time the lookup service
// needs them; the lengths it reports to clients are taken from the store.
//
// Each connection has one reader goroutine and one writer goroutine. The
// writer sends control frames (replies, errors) before data frames; control
// frames queue without blocking the driver and a client that lets more than
// a bound of them pile up is disconnected (slow consumer), while data frames
// are bounded in bytes and make their producing stream wait.
//
// A malformed or oversized frame, or a frame that breaks the protocol,
// closes that connection only, after an Error frame saying why; every other
// client keeps being served.
package server
