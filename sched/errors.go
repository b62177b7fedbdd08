package sched

import "errors"

// StatusFailed is a job's exit status when it fails for a reason that no
// rank's own status describes.
const StatusFailed = 1

// Signal numbers the job sends (Linux values; sched does not import syscall).
const (
	SignalKill = 9
	SignalTerm = 15
)

var (
	// ErrBadConfig is returned by NewJob for an invalid JobConfig.
	ErrBadConfig = errors.New("sched: bad job config")
	// ErrJobDone is returned by Step after the job emitted Done.
	ErrJobDone = errors.New("sched: job done")
	// ErrUnknownEvent is returned by Step for an event type it does not know.
	ErrUnknownEvent = errors.New("sched: unknown event")
)
