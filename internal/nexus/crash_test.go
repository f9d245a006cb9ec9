package nexus

// crash simulates an engine crash: everything stops, nothing more is
// persisted (no clean-shutdown record, dirty logs left as they are).
func (n *Nexus) crash() {
	n.mu.Lock()
	n.stopping = true
	n.mu.Unlock()
	n.gate.close()
	close(n.wdStop)
	n.wdDone.Wait()
	n.mu.Lock()
	n.shutdown = true
	for _, c := range n.children {
		if c.job != nil {
			c.job.Stop()
			c.job = nil
		}
		if c.inst != nil {
			c.inst.close(0)
			c.inst = nil
		}
		if c.log != nil {
			c.log.Close()
		}
	}
	if n.intent != nil {
		n.intent.closeAll()
	}
	n.mu.Unlock()
	n.bg.Wait()
}
