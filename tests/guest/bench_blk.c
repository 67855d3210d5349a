/*T:771 bench.blk=N: the virtio-blk benchmark's driver loop. The device is brought
 * up in ring 0 (emulated on PVM, but only once) with a request queue of its
 * own, 128 entries (the shared driver's 16-entry rings would cap the queue
 * depth at 5), then the loop runs in ring 3 (native): it keeps up to
 * bench.blk.qd requests of bench.blk.size KiB in flight, sequential or
 * random (bench.blk.rand=1), reads or writes (bench.blk.op=1), rings the
 * doorbell once per batch unless the device said it need not, and polls the
 * used ring instead of taking interrupts (avail.flags asks for none, and the
 * IOAPIC pin is masked as well: an interrupt arriving in ring 3 under PVM
 * would not come back). Each request slot owns three fixed descriptors:
 * header, data, status. It prints
 *
 *   BENCH-BLK: <n> <size-KiB> <qd> <r|w> <seq|rand> <cycles> <errors>
 *
 * and resets the machine. :*/
#include "guest.h"
#include "virtio.h"
#include "user.h"

#define BLK_MAX_QD 32
#define RING 128
#define BLK_RING ((u8 *)0x3ff0000UL)	/* 64 MiB - 64 KiB: the ring, 3 pages */
#define BLK_DATA ((u8 *)0x4000000UL)	/* 64 MiB: buffers, qd x size (so >= 128 MiB of RAM) */
#define STALL_CYCLES (1UL << 32)		/* about a second and a half at 3 GHz */

/* virtio-mmio registers and status bits (virtio 1.x, 4.2.2). */
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_STATUS 0x070
#define R_QUEUE_DESC 0x080
#define R_QUEUE_AVAIL 0x090
#define R_QUEUE_USED 0x0a0
#define NEEDS_RESET 0x40

struct blk_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

struct big_avail { u16 flags, idx, ring[RING], used_event; };
struct big_used { u16 flags, idx; struct vring_used_elem ring[RING]; u16 avail_event; };

static struct blk_bench {
	struct vdev *d;
	u64 n, size, qd, write, rand, sectors;
	struct vring_desc *desc;
	struct big_avail *avail;
	struct big_used *used;
} bb;

static struct blk_hdr hdr[BLK_MAX_QD];
static volatile u8 status[BLK_MAX_QD];

static u64 param(const char *name, u64 dflt)
{
	u32 len;
	const char *v = cmdline_param(name, &len);
	return v ? parse_num(v, len) : dflt;
}

static void wr(u32 reg, u32 v) { mmio_write32(bb.d->base + reg, v); }
static u32 rd(u32 reg) { return mmio_read32(bb.d->base + reg); }
static void wr64(u32 reg, const void *p) { wr(reg, (u32)(u64)p); wr(reg + 4, (u32)((u64)p >> 32)); }

/* The spec's bring-up (3.1.1) with our own 128-entry request queue. */
static int bring_up(void)
{
	wr(R_STATUS, 0);
	wr(R_STATUS, 1);
	wr(R_STATUS, 1 | 2);
	wr(R_DEVICE_FEATURES_SEL, 1);
	if (!(rd(R_DEVICE_FEATURES) & 1))	/* VIRTIO_F_VERSION_1 */
		return 1;
	wr(R_DRIVER_FEATURES_SEL, 0);
	wr(R_DRIVER_FEATURES, 0);
	wr(R_DRIVER_FEATURES_SEL, 1);
	wr(R_DRIVER_FEATURES, 1);
	wr(R_STATUS, 1 | 2 | 8);
	if (!(rd(R_STATUS) & 8))
		return 2;
	memset(BLK_RING, 0, 3 * 4096);
	bb.desc = (struct vring_desc *)BLK_RING;
	bb.avail = (struct big_avail *)(BLK_RING + 4096);
	bb.used = (struct big_used *)(BLK_RING + 8192);
	bb.avail->flags = 1;			/* VRING_AVAIL_F_NO_INTERRUPT */
	wr(R_QUEUE_SEL, 0);
	if (rd(R_QUEUE_NUM_MAX) < RING)
		return 3;
	wr(R_QUEUE_NUM, RING);
	wr64(R_QUEUE_DESC, bb.desc);
	wr64(R_QUEUE_AVAIL, bb.avail);
	wr64(R_QUEUE_USED, bb.used);
	wr(R_QUEUE_READY, 1);
	wr(R_STATUS, 1 | 2 | 8 | 4);
	return (rd(R_STATUS) & 4) ? 0 : 4;
}

