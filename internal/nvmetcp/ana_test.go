package nvmetcp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kura-io/kura/internal/nvme"
)

func TestANAStateAndAsyncEvent(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "ana", 1<<20, 512)
	// The initiator enables ANA notices (AEC) and keeps an AER held; its
	// completion on an ANA change reaches OnEvent (events.go).
	evs := make(chan Event, 8)
	d := dial(t, tg, Config{SubNQN: nqn, OnEvent: func(e Event) { evs <- e }})
	defer d.Close()
	d.mu.Lock()
	admin := d.admin
	d.mu.Unlock()
	waitANA := func(want uint8) {
		t.Helper()
		select {
		case e := <-evs:
			if e.Kind != EventANAChange || e.ANAState != want {
				t.Fatalf("event %+v, want ANA state %d", e, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no ANA event for state %d", want)
		}
	}
	waitANA(nvme.ANAOptimized) // read once after connect
	must(t, tg.SetANAState(nqn, nvme.ANAInaccessible))
	waitANA(nvme.ANAInaccessible)
	var err error
	_, err = d.ReadAt(make([]byte, 512), 0)
	var st nvme.Status
	if !errors.As(err, &st) || st.Code() != nvme.StatusANAInaccessible {
		t.Fatalf("read in inaccessible state: %v", err)
	}
	buf := make([]byte, 52)
	must(t, getLog(admin, nvme.LogANA, buf, false))
	if buf[32] != nvme.ANAInaccessible {
		t.Fatalf("ANA log state %#x", buf[32])
	}
	must(t, tg.SetANAState(nqn, nvme.ANAOptimized))
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	if tg.SetANAState(nqn, 9) == nil || tg.SetANAState("nqn.2019-05.io.kura:none", 1) == nil {
		t.Fatal("bad SetANAState accepted")
	}
}

func TestManyQueuesConcurrentIO(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, _ := addMalloc(t, tg, "mq", 64<<20, 4096)
	d := dial(t, tg, Config{SubNQN: nqn, IOQueues: 8, QueueSize: 32})
	defer d.Close()
	if n := tg.Subsystems()[0].Controllers[0].IOQueues; n != 8 {
		t.Fatalf("%d I/O queues", n)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			p := make([]byte, 8192)
			q := make([]byte, 8192)
			for i := 0; i < 50; i++ {
				off := int64((w*50+i)%4096) * 8192
				for j := range p {
					p[j] = byte(w + i + j)
				}
				if _, err := d.WriteAt(p, off); err != nil {
					errs <- err
					return
				}
				if _, err := d.ReadAt(q, off); err != nil {
					errs <- err
					return
				}
				if string(p) != string(q) {
					errs <- errors.New("data mismatch")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestReconnectAfterTargetRestart(t *testing.T) {
	tg := startTarget(t, TargetConfig{})
	nqn, dev := addMalloc(t, tg, "rc", 1<<20, 512)
	addr := tg.Addr().String()
	d := dial(t, tg, Config{SubNQN: nqn, ReconnectTimeout: 10 * time.Second})
	defer d.Close()
	must(t, func() error { _, err := d.WriteAt(make([]byte, 512), 0); return err }())
	tg.Close()
	tg2, err := NewTarget(TargetConfig{ListenAddr: addr, Logger: quietLogger()})
	must(t, err)
	defer tg2.Close()
	must(t, tg2.AddSubsystem(SubsystemConfig{NQN: nqn, Device: dev, AllowAnyHost: true}))
	time.Sleep(200 * time.Millisecond)
	must(t, tg2.Start(context.Background()))
	// I/O issued during the outage waits for the reconnect.
	if _, err := d.ReadAt(make([]byte, 512), 0); err != nil {
		t.Fatalf("read after target restart: %v", err)
	}
}
