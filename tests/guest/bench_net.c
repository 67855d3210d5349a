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
 * (cycles from the first frame to the last) and reset the machine. :*/
#include "guest.h"
#include "virtio.h"
#include "user.h"

#define NET_HDR 12			/* virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_BUF ((u8 *)0x4000000UL)	/* 64 MiB: one 2 KiB buffer per descriptor */
#define NET_BUF_SIZE 2048
#define RX_IDLE_CYCLES (1UL << 31)	/* under a second: the sender has stopped */
#define RX_WAIT_CYCLES (1UL << 37)	/* about a minute: nobody is sending */

static struct net_bench {
	struct vdev *d;
	u64 n, size, rx;
} nb;

static u8 *buf_for(u32 q)
{
	return NET_BUF + (u64)nb.d->q[q].free_head * NET_BUF_SIZE;
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

static void user_net_tx(u64 unused)
{
	(void)unused;
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

static void user_net_rx(u64 unused)
{
	(void)unused;
	while (nb.d->q[0].num_free > 0) {
		struct vbuf b = { buf_for(0), NET_BUF_SIZE, 1 };
		vq_add(nb.d, 0, &b, 1);
	}
	puts("BENCH-NET-READY\n");
	u64 got = 0, start = rdtsc(), t0 = 0, last = 0;
	while (got < nb.n) {
		u32 head, len;
		if (vq_poll(nb.d, 0, &head, &len)) {
			const u8 *eth = NET_BUF + (u64)head * NET_BUF_SIZE + NET_HDR;
			if (head < VQ_SIZE && len >= NET_HDR + 14 && eth[12] == 0x88 && eth[13] == 0xb5) {
				last = rdtsc();
				if (got++ == 0)
					t0 = last;
			}
			struct vbuf b = { buf_for(0), NET_BUF_SIZE, 1 };
			vq_add(nb.d, 0, &b, 1);
		} else if (got ? rdtsc() - last > RX_IDLE_CYCLES : rdtsc() - start > RX_WAIT_CYCLES) {
			break;
		}
	}
	report("rx", got, last - t0);
}

static void build_frames(void)
{
	for (u32 i = 0; i < VQ_SIZE; i++) {
		u8 *f = NET_BUF + i * NET_BUF_SIZE;
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
	int r = nb.d ? virtio_init(nb.d, 0, 2) : -100;
	if (r != 0 || nb.size < 60 || nb.size > 1514) {
		puts("BENCH-NET-ERROR: ");
		putdec((u64)(r < 0 ? -r : r));
		puts("\n");
		return;
	}
	nb.d->q[0].avail->flags = 1;		/* VRING_AVAIL_F_NO_INTERRUPT */
	nb.d->q[1].avail->flags = 1;
	ioapic_mask(nb.d->irq);
	build_frames();
	run_user_noreturn(nb.rx ? user_net_rx : user_net_tx, 0);
}
