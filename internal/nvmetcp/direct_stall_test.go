package nvmetcp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// stalledHost is a hand-driven I/O queue connection with both digests and
// SQ flow control on, whose socket receive buffer is small so that the
// target's socket fills up quickly once it stops reading.
type stalledHost struct {
	c   net.Conn
	dec *Decoder
	enc *Encoder
	w   *bufio.Writer
	out bytes.Buffer
}

// dialStalledHost connects I/O queue qid of controller cntlid.
func dialStalledHost(t *testing.T, tg *Target, cfg *Config, cntlid, qid, sqsize uint16) *stalledHost {
	t.Helper()
	dl := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := dl.Dial("tcp", tg.Addr().String())
	must(t, err)
	t.Cleanup(func() { c.Close() })
	must(t, c.SetDeadline(time.Now().Add(30*time.Second)))
	h := &stalledHost{c: c, dec: NewDecoder(bufio.NewReaderSize(c, 64<<10), false, Limits{MaxC2HData: 1 << 20})}
	h.w = bufio.NewWriter(&h.out)
	h.enc = NewEncoder(h.w)
	icreq := linuxICReq()
	icreq[11] = DigestHeader | DigestData
	h.send(t, icreq)
	if hd, err := h.dec.Next(); err != nil || hd.Type != TypeICResp || h.dec.ICResp().Digest != DigestHeader|DigestData {
		t.Fatalf("ICResp: %v %+v", err, hd)
	}
	h.dec.HDgst, h.dec.DDgst = true, true
	h.enc.HDgst, h.enc.DDgst = true, true
	data := make([]byte, nvme.ConnectDataSize)
	cd := nvme.ConnectData{HostID: cfg.HostID, CNTLID: cntlid, SubNQN: cfg.SubNQN, HostNQN: cfg.HostNQN}
	cd.Marshal(data)
	must(t, h.enc.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.OpcodeFabrics, Flags: nvme.SQEFlagsPSDTSGL,
		NSID: uint32(nvme.FabricsConnect), CDW10: uint32(qid) << 16, CDW11: uint32(sqsize),
		SGL: nvme.SGL{ID: nvme.SGLDataBlockOffset, Length: uint32(len(data))}}, data))
	h.send(t, h.flush(t))
	var cqe nvme.CQE
	if hd, err := h.dec.Next(); err != nil || hd.Type != TypeCapsuleRsp {
		t.Fatalf("connect response: %v %+v", err, hd)
	}
	if h.dec.CQE(&cqe); !cqe.Status.OK() {
		t.Fatalf("connect qid %d: %v", qid, cqe.Status)
	}
	return h
}

func (h *stalledHost) flush(t *testing.T) []byte {
	must(t, h.w.Flush())
	b := bytes.Clone(h.out.Bytes())
	h.out.Reset()
	return b
}

func (h *stalledHost) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := h.c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// readCmd encodes a read of one 4 KiB block.
func (h *stalledHost) readCmd(t *testing.T, cid uint16, lba uint64) {
	must(t, h.enc.WriteCapsuleCmd(&nvme.SQE{Opcode: nvme.IORead, Flags: nvme.SQEFlagsPSDTSGL, CID: cid, NSID: 1,
		CDW10: uint32(lba), CDW11: uint32(lba >> 32), SGL: nvme.SGL{ID: nvme.SGLTransportDataBlk, Length: 4096}}, nil))
}

// TestDirectStalledHost: a host that stops reading its socket while 4 KiB
// read completions keep coming fills the socket, so the reaper's direct
// write comes up short and leaves a pending tail. Another host on the same
// device must still be served meanwhile (the reaper never waits for a
// socket), and once the stalled host reads again it gets every response,
// digests and data intact.
func TestDirectStalledHost(t *testing.T) {
	for _, dv := range directDevices() {
		t.Run(dv.name, func(t *testing.T) { testDirectStalledHost(t, dv) })
	}
}

