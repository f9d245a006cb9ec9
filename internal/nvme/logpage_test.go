package nvme

import (
	"bytes"
	"reflect"
	"testing"
)

func TestANALogRoundTrip(t *testing.T) {
	groups := []ANAGroup{
		{GroupID: 1, ChgCnt: 7, State: ANAOptimized, NSIDs: []uint32{1, 2}},
		{GroupID: 9, ChgCnt: 8, State: ANAInaccessible, NSIDs: []uint32{}},
	}
	chg, got, err := UnmarshalANALog(MarshalANALog(42, groups, false))
	if err != nil || chg != 42 || !reflect.DeepEqual(got, groups) {
		t.Fatalf("round trip: %d %+v %v", chg, got, err)
	}
	// RGO: groups without their namespace lists.
	_, got, err = UnmarshalANALog(MarshalANALog(1, groups, true))
	if err != nil || len(got) != 2 || len(got[0].NSIDs) != 0 || got[1].State != ANAInaccessible {
		t.Fatalf("groups only: %+v %v", got, err)
	}
	// A window larger than the page (the host reads 4 KiB) is zero-padded.
	page := append(MarshalANALog(3, groups[:1], false), make([]byte, 4000)...)
	if _, got, err = UnmarshalANALog(page); err != nil || len(got) != 1 {
		t.Fatalf("padded: %+v %v", got, err)
	}
}

func TestANALogBounds(t *testing.T) {
	ok := MarshalANALog(1, []ANAGroup{{GroupID: 1, State: ANAOptimized, NSIDs: []uint32{1}}}, false)
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"short header", ok[:15]},
		{"group truncated", ok[:40]},
		{"nsid list truncated", ok[:len(ok)-1]},
		{"group count lies", func() []byte { b := bytes.Clone(ok); b[8] = 0xFF; return b }()},
		{"nsid count lies", func() []byte { b := bytes.Clone(ok); b[16+4], b[16+7] = 0xFF, 0xFF; return b }()},
	} {
		if _, _, err := UnmarshalANALog(c.b); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
}

func TestResvNoticeRoundTrip(t *testing.T) {
	n := ResvNotice{Count: 1 << 40, Type: ResvNoticePreempted, Available: 3, NSID: 1}
	b := n.Marshal()
	if len(b) != ResvNoticeLen {
		t.Fatalf("page %d bytes", len(b))
	}
	got, err := UnmarshalResvNotice(b)
	if err != nil || got != n {
		t.Fatalf("round trip %+v %v", got, err)
	}
	if _, err := UnmarshalResvNotice(b[:15]); err == nil {
		t.Fatal("short page accepted")
	}
}

// FuzzUnmarshalANALog: any page decodes or fails cleanly, allocating no
// more than the page could describe, and a decoded page encodes back to
// its own prefix.
func FuzzUnmarshalANALog(f *testing.F) {
	f.Add(MarshalANALog(5, []ANAGroup{{GroupID: 1, ChgCnt: 5, State: ANAOptimized, NSIDs: []uint32{1}}}, false))
	f.Add(MarshalANALog(0, nil, false))
	f.Add(make([]byte, 15))
	f.Fuzz(func(t *testing.T, b []byte) {
		chg, groups, err := UnmarshalANALog(b)
		if err != nil {
			return
		}
		nsids := 0
		for _, g := range groups {
			nsids += len(g.NSIDs)
		}
		if 16+32*len(groups)+4*nsids > len(b) {
			t.Fatalf("decoded %d groups, %d NSIDs from %d bytes", len(groups), nsids, len(b))
		}
		for i := range groups {
			groups[i].State &= 0xF
		}
		re := MarshalANALog(chg, groups, false)
		_, again, err := UnmarshalANALog(re)
		if err != nil || !reflect.DeepEqual(again, groups) {
			t.Fatalf("re-encoded page decodes to %+v, %v; want %+v", again, err, groups)
		}
	})
}
