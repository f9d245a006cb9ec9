package nexus

// State returns the nexus state.
func (n *Nexus) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stateLocked()
}

func (n *Nexus) stateLocked() State {
	if n.shutdown {
		return Shutdown
	}
	healthy, total := 0, 0
	for _, c := range n.children {
		total++
		if c.state == ChildOpen {
			healthy++
		}
	}
	switch {
	case healthy == 0 || n.broken != nil:
		return Faulted
	case healthy == total:
		return Online
	}
	return Degraded
}

// Children returns the status of every child, in order.
func (n *Nexus) Children() []ChildStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]ChildStatus, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c.status())
	}
	return out
}

// Status is a snapshot of the nexus for listings.
type Status struct {
	Name      string
	UUID      string
	Size      int64
	BlockSize int
	State     State
	Children  []ChildStatus
	Rebuilds  int // running rebuild jobs
}

// Status returns a snapshot of the nexus.
func (n *Nexus) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Status{Name: n.cfg.Name, UUID: n.cfg.UUID, Size: n.size, BlockSize: n.blockSize, State: n.stateLocked()}
	for _, c := range n.children {
		s.Children = append(s.Children, c.status())
		if c.job != nil {
			s.Rebuilds++
		}
	}
	return s
}

func (n *Nexus) findLocked(uri string) (*child, int) {
	for i, c := range n.children {
		if c.uri == uri {
			return c, i
		}
	}
	return nil, -1
}

func (n *Nexus) healthyCountLocked() int {
	k := 0
	for _, c := range n.children {
		if c.state == ChildOpen {
			k++
		}
	}
	return k
}
