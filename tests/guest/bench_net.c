/*T:776 bench.net=N: the virtio-net benchmark's driver loop, in ring 3 like
 * bench_blk.c (polling, interrupts suppressed and masked). With
 * bench.net.dir=0 the guest sends N frames of bench.net.size bytes (an
 * Ethernet header and payload, broadcast, EtherType 0x88b5 so the host
 * stack counts and drops them) with up to 16 in flight; with
 * bench.net.dir=1 it posts 16 receive buffers, says BENCH-NET-READY, and
 * counts frames of that EtherType (not the host's own IPv6 chatter) until
 * N arrived or none came for a while. Both print
 *
 *   BENCH-NET: <tx|rx> <frames> <size> <cycles>
 *
 * (cycles from the first frame to the last) and reset the machine.
 *
 * bench.net.tso=1 does the same with 64 KiB TCP/IPv4 segments (see T:777). :*/
#include "guest.h"
#include "virtio.h"
#include "user.h"

#define NET_HDR 12			/* virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_BUF ((u8 *)0x4000000UL)	/* 64 MiB: one buffer per descriptor */
#define NET_BUF_SIZE 2048
#define RX_IDLE_CYCLES (1UL << 31)	/* under a second: the sender has stopped */
#define RX_WAIT_CYCLES (1UL << 37)	/* about a minute: nobody is sending */

/* Feature bits (<linux/virtio_net.h>) and header values for the TSO loops. */
#define F_CSUM (1UL << 0)
#define F_GUEST_CSUM (1UL << 1)
#define F_GUEST_TSO4 (1UL << 7)
#define F_HOST_TSO4 (1UL << 11)
#define F_MRG_RXBUF (1UL << 15)
#define HDR_F_NEEDS_CSUM 1
#define GSO_TCPV4 1
#define TSO_MSS 1448
#define TSO_PAYLOAD (45 * TSO_MSS)	/* 65160: what Linux puts in a 64 KiB segment */
#define TSO_HEADERS (14 + 20 + 20)	/* Ethernet, IPv4, TCP without options */
#define TSO_FRAME (TSO_HEADERS + TSO_PAYLOAD)
#define TSO_TX_STRIDE 0x11000		/* header and a 65214-byte frame, page aligned */
#define TSO_RX_STRIDE 0x4000		/* 16 KiB merged receive buffers: 4 per segment */
#define TSO_TX_BUF (NET_BUF + 0x100000)

static struct net_bench {
	struct vdev *d;
	u64 n, size, rx, tso;
	u8 *base[2];
	u32 stride[2];
	u8 mac[6], peer[6];
} nb;

static u8 *buf_at(u32 q, u32 head)
{
	return nb.base[q] + (u64)head * nb.stride[q];
}

static u8 *buf_for(u32 q)
{
	return buf_at(q, nb.d->q[q].free_head);
}

static void post_rx(void)
{
	struct vbuf b = { buf_for(0), nb.stride[0], 1 };
	vq_add(nb.d, 0, &b, 1);
}

static void report(const char *dir, u64 frames, u64 cycles)
{
	puts("BENCH-NET: ");
	puts(dir);
	puts(" ");
	putdec(frames);
	puts(" ");
	putdec(nb.size);
	puts(" ");
	putdec(cycles);
	puts("\nDONE\n");
	user_exit();
}

static void transmit(void)
{
	u64 posted = 0, done = 0;
	u64 t0 = rdtsc();
	while (done < nb.n) {
		while (posted < nb.n && nb.d->q[1].num_free > 0) {
			struct vbuf b = { buf_for(1), (u32)(NET_HDR + nb.size), 0 };
			if (vq_add(nb.d, 1, &b, 1) < 0)
				break;
			posted++;
		}
		u32 head, len;
		while (vq_poll(nb.d, 1, &head, &len))
			done++;
	}
	report("tx", done, rdtsc() - t0);
}

static void user_net_tx(u64 unused)
{
	(void)unused;
	transmit();
}

static int ours(const u8 *eth)
{
	return eth[12] == 0x88 && eth[13] == 0xb5;
}

/* Whether used receive buffer `head`, `len` bytes long, ends a frame we count. */
static int plain_frame(u32 head, u32 len)
{
	return head < VQ_SIZE && len >= NET_HDR + 14 && ours(buf_at(0, head) + NET_HDR);
}

static int whole_segment(u32 head, u32 len);

