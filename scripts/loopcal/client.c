// loopcal client: the cheapest client for loopcal-server (server.c): one
// thread, a blocking socket, QD requests kept in flight, each batch of
// completions answered with one send.
//
//   loopcal-client PORT read|write QD RAMP_S RUNTIME_S BLOCKS
//
// Prints one line: iops=... lat_mean_us=... client_cpu_us=... ios=...
#define _GNU_SOURCE
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BS 4096
#define MAXT 1024
#define IBUF (1 << 20)

struct req { uint32_t op, tag; uint64_t block; uint8_t pad[16]; };
struct rsp { uint32_t tag, status; uint8_t pad[8]; };

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) {
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}
static double now(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}
static double cpu(void) {
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
	if (argc != 7) {
		fprintf(stderr, "usage: loopcal-client PORT read|write QD RAMP_S RUNTIME_S BLOCKS\n");
		return 2;
	}
	int wr = strcmp(argv[2], "write") == 0, qd = atoi(argv[3]);
	double ramp = atof(argv[4]), runtime = atof(argv[5]);
	uint64_t blocks = strtoull(argv[6], 0, 10);
	if (qd < 1 || qd > MAXT || blocks == 0) {
		fprintf(stderr, "loopcal-client: bad QD or BLOCKS\n");
		return 2;
	}
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(0x7f000001)};
	if (connect(s, (void *)&a, sizeof a)) {
		perror("connect");
		return 1;
	}
	size_t rsz = sizeof(struct req) + (wr ? BS : 0), psz = sizeof(struct rsp) + (wr ? 0 : BS);
	char *ob = malloc(rsz * qd), *ib = malloc(IBUF);
	memset(ob, 0xa5, rsz * qd);
	static double t0[MAXT];
	size_t olen = 0, ilen = 0;
	double start = now(), from = start + ramp, end = from + runtime, c0 = 0, latsum = 0;
	for (int t = 0; t < qd; t++) {
		struct req *r = (void *)(ob + olen);
		r->op = wr, r->tag = t, r->block = next() % blocks;
		t0[t] = start;
		olen += rsz;
	}
	long ios = 0;
	int out = qd, measuring = 0, stopping = 0;
	while (out > 0) {
		for (size_t o = 0; o < olen;) {
			ssize_t n = send(s, ob + o, olen - o, 0);
			if (n <= 0) {
				perror("send");
				return 1;
			}
			o += n;
		}
		olen = 0;
		ssize_t n = recv(s, ib + ilen, IBUF - ilen, 0);
		if (n <= 0) {
			perror("recv");
			return 1;
		}
		ilen += n;
		double t = now();
		if (!measuring && t >= from) {
			measuring = 1, c0 = cpu(), from = t, end = t + runtime;
		}
		if (measuring && t >= end)
			stopping = 1;
		size_t off = 0;
		for (; ilen - off >= psz; off += psz) {
			struct rsp *p = (void *)(ib + off);
			if (p->status || p->tag >= (uint32_t)qd) {
				fprintf(stderr, "loopcal-client: I/O error\n");
				return 1;
			}
			out--;
			if (measuring && !stopping) {
				ios++;
				latsum += t - t0[p->tag];
			}
			if (!stopping) {
				struct req *r = (void *)(ob + olen);
				r->op = wr, r->tag = p->tag, r->block = next() % blocks;
				t0[p->tag] = t;
				olen += rsz;
				out++;
			}
		}
		memmove(ib, ib + off, ilen - off);
		ilen -= off;
	}
	double el = end - from, c = cpu() - c0;
	if (ios == 0) {
		fprintf(stderr, "loopcal-client: nothing completed\n");
		return 1;
	}
	printf("iops=%.0f lat_mean_us=%.1f client_cpu_us=%.2f ios=%ld\n", ios / el, latsum / ios * 1e6, c / ios * 1e6, ios);
	return 0;
}
