/*
 * virtio-net: bring the card up, read its MAC, post receive buffers, then
 * talk to the host end of the wire the way any IPv4 host would: an ARP
 * request for the peer (lguest.peer=) from our own address (lguest.ip=),
 * then an ICMP echo request to the MAC the reply gave, answering the host's
 * own ARP requests for us meanwhile. Everything is a few hundred bytes of
 * work, as the CPU here is emulated.
 */
#include "virtio.h"

#define NET_F_MAC (1UL << 5)
#define NET_F_STATUS (1UL << 16)
#define HDR 12			/* struct virtio_net_hdr_v1 */
#define RX_BUFS 4
#define RX_LEN (HDR + 1514)
#define MAX_FRAMES 32		/* frames we look at before giving up */

static u8 rx_buf[RX_BUFS][RX_LEN];
static int rx_head[RX_BUFS];
static u8 tx_hdr[HDR];
static u8 tx_frame[128];
static u8 mac[6], peer_mac[6], my_ip[4], peer_ip[4];

static void put_mac(const u8 *m)
{
	for (int i = 0; i < 6; i++) {
		if (i)
			putc(':');
		puthexbytes(&m[i], 1);
	}
}

static void put_ip(const u8 *ip)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			putc('.');
		putdec(ip[i]);
	}
}

/* "a.b.c.d" from the command line; 0 if missing or malformed. */
static int param_ip(const char *name, u8 *out)
{
	u32 len, part = 0, n = 0, digits = 0;
	const char *s = cmdline_param(name, &len);
	if (!s)
		return 0;
	for (u32 i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (!digits || part > 255 || n >= 4)
				return 0;
			out[n++] = (u8)part;
			part = digits = 0;
		} else if (s[i] >= '0' && s[i] <= '9') {
			part = part * 10 + (u32)(s[i] - '0');
			digits++;
		} else {
			return 0;
		}
	}
	return n == 4;
}

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }

static u16 csum(const u8 *p, u32 n)
{
	u32 s = 0;
	for (u32 i = 0; i + 1 < n; i += 2)
		s += be16(p + i);
	if (n & 1)
		s += (u32)p[n - 1] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (u16)~s;
}

/* Sends tx_frame[0..len) behind a zero header, as two buffers. */
static u32 send(struct vdev *d, u32 len)
{
	struct vbuf b[2] = { { tx_hdr, HDR, 0 }, { tx_frame, len, 0 } };
	u32 head;
	if (vq_add(d, 1, b, 2) < 0)
		return 0xffffffff;
	return vq_wait(d, 1, &head);
}

static void ether(const u8 *dst, u16 type)
{
	memcpy(tx_frame, dst, 6);
	memcpy(tx_frame + 6, mac, 6);
	put16(tx_frame + 12, type);
}

static u32 arp(struct vdev *d, u16 op, const u8 *dst_mac, const u8 *target_ip)
{
	static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	u8 *a = tx_frame + 14;
	ether(op == 1 ? bcast : dst_mac, 0x0806);
	put16(a, 1);			/* Ethernet */
	put16(a + 2, 0x0800);		/* IPv4 */
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, my_ip, 4);
	if (op == 1)
		memset(a + 18, 0, 6);
	else
		memcpy(a + 18, dst_mac, 6);
	memcpy(a + 24, target_ip, 4);
	return send(d, 14 + 28);
}

static u32 ping(struct vdev *d)
{
	u8 *ip = tx_frame + 14, *icmp = ip + 20;
	ether(peer_mac, 0x0800);
	memset(ip, 0, 20 + 8 + 32);
	ip[0] = 0x45;
	put16(ip + 2, 20 + 8 + 32);
	ip[8] = 64;			/* TTL */
	ip[9] = 1;			/* ICMP */
	memcpy(ip + 12, my_ip, 4);
	memcpy(ip + 16, peer_ip, 4);
	put16(ip + 10, csum(ip, 20));
	icmp[0] = 8;			/* echo request */
	put16(icmp + 4, 0x4c47);	/* id "LG" */
	put16(icmp + 6, 1);		/* seq */
	for (int i = 0; i < 32; i++)
		icmp[8 + i] = (u8)('a' + i % 26);
	put16(icmp + 2, csum(icmp, 8 + 32));
	return send(d, 14 + 20 + 8 + 32);
}

