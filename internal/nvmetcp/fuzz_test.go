package nvmetcp

import (
	"bufio"
	"bytes"
	"testing"
)

// decodeAll decodes PDUs from b until the first error, reading data into a
// buffer bounded by the limits. It must never panic nor allocate more than
// the limits allow.
func decodeAll(b []byte, fromHost, hd, dd bool) int {
	d := NewDecoder(bufio.NewReader(bytes.NewReader(b)), fromHost, Limits{MaxICD: 8192, MaxH2CData: 8192, MaxC2HData: 8192})
	d.HDgst, d.DDgst = hd, dd
	buf := make([]byte, 8192)
	n := 0
	for {
		h, err := d.Next()
		if err != nil {
			_ = d.Raw() // what a TermReq would echo: must stay in bounds
			return n
		}
		if d.DataLen() > 8192 {
			panic("data length beyond limit")
		}
		switch h.Type {
		case TypeICReq:
			_ = d.ICReq()
		case TypeICResp:
			_ = d.ICResp()
		case TypeH2CData, TypeC2HData:
			_ = d.Data()
		case TypeR2T:
			_ = d.R2T()
		}
		if err := d.ReadData(buf[:d.DataLen()]); err != nil && d.DataLen() > 0 {
			return n
		}
		n++
	}
}

func FuzzDecodePDU(f *testing.F) {
	f.Add(linuxICReq(), byte(0))
	f.Add(linuxConnect("nqn.2019-05.io.kura:v", "nqn.2014-08.org.nvmexpress:uuid:h"), byte(0))
	f.Add(append(linuxICReq(), linuxConnect("nqn.2019-05.io.kura:v", "h")...), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, mode byte) {
		decodeAll(b, mode&1 == 0, mode&2 != 0, mode&4 != 0)
	})
}

// FuzzDecodeC2H fuzzes the host side (what an initiator decodes).
func FuzzDecodeC2H(f *testing.F) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	e := NewEncoder(w)
	e.WriteICResp(ICResp{MaxH2CData: 131072})
	e.WriteC2HData(1, 0, make([]byte, 4096), true, false)
	e.WriteR2T(R2T{CCCID: 2, R2TL: 8192})
	e.WriteTermReq(true, FESInvalidHeader, 0, make([]byte, 24))
	w.Flush()
	f.Add(out.Bytes(), byte(0))
	f.Fuzz(func(t *testing.T, b []byte, mode byte) {
		decodeAll(b, false, mode&2 != 0, mode&4 != 0)
	})
}