static void user_net_rx(u64 unused)
{
	(void)unused;
	int (*counts)(u32, u32) = nb.tso ? whole_segment : plain_frame;
	while (nb.d->q[0].num_free > 0)
		post_rx();
	puts("BENCH-NET-READY\n");
	u64 got = 0, start = rdtsc(), t0 = 0, last = 0;
	while (got < nb.n) {
		u32 head, len;
		if (vq_poll(nb.d, 0, &head, &len)) {
			if (counts(head, len)) {
				last = rdtsc();
				if (got++ == 0)
					t0 = last;
			}
			post_rx();
		} else if (got ? rdtsc() - last > RX_IDLE_CYCLES : rdtsc() - start > RX_WAIT_CYCLES) {
			break;
		}
	}
	report("rx", got, last - t0);
}

static void build_frames(void)
{
	for (u32 i = 0; i < VQ_SIZE; i++) {
		u8 *f = buf_at(1, i);
		memset(f, 0, NET_HDR);
		u8 *eth = f + NET_HDR;
		memset(eth, 0xff, 6);				/* broadcast */
		static const u8 src[6] = { 0x02, 0x6c, 0x67, 0x62, 0x65, 0x6e };
		memcpy(eth + 6, src, 6);
		eth[12] = 0x88;					/* local experimental EtherType */
		eth[13] = 0xb5;
		for (u64 k = 14; k < nb.size; k++)
			eth[k] = (u8)k;
	}
}

/*T:777 The 64 KiB TSO loops. Guest to host, the driver takes CSUM and
 * HOST_TSO4 and hands the card one TCP/IPv4 segment of 65160 bytes of
 * payload per frame, the way Linux does for a socket in bulk send: a
 * virtio_net_hdr asking for the TCP checksum (NEEDS_CSUM, starting after
 * the IP header, stored 16 bytes in) and for a cut into 1448-byte segments
 * (GSO_TCPV4), in front of an Ethernet, IPv4 and TCP header whose IP
 * checksum is done and whose TCP checksum field holds only the
 * pseudo-header's sum, which the host completes. They go to the tap's own
 * address; its MAC comes from a frame the host sends first (the guest
 * waits for it after BENCH-NET-READY). Host to guest, the driver takes
 * GUEST_CSUM, GUEST_TSO4 and MRG_RXBUF, posts 16 KiB buffers, and counts
 * the frames that arrive whole: still one 64 KiB segment (GSO_TCPV4 in the
 * header), spread over num_buffers buffers. Both report bench.net.size as
 * the frame's size, 65214. :*/

static u16 fold(u64 sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (u16)sum;
}

static u64 sum16(const u8 *p, u32 n)
{
	u64 s = 0;
	for (u32 i = 0; i + 1 < n; i += 2)
		s += (u64)p[i] << 8 | p[i + 1];
	return s;
}

static void put16(u8 *p, u16 v)
{
	p[0] = (u8)(v >> 8);
	p[1] = (u8)v;
}

static void build_tso_frame(u8 *f, u32 seq)
{
	static const u8 saddr[4] = { 10, 99, 0, 2 }, daddr[4] = { 10, 99, 0, 1 };
	memset(f, 0, NET_HDR + TSO_HEADERS);
	f[0] = HDR_F_NEEDS_CSUM;
	f[1] = GSO_TCPV4;
	*(u16 *)(f + 2) = TSO_HEADERS;			/* hdr_len */
	*(u16 *)(f + 4) = TSO_MSS;			/* gso_size */
	*(u16 *)(f + 6) = 14 + 20;			/* csum_start: the TCP header */
	*(u16 *)(f + 8) = 16;				/* csum_offset: its checksum field */
	u8 *eth = f + NET_HDR, *ip = eth + 14, *tcp = ip + 20;
	memcpy(eth, nb.peer, 6);
	memcpy(eth + 6, nb.mac, 6);
	eth[12] = 0x08;					/* IPv4 */
	ip[0] = 0x45;
	put16(ip + 2, 20 + 20 + TSO_PAYLOAD);
	ip[6] = 0x40;					/* don't fragment */
	ip[8] = 64;					/* TTL */
	ip[9] = 6;					/* TCP */
	memcpy(ip + 12, saddr, 4);
	memcpy(ip + 16, daddr, 4);
	put16(ip + 10, (u16)~fold(sum16(ip, 20)));
	put16(tcp, 40000);				/* source port */
	put16(tcp + 2, 9);				/* discard */
	put16(tcp + 4, (u16)(seq >> 16));
	put16(tcp + 6, (u16)seq);
	tcp[12] = 5 << 4;				/* data offset: 20 bytes */
	tcp[13] = 0x18;					/* PSH, ACK */
	put16(tcp + 14, 0xffff);			/* window */
	put16(tcp + 16, fold(sum16(ip + 12, 8) + 6 + 20 + TSO_PAYLOAD));
}