/* What a received frame was, for the loop in test_net. */
enum rx_kind { RX_OTHER, RX_ARP_REPLY, RX_ECHO_REPLY };

static enum rx_kind classify(struct vdev *d, const u8 *f, u32 len)
{
	if (len < 14 + 28)
		return RX_OTHER;
	const u8 *p = f + 14;
	if (be16(f + 12) == 0x0806 && be16(p) == 1 && be16(p + 2) == 0x0800 && !memcmp(p + 24, my_ip, 4)) {
		if (be16(p + 6) == 2 && !memcmp(p + 14, peer_ip, 4)) {
			memcpy(peer_mac, p + 8, 6);
			return RX_ARP_REPLY;
		}
		if (be16(p + 6) == 1) {
			u8 who[6], ip[4];
			memcpy(who, p + 8, 6);
			memcpy(ip, p + 14, 4);
			arp(d, 2, who, ip);	/* the host asks for us: answer */
		}
		return RX_OTHER;
	}
	if (be16(f + 12) == 0x0800 && len >= 14 + 20 + 8 && p[9] == 1 && !memcmp(p + 12, peer_ip, 4)) {
		const u8 *icmp = p + 4 * (p[0] & 15);
		if (icmp[0] == 0 && be16(icmp + 4) == 0x4c47 && be16(icmp + 6) == 1)
			return RX_ECHO_REPLY;
	}
	return RX_OTHER;
}

/* Waits for a frame of kind `want`, reposting every buffer it reads. */
static int receive(struct vdev *d, enum rx_kind want)
{
	for (int n = 0; n < MAX_FRAMES; n++) {
		u32 head, len = vq_wait(d, 0, &head);
		int i = 0;
		while (i < RX_BUFS && rx_head[i] != (int)head)
			i++;
		if (i == RX_BUFS || len < HDR || len > RX_LEN)
			return 0;
		enum rx_kind k = classify(d, rx_buf[i] + HDR, len - HDR);
		struct vbuf b = { rx_buf[i], RX_LEN, 1 };
		rx_head[i] = vq_add(d, 0, &b, 1);
		if (k == want)
			return 1;
	}
	return 0;
}

void test_net(struct vdev *d)
{
	int r = virtio_init(d, NET_F_MAC | NET_F_STATUS, 2);
	puts("NET-INIT: ");
	putdec((u64)(r < 0 ? -r : 0));
	puts("\n");
	if (r < 0)
		return;
	for (int i = 0; i < 6; i++)
		mac[i] = virtio_config8(d, (u32)i);
	puts("NET-MAC: ");
	put_mac(mac);
	puts("\nNET-STATUS: ");
	putdec(virtio_config8(d, 6) | (u32)virtio_config8(d, 7) << 8);
	puts("\n");
	if (!param_ip("lguest.ip", my_ip) || !param_ip("lguest.peer", peer_ip)) {
		puts("NET-SKIP: no lguest.ip= and lguest.peer= on the command line\n");
		return;
	}
	for (int i = 0; i < RX_BUFS; i++) {
		struct vbuf b = { rx_buf[i], RX_LEN, 1 };
		rx_head[i] = vq_add(d, 0, &b, 1);
	}
	puts("NET-TX: ");
	putdec(arp(d, 1, 0, peer_ip));
	puts("\nNET-RX: ");
	if (receive(d, RX_ARP_REPLY)) {
		puts("arp-reply ");
		put_ip(peer_ip);
		putc(' ');
		put_mac(peer_mac);
	} else {
		puts("none");
	}
	puts("\nNET-PING: ");
	ping(d);
	puts(receive(d, RX_ECHO_REPLY) ? "ok " : "none ");
	put_ip(peer_ip);
	puts("\n");
}
