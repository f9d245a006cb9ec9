package rebuild

import (
	"errors"
	"testing"
)

func TestJobStateMachine(t *testing.T) {
	tests := []struct {
		s    State
		ev   event
		want State
		err  bool
	}{
		{Running, evPause, Paused, false},
		{Paused, evPause, Paused, true},
		{Paused, evResume, Running, false},
		{Running, evResume, Running, true},
		{Running, evStop, Stopped, false},
		{Paused, evStop, Stopped, false},
		{Running, evDone, Completed, false},
		{Running, evFail, Failed, false},
		{Paused, evFail, Failed, false},
		{Completed, evStop, Completed, true},
		{Failed, evResume, Failed, true},
		{Stopped, evDone, Stopped, true},
	}
	for _, tc := range tests {
		got, err := step(tc.s, tc.ev)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%v + %d: got %v, %v; want %v, err=%v", tc.s, tc.ev, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadState) {
			t.Errorf("error %v does not wrap ErrBadState", err)
		}
	}
}

func TestPlanOrder(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		set  []int64
		want []int64
	}{
		{"full", 5, []int64{0, 1, 2, 3, 4}, []int64{0, 1, 2, 3, 4}},
		{"sparse", 200, []int64{3, 64, 65, 130, 199}, []int64{3, 64, 65, 130, 199}},
		{"empty", 100, nil, nil},
		{"last-word-edge", 129, []int64{128}, []int64{128}},
	}
	for _, tc := range tests {
		b := NewBitmap(tc.n)
		for _, i := range tc.set {
			b.Set(i)
		}
		p := plan{pending: b}
		var got []int64
		for i := p.next(); i >= 0; i = p.next() {
			got = append(got, i)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %v want %v", tc.name, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: got %v want %v", tc.name, got, tc.want)
			}
		}
		if p.complete() != (len(got) == 0) {
			t.Fatalf("%s: complete with %d in flight", tc.name, p.inflight)
		}
		for range got {
			p.finish()
		}
		if !p.complete() {
			t.Fatalf("%s: not complete", tc.name)
		}
	}
}

func TestBitmap(t *testing.T) {
	b := NewBitmap(130)
	if !b.Set(5) || b.Set(5) {
		t.Fatal("Set return")
	}
	b.Set(64)
	b.Set(129)
	if b.Count() != 3 || !b.Test(129) || b.Test(128) {
		t.Fatal("count/test")
	}
	if b.Next(6) != 64 || b.Next(65) != 129 || b.Next(130) != -1 {
		t.Fatal("next")
	}
	if !b.AllSet(5, 5) || b.AllSet(5, 6) {
		t.Fatal("allset")
	}
	c := b.Clone()
	b.Clear(5)
	if !c.Test(5) || b.Test(5) {
		t.Fatal("clone")
	}
	b.Or(c)
	if !b.Test(5) {
		t.Fatal("or")
	}
}
