package nvmetcp

import (
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

// connectResult is the outcome of a Fabrics Connect (synchronous logic,
// testable without sockets).
type connectResult struct {
	status nvme.Status
	dw0    uint32
	ctrl   *controller
	kato   time.Duration
}

func invalidParam(off uint16, inData bool) connectResult {
	r := connectResult{status: nvme.StatusConnectInvalidParm | nvme.StatusDNR, dw0: uint32(off)}
	if inData {
		r.dw0 |= 1 << 16
	}
	return r
}

// connectLogic validates a Connect and creates or finds the controller
// (NVMe-oF 1.1 §3.3; nvme-tcp-facts §6.1). It does not touch queues.
func (t *Target) connectLogic(c *nvme.SQE, data []byte, attach func(*controller) bool) connectResult {
	if len(data) < nvme.ConnectDataSize {
		return connectResult{status: nvme.StatusSGLInvalidLength | nvme.StatusDNR}
	}
	if c.ConnectRecFmt() != 0 {
		return connectResult{status: nvme.StatusConnectIncompatFmt | nvme.StatusDNR}
	}
	var d nvme.ConnectData
	d.Unmarshal(data)
	s := t.lookup(d.SubNQN)
	if s == nil {
		return invalidParam(nvme.ConnectOffSubNQN, true)
	}
	// Host NQNs are checked leniently (Linux accepts any non-empty NQN).
	if d.HostNQN == "" || len(d.HostNQN) > nvme.MaxNQNLen {
		return invalidParam(nvme.ConnectOffHostNQN, true)
	}
	if !s.hostAllowed(d.HostNQN) {
		r := connectResult{status: nvme.StatusConnectInvalidHost | nvme.StatusDNR, dw0: 1<<16 | nvme.ConnectOffHostNQN}
		return r
	}
	qid, sqsize := c.ConnectQID(), c.ConnectSQSize()
	if sqsize == 0 || sqsize > mqes {
		return invalidParam(nvme.ConnectOffSQSize, false)
	}
	if qid == 0 {
		if d.CNTLID != 0xFFFF {
			return invalidParam(nvme.ConnectOffCNTLID, true)
		}
		ctrl := s.allocController(d.HostNQN, d.HostID)
		if ctrl == nil {
			return connectResult{status: nvme.StatusConnectCtrlBusy | nvme.StatusDNR}
		}
		kato := time.Duration(c.ConnectKATO()) * time.Millisecond
		if kato == 0 && s.discovery {
			kato = t.cfg.KeepAliveTimeout
		}
		if !attach(ctrl) {
			ctrl.destroy("attach failed")
			return connectResult{status: nvme.StatusConnectCtrlBusy | nvme.StatusDNR}
		}
		return connectResult{status: nvme.StatusSuccess, dw0: uint32(ctrl.id), ctrl: ctrl, kato: kato}
	}
	if s.discovery {
		return invalidParam(nvme.ConnectOffQID, false)
	}
	ctrl := s.controller(d.CNTLID)
	if ctrl == nil || ctrl.hostNQN != d.HostNQN {
		off := uint16(nvme.ConnectOffCNTLID)
		if ctrl != nil {
			off = nvme.ConnectOffHostNQN
		}
		return invalidParam(off, true)
	}
	ctrl.mu.Lock()
	nr, rdy := ctrl.nrIOQ, ctrl.csts&nvme.CSTSReady != 0
	ctrl.mu.Unlock()
	if !rdy {
		return connectResult{status: nvme.StatusCmdSeqError | nvme.StatusDNR}
	}
	if qid > nr {
		return invalidParam(nvme.ConnectOffQID, false)
	}
	if !attach(ctrl) {
		return connectResult{status: nvme.StatusCmdSeqError | nvme.StatusDNR}
	}
	return connectResult{status: nvme.StatusSuccess, dw0: uint32(ctrl.id), ctrl: ctrl}
}

// connect handles Connect on queue q.
func (t *Target) connect(q *queue, s *slot) {
	qid := s.sqe.ConnectQID()
	r := t.connectLogic(&s.sqe, s.buf, func(c *controller) bool {
		if qid == 0 {
			c.mu.Lock()
			c.adminQ = q
			c.mu.Unlock()
			return true
		}
		return c.attachIO(qid, q)
	})
	s.status, s.dw0 = r.status, r.dw0
	if !r.status.OK() {
		var d nvme.ConnectData
		if len(s.buf) >= nvme.ConnectDataSize {
			d.Unmarshal(s.buf)
		}
		t.log.Warn("connect refused", "subnqn", d.SubNQN, "hostnqn", d.HostNQN, "qid", qid, "status", r.status.String())
		return
	}
	q.qid, q.sqsize, q.ctrl, q.connected = qid, s.sqe.ConnectSQSize(), r.ctrl, true
	q.sqflowOff = s.sqe.ConnectCATTR()&nvme.CATTRDisableSQFlow != 0
	if qid == 0 {
		r.ctrl.startKeepAlive(r.kato)
	}
}

// execFabrics handles Property Get/Set and Disconnect on a connected queue.
func (q *queue) execFabrics(s *slot) {
	c := &s.sqe
	switch c.FCType() {
	case nvme.FabricsPropertyGet, nvme.FabricsPropertySet:
		if q.qid != 0 {
			s.status = nvme.StatusInvalidQueueType | nvme.StatusDNR
			return
		}
		q.ctrl.property(s)
	case nvme.FabricsDisconnect:
		if q.qid == 0 {
			s.status = nvme.StatusInvalidQueueType | nvme.StatusDNR
			return
		}
		// exec closes the connection after the response is out.
	case nvme.FabricsConnect:
		s.status = nvme.StatusCmdSeqError | nvme.StatusDNR
	default:
		s.status = nvme.StatusInvalidOpcode | nvme.StatusDNR
	}
}

// capValue is the CAP property: MQES 1023, TO 15 (7.5 s), NVM command set,
// 4 KiB pages.
var capValue = nvme.CAPFields{MQES: mqes, TO: 15, CSSNVM: true}.Encode()

// property executes Property Get/Set (NVMe-oF 1.1 §3.4, §3.5).
func (c *controller) property(s *slot) {
	sq := &s.sqe
	size8 := sq.CDW10&7 == nvme.PropSize8
	off := sq.CDW11
	c.mu.Lock()
	defer c.mu.Unlock()
	if sq.FCType() == nvme.FabricsPropertyGet {
		var v uint64
		switch {
		case off == nvme.PropCAP && size8:
			v = capValue
		case off == nvme.PropVS && !size8:
			v = uint64(nvme.Version(1, 3, 0))
		case off == nvme.PropCC && !size8:
			v = uint64(c.cc)
		case off == nvme.PropCSTS && !size8:
			v = uint64(c.csts)
		default:
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			return
		}
		s.dw0, s.dw1 = uint32(v), uint32(v>>32)
		return
	}
	if off != nvme.PropCC || size8 {
		s.status = nvme.StatusInvalidField | nvme.StatusDNR
		return
	}
	c.setCC(sq.CDW12)
}

// setCC applies a CC write: enable, disable and shutdown take effect at
// once (nvme-tcp-facts §6.3). Caller holds c.mu.
func (c *controller) setCC(v uint32) {
	old := c.cc
	c.cc = v
	if v&nvme.CCEnable != 0 && old&nvme.CCEnable == 0 {
		iosqes, iocqes := v>>nvme.CCIOSQESShift&0xF, v>>nvme.CCIOCQESShift&0xF
		mps, ams, css := v>>nvme.CCMPSShift&0xF, v>>nvme.CCAMSShift&7, v>>nvme.CCCSSShift&7
		ok := mps == 0 && ams == 0 && (css == 0 || css == 6)
		if !c.s.discovery {
			ok = ok && iosqes == 6 && iocqes == 4
		}
		if ok {
			c.csts = nvme.CSTSReady
		} else {
			c.csts = nvme.CSTSFatal
		}
	}
	if v&nvme.CCEnable == 0 && old&nvme.CCEnable != 0 {
		c.csts &^= nvme.CSTSReady
	}
	if v&nvme.CCSHNMask != 0 && old&nvme.CCSHNMask == 0 {
		c.csts = nvme.CSTSShstComplete
		c.cc &^= nvme.CCEnable
	}
}
