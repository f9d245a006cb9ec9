// loopcal server: the cheapest block server we could write for this
// machine, to measure the ceiling of any two-process block protocol over
// loopback TCP (docs/benchmarks.md, "The loopback ceiling"). Not Kura
// code and not a protocol: one thread, one io_uring for the socket and
// the disk (O_DIRECT), requests parsed in place, responses of a batch
// sent with one send.
//
//   loopcal-server PORT FILE
//
// Request: 32 bytes {u32 op (0 read, 1 write), u32 tag, u64 block, 16 pad},
// followed by BS bytes for a write. Response: 16 bytes {u32 tag, u32
// status, 8 pad}, followed by BS bytes for a read. Tags < MAXT.
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BS 4096
#define MAXT 1024
#define RBUF (1 << 20)
#define OBUF (MAXT * (BS + 16))

struct req { uint32_t op, tag; uint64_t block; uint8_t pad[16]; };
struct rsp { uint32_t tag, status; uint8_t pad[8]; };

enum { K_RECV = 1, K_SEND = 2, K_DISK = 3 };

static struct io_uring ring;

static struct io_uring_sqe *sqe(void) {
	struct io_uring_sqe *e = io_uring_get_sqe(&ring);
	if (!e) {
		io_uring_submit(&ring);
		e = io_uring_get_sqe(&ring);
	}
	return e;
}

static void serve(int s, int fd, char *rbuf, char *obuf[2], char *dbuf[], uint32_t dop[]) {
	size_t rlen = 0, olen = 0;
	int cur = 0, sending = 0, recving = 0, inflight = 0, done = 0;
	while (!done || inflight || sending || recving) {
		if (!done && !recving) {
			struct io_uring_sqe *e = sqe();
			io_uring_prep_recv(e, s, rbuf + rlen, RBUF - rlen, 0);
			io_uring_sqe_set_data64(e, (uint64_t)K_RECV << 32);
			recving = 1;
		}
		if (!done && !sending && olen) {
			struct io_uring_sqe *e = sqe();
			io_uring_prep_send(e, s, obuf[cur], olen, MSG_WAITALL);
			io_uring_sqe_set_data64(e, ((uint64_t)K_SEND << 32) | olen);
			sending = 1;
			cur ^= 1;
			olen = 0;
		}
		if (io_uring_submit_and_wait(&ring, 1) < 0)
			return;
		struct io_uring_cqe *c;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&ring, head, c) {
			n++;
			uint64_t ud = c->user_data;
			uint32_t lo = (uint32_t)ud;
			switch (ud >> 32) {
			case K_RECV: {
				recving = 0;
				if (c->res <= 0) {
					done = 1;
					break;
				}
				rlen += c->res;
				size_t off = 0;
				for (;;) {
					if (rlen - off < sizeof(struct req))
						break;
					struct req *r = (void *)(rbuf + off);
					size_t need = sizeof *r + (r->op == 1 ? BS : 0);
					if (rlen - off < need)
						break;
					uint32_t t = r->tag % MAXT;
					dop[t] = r->op;
					struct io_uring_sqe *e = sqe();
					if (r->op == 1) {
						memcpy(dbuf[t], rbuf + off + sizeof *r, BS);
						io_uring_prep_write(e, fd, dbuf[t], BS, r->block * BS);
					} else {
						io_uring_prep_read(e, fd, dbuf[t], BS, r->block * BS);
					}
					io_uring_sqe_set_data64(e, ((uint64_t)K_DISK << 32) | t);
					inflight++;
					off += need;
				}
				memmove(rbuf, rbuf + off, rlen - off);
				rlen -= off;
				break;
			}
			case K_SEND:
				sending = 0;
				if (c->res != (int)lo)
					done = 1;
				break;
			default: {
				inflight--;
				struct rsp *p = (void *)(obuf[cur] + olen);
				p->tag = lo;
				p->status = c->res == BS ? 0 : 1;
				olen += sizeof *p;
				if (dop[lo] == 0) {
					memcpy(obuf[cur] + olen, dbuf[lo], BS);
					olen += BS;
				}
			}
			}
		}
		io_uring_cq_advance(&ring, n);
	}
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: loopcal-server PORT FILE\n");
		return 2;
	}
	int fd = open(argv[2], O_RDWR | O_DIRECT);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(0x7f000001)};
	if (bind(ls, (void *)&a, sizeof a) || listen(ls, 4)) {
		perror("listen");
		return 1;
	}
	char *rbuf = malloc(RBUF), *obuf[2] = {malloc(OBUF), malloc(OBUF)};
	static char *dbuf[MAXT];
	static uint32_t dop[MAXT];
	for (int i = 0; i < MAXT; i++)
		if (posix_memalign((void **)&dbuf[i], 4096, BS))
			return 1;
	if (io_uring_queue_init(2 * MAXT, &ring, 0)) {
		perror("io_uring");
		return 1;
	}
	for (;;) {
		int s = accept(ls, 0, 0);
		if (s < 0)
			return 1;
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		serve(s, fd, rbuf, obuf, dbuf, dop);
		close(s);
	}
}
