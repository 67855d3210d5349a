/*T:775 The host side of the virtio-net benchmark.
 *
 *   net_host tap-tx <n> <size>      host limit, guest->host direction: write n
 *                                   frames (with a 12-byte virtio_net_hdr) into a
 *                                   tap of our own, as lguest's device does
 *   net_host tap-rx <n> <size>      host limit, host->guest direction: send n
 *                                   frames into a tap of our own through a packet
 *                                   socket and read them from the tap fd
 *   net_host inject <ifname> <n> <size>
 *                                   send n frames into lguest's tap for its guest
 *
 * Frames are broadcast, EtherType 0x88b5 (local experimental), so the host
 * stack only counts them. Prints: BENCH-NET-HOST: <tx|rx|inject> <frames> <size> <ns>
 *
 * The 64 KiB TSO modes (T:777) print BENCH-NET-HOST: <sink|rx|inject> <frames> <bytes> <ns>:
 *
 *   net_host tso-sink <ifname> <n>  guest->host: say hello to the guest behind
 *                                   lguest's tap, then count the segments it sends
 *                                   (a packet socket; <ns> from the first to the
 *                                   last by the kernel's receive timestamps)
 *   net_host tso-tx <n>             its host limit: write n segments into a tap of
 *                                   our own and count them the same way
 *   net_host tso-inject <ifname> <n>
 *                                   host->guest: send n segments into lguest's tap
 *   net_host tso-rx <n>             its host limit: send n segments into a tap of
 *                                   our own and read them from the tap fd :*/
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define VNET_HDR 12
#define TSO_MSS 1448
#define TSO_PAYLOAD (45 * TSO_MSS)
#define TSO_HEADERS (14 + 20 + 20)
#define TSO_FRAME (TSO_HEADERS + TSO_PAYLOAD)
#define TSO_PORT 9
#define IDLE_MS 2000

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void frame(uint8_t *f, size_t size)
{
	memset(f, 0xff, 6);
	static const uint8_t src[6] = { 0x02, 0x6c, 0x67, 0x68, 0x6f, 0x73 };
	memcpy(f + 6, src, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	for (size_t k = 14; k < size; k++)
		f[k] = (uint8_t)k;
}

static int open_tap(char *name, unsigned offload)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "bench%d");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	int hdr = VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    ioctl(fd, TUNSETOFFLOAD, offload) < 0)
		return -1;
	strcpy(name, ifr.ifr_name);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return -1;
	close(s);
	return fd;
}

#include "net_tso.h"

static int if_mac(const char *ifname, uint8_t mac[6])
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	int r = s < 0 ? -1 : ioctl(s, SIOCGIFHWADDR, &ifr);
	if (s >= 0)
		close(s);
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return r;
}

static int set_addr(const char *ifname, uint32_t addr)
{
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	struct sockaddr_in *in = (struct sockaddr_in *)&ifr.ifr_addr;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = addr;
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	int r = s < 0 || ioctl(s, SIOCSIFADDR, &ifr) < 0 ? -1 : 0;
	in->sin_addr.s_addr = htonl(0xffffff00);
	if (r == 0 && ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		r = -1;
	if (s >= 0)
		close(s);
	return r;
}

/* Counts the TCP segments to TSO_PORT that arrive at `ifname` from its wire
 * (PACKET_HOST), as the host stack takes them in. */
struct sink {
	int s;
	uint64_t n, frames, bytes, first, last;
};

static int sink_open(struct sink *k, const char *ifname, uint64_t n)
{
	memset(k, 0, sizeof(*k));
	k->n = n;
	k->s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	struct sockaddr_ll at = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
				  .sll_ifindex = (int)if_nametoindex(ifname) };
	int big = 64 << 20;
	if (k->s < 0 || at.sll_ifindex == 0 || bind(k->s, (struct sockaddr *)&at, sizeof(at)) < 0)
		return -1;
	setsockopt(k->s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
	return setsockopt(k->s, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int));
}

