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
 * stack only counts them. Prints: BENCH-NET-HOST: <tx|rx|inject> <frames> <size> <ns> :*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VNET_HDR 12

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

static int open_tap(char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "bench%d");
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	int hdr = VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
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

struct inject {
	const char *ifname;
	uint64_t n;
	size_t size;
	uint64_t ns;
};

static void *inject(void *arg)
{
	struct inject *in = arg;
	int s = socket(AF_PACKET, SOCK_RAW, 0);
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(in->ifname),
				  .sll_halen = 6 };
	memset(to.sll_addr, 0xff, 6);
	uint8_t buf[1514];
	frame(buf, in->size);
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; s >= 0 && to.sll_ifindex > 0 && i < in->n; i++)
		if (sendto(s, buf, in->size, 0, (struct sockaddr *)&to, sizeof(to)) < 0)
			break;
	in->ns = now_ns() - t0;
	if (s >= 0)
		close(s);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: net_host tap-tx|tap-rx <n> <size> | inject <ifname> <n> <size>\n");
		return 2;
	}
	if (!strcmp(argv[1], "inject")) {
		struct inject in = { argv[2], strtoull(argv[3], NULL, 10), (size_t)atoi(argv[4]), 0 };
		inject(&in);
		printf("BENCH-NET-HOST: inject %llu %zu %llu\n", (unsigned long long)in.n, in.size,
		       (unsigned long long)in.ns);
		return 0;
	}
	uint64_t n = strtoull(argv[2], NULL, 10);
	size_t size = (size_t)atoi(argv[3]);
	if (size < 60 || size > 1514)
		return 2;
	char name[IFNAMSIZ];
	int fd = open_tap(name);
	if (fd < 0) {
		perror("tap");
		return 1;
	}
	uint8_t buf[VNET_HDR + 65536];
	if (!strcmp(argv[1], "tap-tx")) {
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
	struct inject in = { name, n, size, 0 };
	pthread_t t;
	pthread_create(&t, NULL, inject, &in);
	uint64_t got = 0, first = 0, last = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < n && poll(&p, 1, 1000) > 0) {
		ssize_t len = read(fd, buf, sizeof(buf));
		if (len < VNET_HDR + 14 || buf[VNET_HDR + 12] != 0x88 || buf[VNET_HDR + 13] != 0xb5)
			continue;	/* not ours: the host's own IPv6 chatter */
		last = now_ns();
		if (got++ == 0)
			first = last;
	}
	pthread_join(t, NULL);
	printf("BENCH-NET-HOST: rx %llu %zu %llu\n", (unsigned long long)got, size, (unsigned long long)(last - first));
	return 0;
}
