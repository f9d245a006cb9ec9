package nbd

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestAsyncStalledClient: a client that pipelines reads and never reads the
// replies must not stall another connection on the same uring device (the
// device's reaping goroutine must never wait for a socket).
// It runs on the device's shared ring and in ring mode (per-connection
// queues).
func TestAsyncStalledClient(t *testing.T) {
	for _, noQueues := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "queues"}[noQueues], func(t *testing.T) {
			testAsyncStalledClient(t, Config{NoQueues: noQueues})
		})
	}
}

func testAsyncStalledClient(t *testing.T, cfg Config) {
	const size = 64 << 20
	s := startUringServer(t, size, cfg)

	// Client A: 32 MiB of large READ replies (the writev path) it never
	// reads, far more than the loopback socket buffers hold.
	a := dial(t, s.Addr(), "disk", false)
	const big = 256 << 10
	for i := 0; i < numSlots; i++ {
		a.send(0, cmdRead, uint64(i%(size/big))*big, big, nil)
	}
	// Client A2: 64 MiB of 4 KiB READ replies, which the device's reaper
	// writes itself while the socket takes them (replyDirect); its requests
	// are written from a goroutine because the server stops reading them
	// once every slot waits for the stalled socket.
	a2 := dial(t, s.Addr(), "disk", false)
	const small, nsmall = 4096, 16384
	reqs := make([]byte, 0, nsmall*requestHeaderLen)
	for i := 0; i < nsmall; i++ {
		var h [requestHeaderLen]byte
		binary.BigEndian.PutUint32(h[0:], magicRequest)
		binary.BigEndian.PutUint16(h[6:], cmdRead)
		binary.BigEndian.PutUint64(h[8:], uint64(i+1))
		binary.BigEndian.PutUint64(h[16:], uint64(i%(size/small))*small)
		binary.BigEndian.PutUint32(h[24:], small)
		reqs = append(reqs, h[:]...)
	}
	go func() { _, _ = a2.nc.Write(reqs) }() // ends with an error when the test closes a2
	time.Sleep(300 * time.Millisecond)       // let the server fill A's and A2's sockets
	t.Logf("direct reply batches %d, %d of them short", s.directWrites.Load(), s.directShort.Load())
	if s.directWrites.Load() == 0 {
		t.Errorf("client A2's replies never took the direct path")
	}

	// Client B on the same device: QD1 and pipelined reads must complete.
	b := dial(t, s.Addr(), "disk", false)
	_ = b.nc.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for i := 0; i < 20; i++ {
		b.qd1(t, cmdRead, uint64(i)*4096, nil, buf)
	}
	for i := 0; i < 64; i++ {
		b.send(0, cmdRead, uint64(i)*4096, 4096, nil)
	}
	for i := 0; i < 64; i++ {
		if _, code, err := b.recv(func(uint64) (uint32, uint64) { return 4096, 0 }, buf); err != nil || code != 0 {
			t.Fatalf("client B reply %d: %v code %d (stalled behind client A?)", i, err, code)
		}
	}
}