func testDirectStalledHost(t *testing.T, dv directDevice) {
	const size = 16 << 20
	const blocks = size / 4096
	dev := dv.open(t, size, true)
	tg := startTarget(t, TargetConfig{})
	nqn := NQNFor("stall")
	must(t, tg.AddSubsystem(SubsystemConfig{NQN: nqn, Device: dev, AllowAnyHost: true}))

	// Host A: admin queue by the initiator's steps, then a raw I/O queue
	// that sends 4 KiB reads (lower half) and reads nothing.
	ctx := context.Background()
	cfg := Config{Addr: tg.Addr().String(), SubNQN: nqn, HostNQN: testHost}
	must(t, cfg.setDefaults())
	admin, err := dialQueue(ctx, &cfg, 0, 32)
	must(t, err)
	defer admin.close()
	cntlid, err := fabricsConnect(admin, &cfg, 0, 31, 0, 0xFFFF, false)
	must(t, err)
	must(t, enableController(admin))
	must(t, adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: uint32(nvme.FeatNumQueues)}, nil))
	const sqsize = 1023 // up to 1024 reads: 4 MiB of responses
	a := dialStalledHost(t, tg, &cfg, cntlid, 1, sqsize)
	qa := targetQueue(t, tg, cntlid, 1)
	// Fill the socket after some hundred KiB, not after whatever the
	// kernel's send buffer autotuning allows (4 MiB here).
	must(t, qa.conn.(*net.TCPConn).SetWriteBuffer(128<<10))
	lbaOf := func(cid uint16) uint64 { return uint64(cid) * 7 % (blocks / 2) }
	for cid := uint16(0); cid <= sqsize; cid++ {
		a.readCmd(t, cid, lbaOf(cid))
	}
	stream := a.flush(t)
	pdu := len(stream) / (sqsize + 1)
	// Send 16 reads at a time, cut 10 bytes into the next PDU: the target
	// then never runs the last one inline (more bytes are buffered), so
	// only the device's reaper writes (directly, in small batches) until
	// the socket is full. Wait for each chunk to be answered.
	sent, chunks := 0, 0
	for sent < len(stream) {
		before := tg.directWrites.Load()
		end := min(len(stream), (sent/pdu+16)*pdu+10)
		if tg.directShort.Load() > 0 {
			chunks++
			if chunks > 8 { // more reads behind the pending tail, then stop
				end = (sent + pdu - 1) / pdu * pdu
			}
		}
		if end > sent {
			if _, err := a.c.Write(stream[sent:end]); err != nil {
				t.Fatalf("host A: %v", err)
			}
		}
		sent = end
		if chunks > 8 {
			break
		}
		deadline := time.Now().Add(time.Second)
		for tg.directShort.Load() == 0 && (tg.directWrites.Load() == before || qa.inflight.Load() > 0) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
	}
	if tg.directShort.Load() == 0 {
		t.Fatalf("the direct path never met a full socket (%d direct batches)", tg.directWrites.Load())
	}
	nsent := sent / pdu
	time.Sleep(20 * time.Millisecond) // let the completions behind the tail pile up

	// Host B on the same device: verified reads and writes (upper half)
	// at queue depth must complete while host A stalls.
	b := dial(t, tg, Config{SubNQN: nqn, IOQueues: 2, QueueSize: 64})
	defer b.Close()
	bdone := make(chan error, 1)
	go func() { bdone <- hostBIO(b, size/2, size/2) }()
	select {
	case err := <-bdone:
		must(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("host B stalled behind host A's full socket")
	}

	// Host A reads again and gets every response.
	got := make([]bool, nsent)
	data := make([]byte, 4096)
	want := make([]byte, 4096)
	for answered := 0; answered < nsent; {
		hd, err := a.dec.Next()
		if err != nil {
			t.Fatalf("host A after %d responses: %v", answered, err)
		}
		switch hd.Type {
		case TypeC2HData:
			dh := a.dec.Data()
			if int(dh.CCCID) >= nsent || got[dh.CCCID] || dh.DataO != 0 || dh.DataL != 4096 {
				t.Fatalf("unexpected C2HData %+v", dh)
			}
			must(t, a.dec.ReadData(data)) // checks the data digest
			fillPattern(want, int64(lbaOf(dh.CCCID))*4096)
			if !bytes.Equal(data, want) {
				t.Fatalf("cid %d: wrong data", dh.CCCID)
			}
			got[dh.CCCID] = true
		case TypeCapsuleRsp:
			var cqe nvme.CQE
			a.dec.CQE(&cqe)
			if !cqe.Status.OK() || int(cqe.CID) >= nsent || !got[cqe.CID] || cqe.SQID != 1 {
				t.Fatalf("response %+v (data seen: %v)", cqe, int(cqe.CID) < nsent && got[cqe.CID])
			}
			answered++
		default:
			t.Fatalf("host A got %s", TypeName(hd.Type))
		}
	}
	t.Logf("%d reads answered; direct batches %d, %d of them short", nsent, tg.directWrites.Load(), tg.directShort.Load())
}

// targetQueue returns the target's I/O queue qid of controller cntlid.
func targetQueue(t *testing.T, tg *Target, cntlid, qid uint16) *queue {
	t.Helper()
	tg.mu.Lock()
	defer tg.mu.Unlock()
	for q := range tg.conns {
		if q.connected && q.qid == qid && q.ctrl != nil && q.ctrl.id == cntlid {
			return q
		}
	}
	t.Fatalf("no queue %d of controller %d", qid, cntlid)
	return nil
}

// hostBIO does verified 4 KiB reads and writes at queue depth 16 in
// [base, base+n) of a device filled with fillPattern.
func hostBIO(d *Device, base, n int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			p, want := make([]byte, 4096), make([]byte, 4096)
			region := n / 16
			for i := 0; i < 40; i++ {
				off := base + int64(w)*region + rng.Int64N(region/4096)*4096
				if i%4 == 3 { // rewrite the same pattern: the content stays known
					fillPattern(p, off)
					if _, err := d.WriteAt(p, off); err != nil {
						errs <- fmt.Errorf("write at %d: %w", off, err)
						return
					}
					continue
				}
				if _, err := d.ReadAt(p, off); err != nil {
					errs <- fmt.Errorf("read at %d: %w", off, err)
					return
				}
				if fillPattern(want, off); !bytes.Equal(p, want) {
					errs <- fmt.Errorf("read at %d: wrong data", off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
