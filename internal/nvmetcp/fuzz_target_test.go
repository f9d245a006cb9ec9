package nvmetcp

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/blockdev"
	"github.com/kura-io/kura/internal/nvme"
)

// fuzzTarget is a target (not listening) with subsystem "f" and one
// enabled controller (cntlid 1) of testHost, so fuzz inputs can connect
// I/O queues.
var fuzzTarget = sync.OnceValue(func() *Target {
	dev, _ := blockdev.NewMalloc("f", 1<<20, 512)
	return newFuzzTarget(dev)
})

// newFuzzTarget builds the fuzz target over dev.
func newFuzzTarget(dev blockdev.Device) *Target {
	// A tiny buffer budget so inputs also exercise deferred R2Ts/reads.
	tg, _ := NewTarget(TargetConfig{Logger: quietLogger(), CntlIDMin: 1, CntlIDMax: 4, QueueBufferLimit: 2048})
	tg.AddSubsystem(SubsystemConfig{NQN: NQNFor("f"), Device: dev, AllowAnyHost: true})
	r := tg.connectLogic(ptr(connectSQE(0, 31, 0)), connectData(NQNFor("f"), testHost, 0xFFFF), func(*controller) bool { return true })
	r.ctrl.mu.Lock()
	r.ctrl.setCC(0x00460001)
	r.ctrl.mu.Unlock()
	return tg
}

// runConn feeds b to a target queue over an in-memory pipe and checks that
// the queue ends (no hang) once the host side closes.
func runConn(t *testing.T, tg *Target, b []byte) {
	host, ctrl := net.Pipe()
	q := newQueue(tg, ctrl)
	done := make(chan struct{})
	go func() { q.serve(); close(done) }()
	go io.Copy(io.Discard, host)
	host.SetWriteDeadline(time.Now().Add(2 * time.Second))
	host.Write(b)
	host.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("target queue did not finish after the host closed")
	}
}

func fuzzSeeds() [][]byte {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	e := NewEncoder(w)
	cd := connectData(NQNFor("f"), testHost, 1)
	conn := connectSQE(1, 15, 0)
	e.WriteICReq(ICReq{})
	e.WriteCapsuleCmd(&conn, cd)
	wr := nvme.SQE{Opcode: nvme.IOWrite, Flags: 0x40, CID: 1, NSID: 1, SGL: nvme.SGL{ID: 1, Length: 1024}}
	wr.SetLBA(0, 2)
	e.WriteCapsuleCmd(&wr, make([]byte, 1024))
	rd := nvme.SQE{Opcode: nvme.IORead, Flags: 0x40, CID: 2, NSID: 1, SGL: nvme.SGL{ID: 0x5A, Length: 1024}}
	rd.SetLBA(0, 2)
	e.WriteCapsuleCmd(&rd, nil)
	big := nvme.SQE{Opcode: nvme.IOWrite, Flags: 0x40, CID: 3, NSID: 1, SGL: nvme.SGL{ID: 0x5A, Length: 4096}}
	big.SetLBA(8, 8)
	e.WriteCapsuleCmd(&big, nil)
	e.WriteH2CData(3, 0, 0, make([]byte, 4096), true)
	dsm := nvme.SQE{Opcode: nvme.IODSM, Flags: 0x40, CID: 4, NSID: 1, CDW11: 4, SGL: nvme.SGL{ID: 1, Length: 16}}
	e.WriteCapsuleCmd(&dsm, []byte{0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.IOFlush, Flags: 0x40, CID: 5, NSID: 1, SGL: nvme.SGL{ID: 0x5A}}, nil)
	w.Flush()
	io := append([]byte(nil), out.Bytes()...)

	out.Reset()
	e.WriteICReq(ICReq{Digest: 3})
	e.HDgst, e.DDgst = true, true
	adm := connectSQE(0, 31, 0)
	e.WriteCapsuleCmd(&adm, connectData(NQNFor("f"), testHost, 0xFFFF))
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: 0x40, CID: 1, NSID: 0, CDW11: 0x14, CDW12: 0x00460001, SGL: nvme.SGL{ID: 0x5A}}, nil)
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.AdminIdentify, Flags: 0x40, CID: 2, CDW10: 1, SGL: nvme.SGL{ID: 0x5A, Length: 4096}}, nil)
	e.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.AdminAsyncEvent, Flags: 0x40, CID: 31, SGL: nvme.SGL{ID: 0x5A}}, nil)
	w.Flush()
	return [][]byte{io, append([]byte(nil), out.Bytes()...), linuxICReq()}
}

// FuzzTargetConn feeds arbitrary byte streams to a target connection: the
// target must never panic and must finish once the host goes away.
func FuzzTargetConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		runConn(t, fuzzTarget(), b)
	})
}

// FuzzTargetConnAsync is FuzzTargetConn against a namespace on an
// asynchronous device (blockdev.Async) that refuses some starts, fails a
// range and completes batches out of order on its own goroutine, so the
// asynchronous Read/Write path and its teardown are fuzzed too.
func FuzzTargetConnAsync(f *testing.F) {
	dev := newFakeAsync(f, 1<<20, 512)
	dev.refuseEvery = 5
	dev.badOff, dev.badEnd = 64<<10, 96<<10
	tg := newFuzzTarget(dev)
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		runConn(t, tg, b)
	})
}
