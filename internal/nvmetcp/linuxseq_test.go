package nvmetcp

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// TestLinuxHostSequence replays, command by command, what a Linux 6.1 host
// sends for `nvme connect` and `nvme disconnect` (nvme-tcp-facts §16, the
// [pcap] values), checking every answer the kernel depends on.
func TestLinuxHostSequence(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "linux", 8<<20, 512)
	cfg := Config{Addr: tg.Addr().String(), SubNQN: nqn, HostNQN: testHost}
	must(t, cfg.setDefaults())
	ctx := context.Background()
	ok := func(what string, q *hqueue, sqe *nvme.SQE, data []byte, write bool) nvme.CQE {
		t.Helper()
		cqe, err := q.submit(sqe, data, write, 2*time.Second)
		if err != nil || !cqe.Status.OK() {
			t.Fatalf("%s: %v %v", what, err, cqe.Status)
		}
		return cqe
	}
	admin, err := dialQueue(ctx, &cfg, 0, 32)
	must(t, err)
	defer admin.close()
	// 3. Connect: QID 0, SQSIZE 31, KATO 5000, CNTLID 0xFFFF, 1024 B ICD.
	cntlid, err := fabricsConnect(admin, &cfg, 0, 31, 5000, 0xFFFF, false)
	must(t, err)
	prop := func(set bool, off uint32, size8 bool, v uint64) uint64 {
		t.Helper()
		r, err := property(admin, set, off, size8, v)
		must(t, err)
		return r
	}
	// 4. CAP, CC (EN=0), CC read-back, CAP, CC (EN=1), CSTS until RDY, VS.
	capv := prop(false, nvme.PropCAP, true, 0)
	if nvme.DecodeCAP(capv).CSSIOCS {
		t.Fatal("CAP bit 43 set: the host would require CSI descriptors and CC.CSS=6")
	}
	prop(true, nvme.PropCC, false, 0x00460000)
	if v := prop(false, nvme.PropCC, false, 0); v != 0x00460000 {
		t.Fatalf("CC read-back %#x", v)
	}
	prop(false, nvme.PropCAP, true, 0)
	prop(true, nvme.PropCC, false, 0x00460001)
	if v := prop(false, nvme.PropCSTS, false, 0); v&1 == 0 {
		t.Fatalf("first CSTS poll %#x: want RDY at once (pcap)", v)
	}
	if v := prop(false, nvme.PropVS, false, 0); v < 0x10300 {
		t.Fatalf("VS %#x", v)
	}
	// 5. Identify CNS 1.
	buf := make([]byte, 4096)
	must(t, adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 1}, buf))
	var id nvme.IdentifyController
	id.Unmarshal(buf)
	if id.CNTLID != cntlid || id.KAS == 0 || id.SGLS&3 == 0 || id.ICDOFF != 0 || id.IOCCSZ < 4 || id.MAXCMD == 0 || id.SubNQN != nqn {
		t.Fatalf("identify: %+v", id)
	}
	// 6. Effects log (LPA bit1): cdw10 0x03FF0005.
	if id.LPA&2 != 0 {
		ok("effects log", admin, &nvme.SQE{Opcode: nvme.AdminGetLogPage, CDW10: 0x03FF0005}, buf, false)
	}
	// 7. ANA log (CMIC bit3), NSID all-ones, 16+32·NANAGRPID+4·MNAN bytes ≤ MDTS.
	if id.CMIC&8 != 0 {
		n := 16 + 32*int(id.NANAGRPID) + 4*int(id.MNAN)
		if id.MNAN == 0 || id.MNAN > id.NN || n > 4096<<id.MDTS {
			t.Fatalf("ANA sizes: MNAN %d NN %d log %d", id.MNAN, id.NN, n)
		}
		var sqe nvme.SQE
		sqe.Opcode, sqe.NSID = nvme.AdminGetLogPage, 0xFFFFFFFF
		sqe.SetLogPage(nvme.LogANA, 0, false, uint32(n), 0)
		ana := make([]byte, n)
		ok("ANA log", admin, &sqe, ana, false)
		grp := binary.LittleEndian.Uint32(ana[16:])
		if binary.LittleEndian.Uint16(ana[8:]) != 1 || grp < 1 || grp > id.ANAGRPMAX || ana[32] != nvme.ANAOptimized {
			t.Fatalf("ANA log % x", ana)
		}
	}
	// 9. Number of queues: 2 CPUs → 0x00010001.
	cqe := ok("set features nq", admin, &nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: 7, CDW11: 0x00010001}, nil, false)
	nq := min(cqe.DW0&0xFFFF, cqe.DW0>>16) + 1
	if nq != 2 {
		t.Fatalf("granted %d queues", nq)
	}
	// 10. I/O queues: QID i, SQSIZE 127, KATO 0, CNTLID from admin.
	var ioqs []*hqueue
	for qid := uint16(1); qid <= uint16(nq); qid++ {
		q, err := dialQueue(ctx, &cfg, qid, 128)
		must(t, err)
		defer q.close()
		if got, err := fabricsConnect(q, &cfg, qid, 127, 0, cntlid, false); err != nil || got != cntlid {
			t.Fatalf("io connect %d: %v (cntlid %d)", qid, err, got)
		}
		q.icdMax = int(id.IOCCSZ)*16 - 64
		ioqs = append(ioqs, q)
	}
	// 12. AEC 0x900, then AER with CID 31 (held: must not complete).
	if cqe = ok("AEC", admin, &nvme.SQE{Opcode: nvme.AdminSetFeatures, CDW10: 0x0B, CDW11: 0x900}, nil, false); cqe.DW0 != 0x900 {
		t.Fatalf("AEC echoed %#x, want 0x900", cqe.DW0)
	}
	aerDone := make(chan nvme.CQE, 1)
	go func() {
		c, _ := admin.submit(&nvme.SQE{Opcode: nvme.AdminAsyncEvent}, nil, false, 0)
		aerDone <- c
	}()
	// 13. CNS 6, CSI 0.
	ok("CNS 6", admin, &nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 6}, buf, false)
	// 14. CNS 2 → CNS 3 → CNS 0 ×2.
	must(t, adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, CDW10: 2}, buf))
	if binary.LittleEndian.Uint32(buf) != 1 {
		t.Fatal("namespace 1 not active")
	}
	must(t, adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 3}, buf))
	descs := nvme.ParseNSDescList(buf)
	if len(descs) == 0 {
		t.Fatal("no namespace identifiers (Linux needs unique IDs for shared namespaces)")
	}
	for _, d := range descs {
		want := map[uint8]int{nvme.NIDTEUI64: 8, nvme.NIDTNGUID: 16, nvme.NIDTUUID: 16, nvme.NIDTCSI: 1}[d.Type]
		if len(d.ID) != want {
			t.Fatalf("descriptor type %d length %d (host: bogus length)", d.Type, len(d.ID))
		}
	}
	for range 2 {
		must(t, adminCmd(admin, &nvme.SQE{Opcode: nvme.AdminIdentify, NSID: 1, CDW10: 0}, buf))
	}
	var ns nvme.IdentifyNamespace
	ns.Unmarshal(buf)
	if ns.NCAP == 0 || ns.NMIC&1 == 0 || ns.ANAGRPID != 1 || 1<<ns.LBADS != 512 {
		t.Fatalf("identify ns %+v", ns)
	}
	// 15. Probe reads: 4 KiB at LBA 0 (NLB 7) on each I/O queue; a 4 KiB
	// in-capsule write, a 64 KiB R2T write, flush, discard with Linux's 4 KiB
	// DSM buffer, write zeroes.
	for _, q := range ioqs {
		sqe := nvme.SQE{Opcode: nvme.IORead, NSID: 1, CDW12: 7}
		ok("read", q, &sqe, buf, false)
	}
	w := nvme.SQE{Opcode: nvme.IOWrite, NSID: 1, CDW12: 7 | 1<<30}
	ok("FUA write", ioqs[0], &w, buf, true)
	big := make([]byte, 65536)
	w = nvme.SQE{Opcode: nvme.IOWrite, NSID: 1, CDW10: 128, CDW12: 127}
	ok("R2T write", ioqs[1], &w, big, true)
	ok("flush", ioqs[0], &nvme.SQE{Opcode: nvme.IOFlush, NSID: 1}, nil, false)
	dsm := make([]byte, 4096)
	binary.LittleEndian.PutUint32(dsm[4:], 8)
	binary.LittleEndian.PutUint64(dsm[8:], 16)
	ok("discard", ioqs[0], &nvme.SQE{Opcode: nvme.IODSM, NSID: 1, CDW11: 4}, dsm, true)
	ok("write zeroes", ioqs[1], &nvme.SQE{Opcode: nvme.IOWriteZeroes, NSID: 1, CDW10: 32, CDW12: 7}, nil, false)
	r := nvme.SQE{Opcode: nvme.IORead, NSID: 1, CDW10: 16383, CDW12: 7}
	if c, err := ioqs[0].submit(&r, buf, false, time.Second); err != nil || c.Status != nvme.StatusLBARange|nvme.StatusDNR {
		t.Fatalf("read past the end: %v %v", err, c.Status)
	}
	// 16. Keep Alive.
	ok("keep alive", admin, &nvme.SQE{Opcode: nvme.AdminKeepAlive}, nil, false)
	select {
	case c := <-aerDone:
		t.Fatalf("AER completed without an event: %+v", c)
	default:
	}
	// nvme disconnect: close I/O sockets, CC.SHN=1, CSTS until SHST=2.
	for _, q := range ioqs {
		q.close()
	}
	prop(true, nvme.PropCC, false, 0x00464001)
	if v := prop(false, nvme.PropCSTS, false, 0); v&0xC != 0x8 {
		t.Fatalf("CSTS after shutdown %#x", v)
	}
	admin.close()
	deadline := time.Now().Add(2 * time.Second)
	for len(tg.Subsystems()[0].Controllers) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("controller not deleted after the admin queue closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