static void user_tso_tx(u64 unused)
{
	(void)unused;
	while (nb.d->q[0].num_free > 0)
		post_rx();
	puts("BENCH-NET-READY\n");
	u64 start = rdtsc();
	for (;;) {
		u32 head, len;
		if (vq_poll(nb.d, 0, &head, &len)) {
			const u8 *eth = buf_at(0, head) + NET_HDR;
			if (head < VQ_SIZE && len >= NET_HDR + 14 && ours(eth)) {
				memcpy(nb.peer, eth + 6, 6);
				break;
			}
			post_rx();
		} else if (rdtsc() - start > RX_WAIT_CYCLES) {
			report("tx", 0, 0);
		}
	}
	for (u32 i = 0; i < VQ_SIZE; i++)
		build_tso_frame(buf_at(1, i), i * TSO_PAYLOAD);
	transmit();
}

/* A segment spans num_buffers used buffers (the first says how many): it
 * counts once its last one is back, if it arrived uncut and whole. */
static int whole_segment(u32 head, u32 len)
{
	static u64 bytes, more;
	static int whole;
	const u8 *b = buf_at(0, head % VQ_SIZE);
	if (more > 0) {
		bytes += len;
		more--;
	} else {
		u16 nbufs = *(const u16 *)(b + 10);
		whole = len >= NET_HDR + TSO_HEADERS && b[1] == GSO_TCPV4 && b[NET_HDR + 12] == 0x08 &&
			b[NET_HDR + 23] == 6;
		bytes = len >= NET_HDR ? len - NET_HDR : 0;
		more = nbufs > 0 ? nbufs - 1u : 0;
	}
	return more == 0 && whole && bytes == TSO_FRAME;
}

void net_bench_start(u64 n)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	int count = virtio_find(devs, VIRTIO_MAX_DEVICES);
	for (int i = 0; i < count && !nb.d; i++)
		if (devs[i].id == VIRTIO_ID_NET)
			nb.d = &devs[i];
	u32 len;
	const char *v;
	nb.n = n;
	nb.size = (v = cmdline_param("bench.net.size", &len)) ? parse_num(v, len) : 1514;
	nb.rx = (v = cmdline_param("bench.net.dir", &len)) ? parse_num(v, len) : 0;
	nb.tso = (v = cmdline_param("bench.net.tso", &len)) ? parse_num(v, len) : 0;
	u64 want = !nb.tso ? 0 : nb.rx ? F_GUEST_CSUM | F_GUEST_TSO4 | F_MRG_RXBUF : F_CSUM | F_HOST_TSO4;
	int r = nb.d ? virtio_init(nb.d, want, 2) : -100;
	if (r == 0 && (nb.d->features & want) != want)
		r = -101;
	if (nb.tso)
		nb.size = TSO_FRAME;
	if (r != 0 || nb.size < 60 || nb.size > (nb.tso ? TSO_FRAME : 1514)) {
		puts("BENCH-NET-ERROR: ");
		putdec((u64)(r < 0 ? -r : r));
		puts("\n");
		return;
	}
	nb.base[0] = NET_BUF;
	nb.stride[0] = nb.tso && nb.rx ? TSO_RX_STRIDE : NET_BUF_SIZE;
	nb.base[1] = nb.tso ? TSO_TX_BUF : NET_BUF;
	nb.stride[1] = nb.tso ? TSO_TX_STRIDE : NET_BUF_SIZE;
	for (u32 i = 0; i < 6; i++)
		nb.mac[i] = virtio_config8(nb.d, i);
	vq_honour_no_notify = 1;		/* as Linux's virtio_net does */
	nb.d->q[0].avail->flags = 1;		/* VRING_AVAIL_F_NO_INTERRUPT */
	nb.d->q[1].avail->flags = 1;
	ioapic_mask(nb.d->irq);
	if (nb.tso)
		run_user_noreturn(nb.rx ? user_net_rx : user_tso_tx, 0);
	build_frames();
	run_user_noreturn(nb.rx ? user_net_rx : user_net_tx, 0);
}
