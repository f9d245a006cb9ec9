package nexus

import "fmt"

// ChildState is the state of one child.
type ChildState int

// Child states.
const (
	// ChildOpen: healthy and in sync; serves reads and writes.
	ChildOpen ChildState = iota
	// ChildRebuilding: open but out of sync (degraded-rebuilding); a
	// rebuild copies onto it and it receives writes, never reads.
	ChildRebuilding
	// ChildFaulted: failed (see Reason); device closed, writes are logged.
	ChildFaulted
	// ChildOffline: taken offline by request; device closed, writes logged.
	ChildOffline
	// ChildOutOfSync: added without a rebuild (AddChildNoRebuild). It holds
	// no trusted data, takes no reads and no writes (so nothing is logged
	// for it either) and its device stays closed until StartRebuild (or
	// OnlineChild) starts a full rebuild.
	ChildOutOfSync
	// ChildClosed: removed or the nexus shut down.
	ChildClosed
)

func (s ChildState) String() string {
	switch s {
	case ChildOpen:
		return "open"
	case ChildRebuilding:
		return "degraded-rebuilding"
	case ChildFaulted:
		return "faulted"
	case ChildOffline:
		return "offline"
	case ChildOutOfSync:
		return "out-of-sync"
	case ChildClosed:
		return "closed"
	}
	return fmt.Sprintf("ChildState(%d)", int(s))
}

// Healthy reports whether the state serves reads.
func (s ChildState) Healthy() bool { return s == ChildOpen }

// Event is an input to the child state machine.
type Event int

// Events.
const (
	EvIOError        Event = iota // a child I/O failed
	EvTimeout                     // a child I/O timed out
	EvFault                       // admin: fault the child
	EvOffline                     // admin: take offline
	EvOnline                      // admin: bring back (reopen + rebuild)
	EvStartRebuild                // admin: start the rebuild of a child that needs one
	EvRebuildDone                 // rebuild completed
	EvRebuildFailed               // rebuild failed
	EvRebuildStopped              // rebuild stopped by request
	EvRemove                      // admin: remove from the nexus
	EvClose                       // nexus shutdown
)

var eventNames = [...]string{"io-error", "timeout", "fault", "offline", "online", "start-rebuild",
	"rebuild-done", "rebuild-failed", "rebuild-stopped", "remove", "close"}

func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// Action is a side effect the shell must perform, in the order of the
// constants below.
type Action uint16

// Actions, performed in ascending bit order by the nexus.
const (
	ActCancelRebuild   Action = 1 << iota // stop the running rebuild job
	ActStartLog                           // start a dirty-segment log
	ActDetach                             // remove from the I/O snapshot
	ActPersist                            // store NexusInfo (before acking I/O)
	ActCloseDevice                        // close the child's device
	ActDropLog                            // delete the dirty-segment log
	ActOpenDevice                         // open the device via the Opener
	ActAttachWriteOnly                    // add to the snapshot as a rebuild target
	ActStartRebuild                       // start a (partial if logged) rebuild
	ActAttachHealthy                      // add to the snapshot as healthy
)

var actionNames = [...]string{"cancel-rebuild", "start-log", "detach", "persist",
	"close-device", "drop-log", "open-device", "attach-write-only", "start-rebuild", "attach-healthy"}

func (a Action) String() string {
	if a == 0 {
		return "none"
	}
	s := ""
	for i, n := range actionNames {
		if a&(1<<i) != 0 {
			if s != "" {
				s += ","
			}
			s += n
		}
	}
	return s
}

// Input is what the state machine decides on.
type Input struct {
	State       ChildState
	Event       Event
	LastHealthy bool // the child is the only healthy child
}

// Output is the decision.
type Output struct {
	State   ChildState
	Actions Action
	Err     error // request refused; State is unchanged and Actions empty
}

// Step is the child state machine: a pure function of its input.
func Step(in Input) Output {
	s := in.State
	refuse := func(err error) Output { return Output{State: s, Err: err} }
	same := Output{State: s}
	if s == ChildClosed {
		return refuse(fmt.Errorf("%w: child is closed", ErrInvalidState))
	}
	switch in.Event {
	case EvIOError, EvTimeout, EvFault, EvOffline:
		next := ChildFaulted
		if in.Event == EvOffline {
			next = ChildOffline
		}
		switch s {
		case ChildOpen:
			if in.LastHealthy {
				return refuse(ErrLastHealthy)
			}
			return Output{State: next, Actions: ActStartLog | ActDetach | ActPersist | ActCloseDevice}
		case ChildRebuilding:
			return Output{State: next, Actions: ActCancelRebuild | ActDetach | ActCloseDevice}
		case ChildFaulted, ChildOffline:
			if in.Event == EvOffline || in.Event == EvFault {
				return Output{State: next} // reclassify only
			}
			return same // late completion of an abandoned I/O
		case ChildOutOfSync:
			if in.Event == EvOffline || in.Event == EvFault {
				// Still unhealthy, but no longer recorded out of sync.
				return Output{State: next, Actions: ActPersist}
			}
			return same // it takes no I/O: nothing can fail
		}
	case EvOnline, EvStartRebuild:
		switch s {
		case ChildFaulted, ChildOffline, ChildOutOfSync:
			return Output{State: ChildRebuilding, Actions: ActOpenDevice | ActAttachWriteOnly | ActStartRebuild}
		}
		if in.Event == EvOnline {
			return same
		}
		if s == ChildRebuilding {
			return refuse(fmt.Errorf("%w: a rebuild is already running", ErrInvalidState))
		}
		return refuse(fmt.Errorf("%w: child is healthy (in sync), nothing to rebuild", ErrInvalidState))
	case EvRebuildDone:
		if s == ChildRebuilding {
			return Output{State: ChildOpen, Actions: ActDetach | ActAttachHealthy | ActPersist | ActDropLog}
		}
		return refuse(fmt.Errorf("%w: rebuild done for a %s child", ErrInvalidState, s))
	case EvRebuildFailed, EvRebuildStopped:
		if s == ChildRebuilding {
			return Output{State: ChildFaulted, Actions: ActDetach | ActCloseDevice}
		}
		return same
	case EvRemove:
		if s == ChildOpen && in.LastHealthy {
			return refuse(ErrLastHealthy)
		}
		a := ActDetach | ActPersist | ActDropLog
		if s == ChildRebuilding {
			a |= ActCancelRebuild
		}
		if s == ChildOpen || s == ChildRebuilding {
			a |= ActCloseDevice
		}
		return Output{State: ChildClosed, Actions: a}
	case EvClose:
		a := ActDetach
		if s == ChildRebuilding {
			a |= ActCancelRebuild
		}
		if s == ChildOpen || s == ChildRebuilding {
			a |= ActCloseDevice
		}
		return Output{State: ChildClosed, Actions: a}
	}
	return refuse(fmt.Errorf("%w: unknown event %v", ErrInvalidState, in.Event))
}