/* One frame if one waits within `ms`: 1 if it was ours, 0 if not, -1 if none came. */
static int sink_one(struct sink *k, int ms)
{
	struct pollfd p = { .fd = k->s, .events = POLLIN };
	if (poll(&p, 1, ms) <= 0)
		return -1;
	uint8_t head[64];
	struct sockaddr_ll from;
	union {
		struct cmsghdr c;
		char room[CMSG_SPACE(sizeof(struct timespec))];
	} ctl;
	struct iovec iov = { head, sizeof(head) };
	struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1,
			    .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
	ssize_t len = recvmsg(k->s, &m, MSG_TRUNC);
	if (len < TSO_HEADERS || from.sll_pkttype != PACKET_HOST || head[14 + 9] != IPPROTO_TCP ||
	    (head[14 + 20 + 2] << 8 | head[14 + 20 + 3]) != TSO_PORT)
		return 0;
	/* When the stack took it in, not when we got round to reading it. */
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	struct timespec ts;
	if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
		memcpy(&ts, CMSG_DATA(c), sizeof(ts));
	else
		clock_gettime(CLOCK_REALTIME, &ts);	/* the clock the kernel's stamps use */
	k->last = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	if (k->frames++ == 0)
		k->first = k->last;
	k->bytes += (uint64_t)len;
	return 1;
}

static void sink_print(struct sink *k)
{
	printf("BENCH-NET-HOST: sink %llu %llu %llu\n", (unsigned long long)k->frames, (unsigned long long)k->bytes,
	       (unsigned long long)(k->last - k->first));
}

static void *sink_run(void *arg)
{
	struct sink *k = arg;
	while (k->frames < k->n && sink_one(k, IDLE_MS) >= 0)
		;
	return NULL;
}

static int tso_sink(const char *ifname, uint64_t n)
{
	struct sink k;
	uint8_t mac[6], hello[60];
	if (sink_open(&k, ifname, n) < 0 || if_mac(ifname, mac) < 0) {
		perror(ifname);
		return 1;
	}
	frame(hello, sizeof(hello));
	memcpy(hello + 6, mac, 6);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_protocol = htons(0x88b5),
				  .sll_ifindex = (int)if_nametoindex(ifname), .sll_halen = 6 };
	memset(to.sll_addr, 0xff, 6);
	for (int tries = 0; k.frames == 0 && tries < 30; tries++) {
		if (sendto(k.s, hello, sizeof(hello), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("hello");
			return 1;
		}
		for (uint64_t t0 = now_ns(); k.frames == 0 && now_ns() - t0 < 1000000000ULL;)
			sink_one(&k, 100);
	}
	sink_run(&k);
	sink_print(&k);
	return 0;
}

static int tso_tx(uint64_t n)
{
	char name[IFNAMSIZ];
	int fd = open_tap(name, 0);
	uint32_t me = htonl(0x0a610001), peer = htonl(0x0a610002);	/* 10.97.0.1, .2 */
	uint8_t mac[6];
	static const uint8_t src[6] = { 0x02, 0x6c, 0x67, 0x68, 0x6f, 0x73 };
	struct sink k;
	if (fd < 0 || set_addr(name, me) < 0 || if_mac(name, mac) < 0 || sink_open(&k, name, n) < 0) {
		perror("tap");
		return 1;
	}
	static uint8_t buf[VNET_HDR + TSO_FRAME];
	tso_frame(buf, mac, src, peer, me);
	pthread_t t;
	pthread_create(&t, NULL, sink_run, &k);
	for (uint64_t i = 0; i < n; i++)
		if (write(fd, buf, sizeof(buf)) < 0) {
			perror("write tap");
			return 1;
		}
	pthread_join(t, NULL);
	sink_print(&k);
	return 0;
}

struct inject {
	const char *ifname;
	uint64_t n;
	size_t size;
	uint64_t ns;
	int tso;
};

static void *inject(void *arg)
{
	struct inject *in = arg;
	int s = socket(AF_PACKET, SOCK_RAW, 0);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(in->ifname),
				  .sll_halen = 6 };
	memset(to.sll_addr, 0xff, 6);
	static uint8_t buf[VNET_HDR + TSO_FRAME];
	uint8_t *f = buf;
	size_t len = in->size;
	if (in->tso) {
		int on = 1;
		static const uint8_t src[6] = { 0x02, 0x6c, 0x67, 0x68, 0x6f, 0x73 };
		tso_frame(buf, to.sll_addr, src, htonl(0x0a630001), htonl(0x0a630002));
		/* A packet socket takes the 10-byte struct virtio_net_hdr, without num_buffers. */
		memmove(buf + 2, buf, sizeof(struct virtio_net_hdr));
		f = buf + 2;
		to.sll_protocol = htons(ETH_P_IP);
		len = sizeof(struct virtio_net_hdr) + TSO_FRAME;
		if (s >= 0 && setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) < 0)
			perror("PACKET_VNET_HDR");
	} else {
		frame(buf, in->size);
	}
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; s >= 0 && to.sll_ifindex > 0 && i < in->n; i++)
		if (sendto(s, f, len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			perror("inject");
			break;
		}
	in->ns = now_ns() - t0;
	if (s >= 0)
		close(s);
	return NULL;
}

