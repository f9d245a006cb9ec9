package nvmetcp

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kura-io/kura/internal/nvme"
)

// reservations is the persistent reservation state of a namespace (NVMe
// Base 2.0 §8.19). Registrants are identified by the 128-bit host ID from
// Connect, so every controller of a host shares a registration.
type reservations struct {
	s    *subsystem
	path string // "" = not persisted

	active atomic.Bool // a reservation is held (fast path for I/O)

	mu     sync.Mutex // guards the fields below
	gen    uint32
	regs   map[[16]byte]uint64 // host ID → key
	holder [16]byte
	rtype  uint8 // 0: none
	ptpl   bool
}

// resvFile is the persisted JSON form.
type resvFile struct {
	Version     int               `json:"version"`
	NQN         string            `json:"nqn"`
	Generation  uint32            `json:"generation"`
	Type        uint8             `json:"type"`
	Holder      string            `json:"holder,omitempty"`
	PTPL        bool              `json:"ptpl"`
	Registrants map[string]uint64 `json:"registrants"`
}

func newReservations(s *subsystem, stateDir string) *reservations {
	r := &reservations{s: s, regs: map[[16]byte]uint64{}}
	if stateDir != "" && !s.discovery {
		name := strings.Map(func(c rune) rune {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
				return c
			}
			return '_'
		}, s.nqn)
		r.path = filepath.Join(stateDir, "resv-"+name+".json")
	}
	return r
}

func (r *reservations) load() error {
	if r.path == "" {
		return nil
	}
	b, err := os.ReadFile(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("nvmetcp: load reservations: %w", err)
	}
	var f resvFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("nvmetcp: load reservations %s: %w", r.path, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen, r.rtype, r.ptpl = f.Generation, f.Type, f.PTPL
	for h, k := range f.Registrants {
		id, err := parseHostID(h)
		if err != nil {
			return fmt.Errorf("nvmetcp: load reservations %s: %w", r.path, err)
		}
		r.regs[id] = k
	}
	if f.Holder != "" {
		if r.holder, err = parseHostID(f.Holder); err != nil {
			return fmt.Errorf("nvmetcp: load reservations %s: %w", r.path, err)
		}
	}
	r.active.Store(r.rtype != 0)
	return nil
}

func parseHostID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("bad host id %q", s)
	}
	copy(id[:], b)
	return id, nil
}

