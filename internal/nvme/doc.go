// Package nvme is the NVMe specification vocabulary shared by Kura's
// NVMe/TCP target and initiator: opcodes, status codes, the 64-byte
// submission queue entry and 16-byte completion queue entry, controller
// properties, Identify structures, log page and feature identifiers.
//
// It holds no transport or controller logic. All multi-byte fields are
// little-endian on the wire. References: NVMe Base Specification 2.0,
// NVMe over Fabrics 1.1, NVMe/TCP Transport 1.0.
package nvme