/* Slot s owns descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
static void lay_out_slots(void)
{
	for (u32 s = 0; s < bb.qd; s++) {
		struct vring_desc *d = &bb.desc[3 * s];
		d[0] = (struct vring_desc){ (u64)&hdr[s], sizeof(hdr[s]), VRING_DESC_F_NEXT, (u16)(3 * s + 1) };
		d[1] = (struct vring_desc){ (u64)(BLK_DATA + s * bb.size), (u32)bb.size,
					    (u16)(VRING_DESC_F_NEXT | (bb.write ? 0 : VRING_DESC_F_WRITE)), (u16)(3 * s + 2) };
		d[2] = (struct vring_desc){ (u64)&status[s], 1, VRING_DESC_F_WRITE, 0 };
		hdr[s] = (struct blk_hdr){ .type = bb.write ? 1 : 0, .reserved = 0, .sector = 0 };
	}
}

static void user_blk_bench(u64 unused)
{
	(void)unused;
	u64 per = bb.size / 512, blocks = bb.sectors / per, next = 0, rng = 0x9e3779b97f4a7c15UL;
	u64 issued = 0, done = 0, errors = 0;
	u16 avail_idx = 0, last_used = 0;
	u32 free_slots[BLK_MAX_QD], nfree = 0;
	for (u32 s = 0; s < bb.qd; s++)
		free_slots[nfree++] = s;
	u64 t0 = rdtsc(), last = t0;
	while (done < bb.n) {
		int posted = 0;
		while (issued < bb.n && nfree > 0) {
			u64 block;
			if (bb.rand) {
				rng ^= rng << 13;
				rng ^= rng >> 7;
				rng ^= rng << 17;
				block = rng % blocks;
			} else {
				block = next++ % blocks;
			}
			u32 s = free_slots[--nfree];
			hdr[s].sector = block * per;
			status[s] = 0xff;
			bb.avail->ring[avail_idx % RING] = (u16)(3 * s);
			avail_idx++;
			issued++;
			posted = 1;
		}
		if (posted) {
			barrier();
			bb.avail->idx = avail_idx;
			barrier();
			if (!(*(volatile u16 *)&bb.used->flags & 1))	/* VRING_USED_F_NO_NOTIFY */
				wr(R_QUEUE_NOTIFY, 0);
		}
		while (*(volatile u16 *)&bb.used->idx != last_used) {
			barrier();
			u32 s = bb.used->ring[last_used % RING].id / 3;
			last_used++;
			if (s >= bb.qd || status[s] != 0)
				errors++;
			if (s < bb.qd)
				free_slots[nfree++] = s;
			done++;
			last = rdtsc();
		}
		if (rdtsc() - last > STALL_CYCLES) {
			/* Nothing back for a long while: if the device gave up on
			 * us (DEVICE_NEEDS_RESET), say so instead of spinning on. */
			last = rdtsc();
			if (rd(R_STATUS) & NEEDS_RESET) {
				puts("BENCH-BLK-ERROR: device needs reset\n");
				user_exit();
			}
		}
	}
	u64 cycles = rdtsc() - t0;
	puts("BENCH-BLK: ");
	putdec(bb.n);
	puts(" ");
	putdec(bb.size / 1024);
	puts(" ");
	putdec(bb.qd);
	puts(bb.write ? " w " : " r ");
	puts(bb.rand ? "rand " : "seq ");
	putdec(cycles);
	puts(" ");
	putdec(errors);
	puts("\nDONE\n");
	user_exit();
}

void blk_bench_start(u64 n)
{
	static struct vdev devs[VIRTIO_MAX_DEVICES];
	int count = virtio_find(devs, VIRTIO_MAX_DEVICES);
	for (int i = 0; i < count && !bb.d; i++)
		if (devs[i].id == VIRTIO_ID_BLOCK)
			bb.d = &devs[i];
	bb.n = n;
	bb.size = param("bench.blk.size", 4) * 1024;
	bb.qd = param("bench.blk.qd", 1);
	bb.write = param("bench.blk.op", 0) != 0;
	bb.rand = param("bench.blk.rand", 0) != 0;
	if (bb.qd < 1)
		bb.qd = 1;
	if (bb.qd > BLK_MAX_QD)
		bb.qd = BLK_MAX_QD;
	int r = bb.d ? bring_up() : 100;
	if (r == 0) {
		bb.sectors = virtio_config32(bb.d, 0) | (u64)virtio_config32(bb.d, 4) << 32;
		ioapic_mask(bb.d->irq);
	}
	if (r != 0 || bb.size < 512 || bb.size % 512 || bb.sectors < bb.size / 512 ||
	    (u64)BLK_DATA + bb.qd * bb.size > 0x8000000UL) {
		puts("BENCH-BLK-ERROR: ");
		putdec((u64)r);
		puts("\n");
		return;
	}
	lay_out_slots();
	run_user_noreturn(user_blk_bench, 0);
}
