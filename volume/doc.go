// Package volume is Kura's Go API: open any block device by URI, or build a
// mirrored nexus over several devices, and do I/O directly from a Go
// program — no daemon, no system calls into a kernel block layer.
//
// It mirrors the nexus example in the Mayastor README:
//
//	children := []string{
//		"aio:///tmp/disk1.img?blk_size=4096",
//		"nvmf://10.0.0.2:8420/nqn.2019-05.io.kura:disk0",
//		"nvmf://10.0.0.3:8420/nqn.2019-05.io.kura:disk0",
//	}
//	nx, err := volume.CreateNexus(ctx, "mynexus", 4096, 131_027, "", children)
//	buf := volume.AlignedBuffer(4096)
//	// fill buf; every write goes to all three children
//	_, err = nx.WriteAt(buf, 0)
//	_, err = nx.ReadAt(buf, 0)
//	err = nx.Close()
//
// Device URIs: aio:///path (or a bare absolute path), uring:///path,
// malloc:///name?size_mb=N, nvmf://host:port/NQN (NVMe/TCP). Every Device
// follows the same contract: offsets and lengths are multiples of the block
// size, concurrent I/O on non-overlapping ranges is allowed, data is
// durable after Flush.
package volume
