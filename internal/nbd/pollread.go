package nbd

const (
	// perFillScale is the fixed-point scale of conn.perFill.
	perFillScale = 256
	// syncClientPerFill: while fewer than 1.25 requests arrive per socket
	// read on average, the client is waiting for each reply before it
	// sends the next request (queue depth 1).
	syncClientPerFill = perFillScale * 5 / 4
)

// pollReader is the connection's socket reader. For a client at queue
// depth 1 on a fast device (see conn.pollFirst) the socket goes into raw
// mode (sock.go): out of the runtime's netpoller, the reader waits for
// the next request in poll(2) on the thread it already holds, for up to
// rawIdleMs, and the kernel wakes that thread alone. Parking in the
// netpoller instead costs a scheduler round trip per request (on this
// kind of VM ≈ 15 µs for a read, 30 µs for a write at QD1) and, while any
// other goroutine waits in the netpoller, wakes an idle runtime thread
// too. With several requests per read (a deeper queue) the netpoller
// wins, because its wake-ups are shared by a batch and the P stays free
// for the others: after rawLeaveReads such reads the reader puts the
// socket back. So does an idle connection, after rawIdleMs, so that it
// holds no thread.
type pollReader struct {
	c *conn
	// refused counts consecutive reads in raw mode for which pollFirst
	// said no (reader only).
	refused int
}

// Read fills b from the socket (bufio.Reader calls it on the reader
// goroutine only).
func (p *pollReader) Read(b []byte) (int, error) {
	c := p.c
	s := &c.sock
	if !s.socket {
		return s.nc.Read(b)
	}
	wait := c.pollFirst()
	if c.q == nil && c.ringWanted() {
		c.openRing()
	}
	if c.q != nil {
		if n, ok, err := c.readRing(b); ok {
			return n, err
		}
	}
	if wait {
		p.refused = 0
		if !s.raw {
			c.enterRaw()
		}
	} else if s.raw {
		if p.refused++; p.refused >= rawLeaveReads {
			c.leaveRaw() // or on a later read, if it cannot now
		}
	}
	if !s.raw {
		return s.nc.Read(b)
	}
	if wait {
		c.srv.pollWaits.Add(1)
	}
	for {
		n, idle, err := s.readRaw(b, wait, int(c.srv.rawIdleMs.Load()))
		if !idle {
			return n, err
		}
		c.leaveRaw()
		if !s.raw {
			return s.nc.Read(b) // park
		}
		wait = true // could not leave now: wait on in poll(2)
	}
}

// pollFirst reports whether the next socket read should wait in poll(2)
// first, in raw mode (reader only): in transmission, nothing in flight,
// an inline device faster than fastNs, and about one request per
// read. It also folds the requests taken from the previous read into
// perFill.
func (c *conn) pollFirst() bool {
	c.perFill += (c.fillReqs*perFillScale - c.perFill) / 8
	c.fillReqs = 0
	return c.dev != nil && c.inflight.Load() == 0 && c.ewmaNs < c.fastNs && c.perFill < syncClientPerFill
}
