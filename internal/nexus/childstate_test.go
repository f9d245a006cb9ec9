package nexus

import (
	"errors"
	"testing"
)

func TestChildStateMachine(t *testing.T) {
	const (
		o   = ChildOpen
		rb  = ChildRebuilding
		f   = ChildFaulted
		of  = ChildOffline
		oos = ChildOutOfSync
		cl  = ChildClosed
	)
	faultActs := ActStartLog | ActDetach | ActPersist | ActCloseDevice
	tests := []struct {
		state   ChildState
		ev      Event
		last    bool
		want    ChildState
		acts    Action
		wantErr error
	}{
		// Healthy child failures.
		{o, EvIOError, false, f, faultActs, nil},
		{o, EvTimeout, false, f, faultActs, nil},
		{o, EvFault, false, f, faultActs, nil},
		{o, EvOffline, false, of, faultActs, nil},
		// The last healthy child is never lost.
		{o, EvIOError, true, o, 0, ErrLastHealthy},
		{o, EvTimeout, true, o, 0, ErrLastHealthy},
		{o, EvFault, true, o, 0, ErrLastHealthy},
		{o, EvOffline, true, o, 0, ErrLastHealthy},
		{o, EvRemove, true, o, 0, ErrLastHealthy},
		// Rebuilding child failures cancel the rebuild; no new log.
		{rb, EvIOError, false, f, ActCancelRebuild | ActDetach | ActCloseDevice, nil},
		{rb, EvTimeout, false, f, ActCancelRebuild | ActDetach | ActCloseDevice, nil},
		{rb, EvOffline, false, of, ActCancelRebuild | ActDetach | ActCloseDevice, nil},
		// Late completions on an absent child change nothing.
		{f, EvIOError, false, f, 0, nil},
		{of, EvTimeout, false, of, 0, nil},
		// Reclassification.
		{f, EvOffline, false, of, 0, nil},
		{of, EvFault, false, f, 0, nil},
		// Online.
		{f, EvOnline, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{of, EvOnline, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{o, EvOnline, false, o, 0, nil},
		{rb, EvOnline, false, rb, 0, nil},
		// Start rebuild: a child that needs one gets one; a healthy or
		// rebuilding child is refused (online is a no-op there).
		{oos, EvStartRebuild, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{f, EvStartRebuild, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{of, EvStartRebuild, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{o, EvStartRebuild, false, o, 0, ErrInvalidState},
		{o, EvStartRebuild, true, o, 0, ErrInvalidState},
		{rb, EvStartRebuild, false, rb, 0, ErrInvalidState},
		{cl, EvStartRebuild, false, cl, 0, ErrInvalidState},
		// Out of sync (added without rebuild): online also starts the
		// rebuild; it takes no I/O, so I/O events change nothing.
		{oos, EvOnline, false, rb, ActOpenDevice | ActAttachWriteOnly | ActStartRebuild, nil},
		{oos, EvIOError, false, oos, 0, nil},
		{oos, EvTimeout, false, oos, 0, nil},
		{oos, EvFault, false, f, ActPersist, nil},
		{oos, EvOffline, false, of, ActPersist, nil},
		{oos, EvRebuildDone, false, oos, 0, ErrInvalidState},
		{oos, EvRebuildFailed, false, oos, 0, nil},
		{oos, EvRebuildStopped, false, oos, 0, nil},
		{oos, EvRemove, false, cl, ActDetach | ActPersist | ActDropLog, nil},
		{oos, EvClose, false, cl, ActDetach, nil},
		// Rebuild outcomes.
		{rb, EvRebuildDone, false, o, ActDetach | ActPersist | ActDropLog | ActAttachHealthy, nil},
		{rb, EvRebuildFailed, false, f, ActDetach | ActCloseDevice, nil},
		{rb, EvRebuildStopped, false, f, ActDetach | ActCloseDevice, nil},
		{o, EvRebuildDone, false, o, 0, ErrInvalidState},
		{f, EvRebuildFailed, false, f, 0, nil},
		// Remove and close.
		{o, EvRemove, false, cl, ActDetach | ActPersist | ActDropLog | ActCloseDevice, nil},
		{rb, EvRemove, false, cl, ActCancelRebuild | ActDetach | ActPersist | ActDropLog | ActCloseDevice, nil},
		{f, EvRemove, false, cl, ActDetach | ActPersist | ActDropLog, nil},
		{o, EvClose, true, cl, ActDetach | ActCloseDevice, nil},
		{rb, EvClose, false, cl, ActCancelRebuild | ActDetach | ActCloseDevice, nil},
		{of, EvClose, false, cl, ActDetach, nil},
		// Closed is terminal.
		{cl, EvOnline, false, cl, 0, ErrInvalidState},
		{cl, EvIOError, false, cl, 0, ErrInvalidState},
	}
	for _, tc := range tests {
		out := Step(Input{State: tc.state, Event: tc.ev, LastHealthy: tc.last})
		name := tc.state.String() + "+" + tc.ev.String()
		if tc.wantErr != nil {
			if !errors.Is(out.Err, tc.wantErr) {
				t.Errorf("%s: err %v, want %v", name, out.Err, tc.wantErr)
			}
		} else if out.Err != nil {
			t.Errorf("%s: unexpected err %v", name, out.Err)
		}
		if out.State != tc.want || out.Actions != tc.acts {
			t.Errorf("%s (last=%v): got %s [%s], want %s [%s]", name, tc.last, out.State, out.Actions, tc.want, tc.acts)
		}
	}
}

// TestChildStateMachineTotal checks every (state, event) pair yields a
// known state and never panics, and that refusals have no actions.
func TestChildStateMachineTotal(t *testing.T) {
	for s := ChildOpen; s <= ChildClosed; s++ {
		for ev := EvIOError; ev <= EvClose; ev++ {
			for _, last := range []bool{false, true} {
				out := Step(Input{State: s, Event: ev, LastHealthy: last})
				if out.State < ChildOpen || out.State > ChildClosed {
					t.Errorf("%s+%s: bad state %d", s, ev, out.State)
				}
				if out.Err != nil && (out.Actions != 0 || out.State != s) {
					t.Errorf("%s+%s: refusal with effects", s, ev)
				}
				if out.State == ChildOpen && s != ChildOpen && out.Actions&ActPersist == 0 {
					t.Errorf("%s+%s: becomes healthy without persisting", s, ev)
				}
				if s == ChildOpen && out.State != ChildOpen && ev != EvClose && ev != EvRemove && out.Actions&ActPersist == 0 {
					t.Errorf("%s+%s: loses health without persisting", s, ev)
				}
			}
		}
	}
}
