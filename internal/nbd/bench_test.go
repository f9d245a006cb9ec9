package nbd

import (
	"encoding/binary"
	"io"
	"runtime"
	"testing"
)

// qd1 performs one request and reads its simple reply without allocating.
func (c *testClient) qd1(b testing.TB, typ uint16, off uint64, payload, rbuf []byte) {
	n := uint32(len(payload))
	if typ == cmdRead {
		n = uint32(len(rbuf))
	}
	c.send(0, typ, off, n, payload)
	if _, err := io.ReadFull(c.br, c.hdr[:16]); err != nil {
		b.Fatal(err)
	}
	if binary.BigEndian.Uint32(c.hdr[4:]) != 0 {
		b.Fatal("I/O error")
	}
	if typ == cmdRead {
		if _, err := io.ReadFull(c.br, rbuf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNoAllocsPerIO checks the hot path does not allocate: the whole
// process (client and server) must average below one allocation per
// request once slots and pools are warm.
func TestNoAllocsPerIO(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s, _ := startServer(t, 16<<20, 512, ExportOptions{})
	c := dial(t, s.Addr(), "disk", false)
	buf := make([]byte, 4096)
	off := uint64(0)
	for _, typ := range []uint16{cmdWrite, cmdRead} {
		io := func() {
			if typ == cmdWrite {
				c.qd1(t, typ, off, buf, nil)
			} else {
				c.qd1(t, typ, off, nil, buf)
			}
			off = (off + 4096) % (16 << 20)
		}
		for i := 0; i < 100; i++ {
			io()
		}
		if a := testing.AllocsPerRun(500, io); a >= 1 {
			t.Errorf("command %d: %.2f allocations per request", typ, a)
		}
	}
}

func benchQD1(b *testing.B, typ uint16, size int) {
	s, _ := startServer(b, 64<<20, 512, ExportOptions{})
	c := dial(b, s.Addr(), "disk", false)
	buf := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	off := uint64(0)
	for i := 0; i < b.N; i++ {
		if typ == cmdWrite {
			c.qd1(b, typ, off, buf, nil)
		} else {
			c.qd1(b, typ, off, nil, buf)
		}
		off = (off + uint64(size)) % (64 << 20)
	}
}

func BenchmarkRead4KQD1(b *testing.B)  { benchQD1(b, cmdRead, 4096) }
func BenchmarkWrite4KQD1(b *testing.B) { benchQD1(b, cmdWrite, 4096) }

// BenchmarkRead4KQD32 keeps 32 reads in flight on one connection.
func BenchmarkRead4KQD32(b *testing.B) {
	s, _ := startServer(b, 64<<20, 512, ExportOptions{})
	c := dial(b, s.Addr(), "disk", false)
	const qd = 32
	buf := make([]byte, 4096)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	sent, done := 0, 0
	for done < b.N {
		for sent < b.N && sent-done < qd {
			c.send(0, cmdRead, uint64(sent%16384)*4096, 4096, nil)
			sent++
		}
		if _, err := io.ReadFull(c.br, c.hdr[:16]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c.br, buf); err != nil {
			b.Fatal(err)
		}
		done++
	}
}

func BenchmarkRead256KQD1(b *testing.B) { benchQD1(b, cmdRead, 256<<10) }

// TestNoAllocsPerIOUring checks the asynchronous uring path (reader starts
// I/O, the reaper answers) does not allocate per request: 32 reads in flight
// on one connection, whole process below 0.5 allocations per request.
func TestNoAllocsPerIOUring(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, noQueues := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "queues"}[noQueues], func(t *testing.T) {
			testNoAllocsPerIOUring(t, Config{NoQueues: noQueues})
		})
	}
}

func testNoAllocsPerIOUring(t *testing.T, cfg Config) {
	s := startUringServer(t, 16<<20, cfg)
	c := dial(t, s.Addr(), "disk", false)
	buf := make([]byte, 4096)
	run := func(n int) {
		const qd = 32
		sent, done := 0, 0
		for done < n {
			for sent < n && sent-done < qd {
				c.send(0, cmdRead, uint64(sent%4096)*4096, 4096, nil)
				sent++
			}
			if _, err := io.ReadFull(c.br, c.hdr[:16]); err != nil {
				t.Fatal(err)
			}
			if binary.BigEndian.Uint32(c.hdr[4:]) != 0 {
				t.Fatal("I/O error")
			}
			if _, err := io.ReadFull(c.br, buf); err != nil {
				t.Fatal(err)
			}
			done++
		}
	}
	run(500) // warm up slots, pools, workers
	const n = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	run(n)
	runtime.ReadMemStats(&after)
	if a := float64(after.Mallocs-before.Mallocs) / n; a >= 0.5 {
		t.Errorf("%.2f allocations per request", a)
	} else {
		t.Logf("%.3f allocations per request", a)
	}
	if !cfg.NoQueues && s.ringEnters.Load() == 0 {
		t.Error("the connection never entered ring mode")
	}
}