// persist writes the state atomically (temp file, fsync, rename, dir
// fsync). Caller holds r.mu.
func (r *reservations) persist() error {
	if r.path == "" {
		return nil
	}
	f := resvFile{Version: 1, NQN: r.s.nqn, Generation: r.gen, Type: r.rtype, PTPL: r.ptpl, Registrants: map[string]uint64{}}
	for h, k := range r.regs {
		f.Registrants[hex.EncodeToString(h[:])] = k
	}
	if r.rtype != 0 {
		f.Holder = hex.EncodeToString(r.holder[:])
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(r.path, b)
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// allowed reports whether host may run a write-class (write) or read-class
// command under the current reservation (NVMe Base 2.0 Table "Command
// Behavior in the Presence of a Reservation").
func (r *reservations) allowed(host [16]byte, write bool) bool {
	if !r.active.Load() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.allowedLocked(host, write)
}

func (r *reservations) isHolder(host [16]byte) bool {
	switch r.rtype {
	case 0:
		return false
	case nvme.ResvWriteExclusiveAllReg, nvme.ResvExclusiveAccessAllReg:
		_, reg := r.regs[host]
		return reg
	}
	return r.holder == host
}

func (r *reservations) allowedLocked(host [16]byte, write bool) bool {
	if r.rtype == 0 || r.isHolder(host) {
		return true
	}
	_, reg := r.regs[host]
	switch r.rtype {
	case nvme.ResvWriteExclusive:
		return !write
	case nvme.ResvExclusiveAccess:
		return false
	case nvme.ResvWriteExclusiveRegOnly, nvme.ResvWriteExclusiveAllReg:
		return !write || reg
	case nvme.ResvExclusiveAccessRegOnly, nvme.ResvExclusiveAccessAllReg:
		return reg
	}
	return false
}

func conflict(s *slot) { s.status = nvme.StatusReservationConflict | nvme.StatusDNR }

// exec runs Reservation Register/Acquire/Release/Report.
func (r *reservations) exec(c *controller, s *slot) {
	sq := &s.sqe
	if sq.Opcode == nvme.IOResvReport {
		r.report(s)
		return
	}
	if s.xfer < 16 && !(sq.Opcode == nvme.IOResvRelease && s.xfer >= 8) {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	crkey := binary.LittleEndian.Uint64(s.buf[0:])
	var nkey uint64
	if len(s.buf) >= 16 {
		nkey = binary.LittleEndian.Uint64(s.buf[8:])
	}
	action := sq.CDW10 & 7
	iekey := sq.CDW10&(1<<3) != 0
	rtype := uint8(sq.CDW10 >> 8)
	host := c.hostID
	var notes []resvNote // sent once mu is released
	defer func() { r.s.notifyResv(notes) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	key, reg := r.regs[host]
	keyOK := reg && (iekey || key == crkey)
	changed := false
	switch sq.Opcode {
	case nvme.IOResvRegister:
		cptpl := sq.CDW10 >> 30
		switch action {
		case 0: // register
			if reg {
				if key != nkey {
					conflict(s)
				}
				break
			}
			r.regs[host] = nkey
			r.gen++
			changed = true
		case 1: // unregister
			if !keyOK {
				conflict(s)
				break
			}
			if r.holder == host && regOnly(r.rtype) {
				notes = r.others(notes, host, nvme.ResvNoticeReleased)
			}
			r.unregister(host)
			r.gen++
			changed = true
		case 2: // replace
			if reg && !keyOK || !reg && !iekey {
				conflict(s)
				break
			}
			r.regs[host] = nkey
			r.gen++
			changed = true
		default:
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
		}
		if s.status.OK() && cptpl >= 2 {
			r.ptpl = cptpl == 3
			changed = true
		}
	case nvme.IOResvAcquire:
		if rtype < 1 || rtype > 6 {
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
			break
		}
		if !keyOK {
			conflict(s)
			break
		}
		switch action {
		case 0: // acquire
			if r.rtype == 0 {
				r.rtype, r.holder = rtype, host
				changed = true
			} else if !r.isHolder(host) || r.rtype != rtype {
				conflict(s)
			}
		case 1, 2: // preempt (and abort: commands run synchronously, nothing to abort)
			before := r.others(nil, host, nvme.ResvNoticeRegPreempted)
			if !r.preempt(host, nkey, rtype) {
				conflict(s)
				break
			}
			for _, n := range before {
				if _, still := r.regs[n.host]; !still {
					notes = append(notes, n)
				}
			}
			r.gen++
			changed = true
		default:
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
		}
	case nvme.IOResvRelease:
		if !keyOK {
			conflict(s)
			break
		}
		switch action {
		case 0: // release
			if r.rtype == 0 || !r.isHolder(host) {
				break
			}
			if r.rtype != rtype {
				s.status = nvme.StatusInvalidField | nvme.StatusDNR
				break
			}
			if regOnly(r.rtype) || allRegistrants(r.rtype) {
				notes = r.others(notes, host, nvme.ResvNoticeReleased)
			}
			r.rtype, r.holder = 0, [16]byte{}
			changed = true
		case 1: // clear
			notes = r.others(notes, host, nvme.ResvNoticePreempted)
			r.rtype, r.holder = 0, [16]byte{}
			clear(r.regs)
			r.gen++
			changed = true
		default:
			s.status = nvme.StatusInvalidField | nvme.StatusDNR
		}
	}
	r.active.Store(r.rtype != 0)
	if changed {
		if err := r.persist(); err != nil {
			r.s.t.log.Error("persisting reservations failed", "nqn", r.s.nqn, "err", err)
			s.status = nvme.StatusInternal
		}
	}
}

// others appends a notification of type typ for every registrant but host.
// Caller holds mu.
func (r *reservations) others(notes []resvNote, host [16]byte, typ uint8) []resvNote {
	for h := range r.regs {
		if h != host {
			notes = append(notes, resvNote{host: h, typ: typ})
		}
	}
	return notes
}

func regOnly(t uint8) bool {
	return t == nvme.ResvWriteExclusiveRegOnly || t == nvme.ResvExclusiveAccessRegOnly
}

func allRegistrants(t uint8) bool {
	return t == nvme.ResvWriteExclusiveAllReg || t == nvme.ResvExclusiveAccessAllReg
}

// preempt removes the registrants holding prkey (other than host) and, if
// that includes the reservation holder (or the reservation is of an
// all-registrants type), hands the reservation to host with rtype. It
// returns false when nothing matched. Caller holds mu.
func (r *reservations) preempt(host [16]byte, prkey uint64, rtype uint8) bool {
	allReg := allRegistrants(r.rtype)
	takeOver := r.rtype != 0 && (allReg || r.regs[r.holder] == prkey && r.holder != host)
	removed := false
	for h, k := range r.regs {
		if k == prkey && h != host {
			delete(r.regs, h)
			removed = true
		}
	}
	if takeOver {
		r.rtype, r.holder = rtype, host
		return true
	}
	return removed
}

// unregister removes host; a holder's reservation goes with it (for the
// all-registrants types, when the last registrant leaves). Caller holds mu.
func (r *reservations) unregister(host [16]byte) {
	delete(r.regs, host)
	switch r.rtype {
	case 0:
	case nvme.ResvWriteExclusiveAllReg, nvme.ResvExclusiveAccessAllReg:
		if len(r.regs) == 0 {
			r.rtype = 0
		}
	default:
		if r.holder == host {
			r.rtype, r.holder = 0, [16]byte{}
		}
	}
}

// report returns the extended reservation status data structure (EDS=1
// required: fabrics host IDs are 128-bit).
func (r *reservations) report(s *slot) {
	sq := &s.sqe
	n := (uint64(sq.CDW10) + 1) * 4
	if uint64(s.xfer) != n || s.dir != nvme.DirCtrlToHost {
		s.status = nvme.StatusSGLInvalidLength | nvme.StatusDNR
		return
	}
	if sq.CDW11&1 == 0 {
		s.status = nvme.StatusHostIDInconsistent | nvme.StatusDNR
		return
	}
	r.mu.Lock()
	page := make([]byte, 64+64*len(r.regs))
	binary.LittleEndian.PutUint32(page[0:], r.gen)
	page[4] = r.rtype
	binary.LittleEndian.PutUint16(page[5:], uint16(len(r.regs)))
	if r.ptpl {
		page[9] = 1
	}
	i := 0
	for h, k := range r.regs {
		e := page[64+64*i:]
		binary.LittleEndian.PutUint16(e[0:], 0xFFFF)
		if r.isHolder(h) {
			e[2] = 1
		}
		binary.LittleEndian.PutUint64(e[8:], k)
		copy(e[16:32], h[:])
		i++
	}
	r.mu.Unlock()
	b := needC2H(s, uint32(n))
	k := copy(b, page)
	clear(b[k:])
}
