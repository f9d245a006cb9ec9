package rebuild

import "fmt"

// State is the state of a rebuild job.
type State int

// Job states. Completed, Failed and Stopped are final.
const (
	Running State = iota
	Paused
	Completed
	Failed
	Stopped
)

func (s State) String() string {
	switch s {
	case Running:
		return "running"
	case Paused:
		return "paused"
	case Completed:
		return "completed"
	case Failed:
		return "failed"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Final reports whether no further transition is possible.
func (s State) Final() bool { return s >= Completed }

// event is an input to the job state machine.
type event int

const (
	evPause event = iota
	evResume
	evStop
	evDone // all segments copied and the destination flushed
	evFail // a copy or flush failed
)

// step is the job state machine: a pure function of (state, event).
func step(s State, ev event) (State, error) {
	if s.Final() {
		return s, fmt.Errorf("%w: job is %s", ErrBadState, s)
	}
	switch ev {
	case evPause:
		if s == Running {
			return Paused, nil
		}
		return s, fmt.Errorf("%w: pause of a %s job", ErrBadState, s)
	case evResume:
		if s == Paused {
			return Running, nil
		}
		return s, fmt.Errorf("%w: resume of a %s job", ErrBadState, s)
	case evStop:
		return Stopped, nil
	case evDone:
		return Completed, nil
	case evFail:
		return Failed, nil
	}
	return s, fmt.Errorf("%w: unknown event %d", ErrBadState, ev)
}

// plan decides which segment a copy task takes next. It is not safe for
// concurrent use; Job guards it with its mutex.
type plan struct {
	pending  *Bitmap // segments still to copy; cleared when a copy finishes
	cursor   int64   // next index to consider
	inflight int     // segments handed out and not yet finished
}

// next hands out the next pending segment at or after the cursor, or -1
// when every segment has been handed out.
func (p *plan) next() int64 {
	i := p.pending.Next(p.cursor)
	if i < 0 {
		p.cursor = p.pending.Len()
		return -1
	}
	p.cursor = i + 1
	p.inflight++
	return i
}

// finish records that a handed-out segment is done.
func (p *plan) finish() { p.inflight-- }

// complete reports whether every segment was handed out and finished.
func (p *plan) complete() bool { return p.cursor >= p.pending.Len() && p.inflight == 0 }