/* Reads from our own tap what `in` sends into it; counts frames of `want` bytes. */
static void receive(int fd, struct inject *in, int tso)
{
	static uint8_t buf[VNET_HDR + 65550];
	pthread_t t;
	pthread_create(&t, NULL, inject, in);
	uint64_t got = 0, first = 0, last = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < in->n && poll(&p, 1, 1000) > 0) {
		ssize_t len = read(fd, buf, sizeof(buf));
		if (len < VNET_HDR + 14)
			continue;
		if (tso ? len != VNET_HDR + TSO_FRAME || buf[1] != VIRTIO_NET_HDR_GSO_TCPV4
			: buf[VNET_HDR + 12] != 0x88 || buf[VNET_HDR + 13] != 0xb5)
			continue;	/* not ours: the host's own IPv6 chatter */
		last = now_ns();
		if (got++ == 0)
			first = last;
	}
	pthread_join(t, NULL);
	printf("BENCH-NET-HOST: rx %llu %zu %llu\n", (unsigned long long)got, tso ? (size_t)TSO_FRAME : in->size,
	       (unsigned long long)(last - first));
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: net_host tap-tx|tap-rx <n> <size> | inject <ifname> <n> <size>\n"
				"       net_host tso-tx|tso-rx <n> | tso-sink|tso-inject <ifname> <n>\n");
		return 2;
	}
	if (!strcmp(argv[1], "tso-sink") && argc == 4)
		return tso_sink(argv[2], strtoull(argv[3], NULL, 10));
	if (!strcmp(argv[1], "tso-tx"))
		return tso_tx(strtoull(argv[2], NULL, 10));
	if ((!strcmp(argv[1], "inject") && argc == 5) || (!strcmp(argv[1], "tso-inject") && argc == 4)) {
		int tso = argv[1][0] == 't';
		struct inject in = { argv[2], strtoull(argv[3], NULL, 10), tso ? TSO_FRAME : (size_t)atoi(argv[4]), 0,
				     tso };
		inject(&in);
		printf("BENCH-NET-HOST: inject %llu %zu %llu\n", (unsigned long long)in.n, in.size,
		       (unsigned long long)in.ns);
		return 0;
	}
	char name[IFNAMSIZ];
	if (!strcmp(argv[1], "tso-rx")) {
		int fd = open_tap(name, TUN_F_CSUM | TUN_F_TSO4);
		if (fd < 0) {
			perror("tap");
			return 1;
		}
		struct inject in = { name, strtoull(argv[2], NULL, 10), TSO_FRAME, 0, 1 };
		receive(fd, &in, 1);
		return 0;
	}
	if (argc < 4)
		return 2;
	uint64_t n = strtoull(argv[2], NULL, 10);
	size_t size = (size_t)atoi(argv[3]);
	if (size < 60 || size > 1514)
		return 2;
	int fd = open_tap(name, 0);
	if (fd < 0) {
		perror("tap");
		return 1;
	}
	if (!strcmp(argv[1], "tap-tx")) {
		static uint8_t buf[VNET_HDR + 1514];
		memset(buf, 0, VNET_HDR);
		frame(buf + VNET_HDR, size);
		uint64_t t0 = now_ns();
		for (uint64_t i = 0; i < n; i++)
			if (write(fd, buf, VNET_HDR + size) < 0) {
				perror("write tap");
				return 1;
			}
		printf("BENCH-NET-HOST: tx %llu %zu %llu\n", (unsigned long long)n, size,
		       (unsigned long long)(now_ns() - t0));
		return 0;
	}
	struct inject in = { name, n, size, 0, 0 };
	receive(fd, &in, 0);
	return 0;
}
