/*T:530 The test guest's virtio-blk checks, the way a driver would do them:
 * read the configuration, ask for the serial, read sector 0 and a two-buffer
 * read, four reads in flight at once, then four writes in flight at once, a
 * flush, and a read back of what was written. Last, two requests the device
 * must refuse: a read past the end and an unknown type. Each step prints a
 * "BLK-...: " line; the host test compares them with the file. With
 * "blk.hold" on the command line the guest stops after the flush and
 * sleeps, so a test can kill the launcher right there. With "blk.sync" it
 * does only rounds of one write and one flush (see sync_rounds). :*/
#include "virtio.h"

#define BLK_F_SEG_MAX (1UL << 2)
#define BLK_F_RO (1UL << 5)
#define BLK_F_BLK_SIZE (1UL << 6)
#define BLK_F_FLUSH (1UL << 9)

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8

#define NREQ 4
#define WRITE_SECTOR 7
#define SYNC_ROUNDS 3
#define SYNC_SECTOR 40

struct blk_req {
	u32 type;
	u32 reserved;
	u64 sector;
	u8 status;
};

static struct blk_req reqs[NREQ];
static u8 sector0[512];
static u8 two[2][512];
static u8 multi[NREQ][512];
static u8 wbuf[NREQ][512];
static u8 rback[NREQ][512];
static u8 id[21];

/* Posts one request: the header, up to two data buffers, the status byte. */
static int blk_post(struct vdev *d, struct blk_req *r, u32 type, u64 sector,
		    u8 *buf, u32 len, u32 split, int device_writes)
{
	struct vbuf b[4];
	u32 n = 0;
	r->type = type;
	r->reserved = 0;
	r->sector = sector;
	r->status = 0xff;
	b[n++] = (struct vbuf){ r, 16, 0 };
	if (len && split) {
		b[n++] = (struct vbuf){ buf, split, device_writes };
		b[n++] = (struct vbuf){ buf + split, len - split, device_writes };
	} else if (len) {
		b[n++] = (struct vbuf){ buf, len, device_writes };
	}
	b[n++] = (struct vbuf){ &r->status, 1, 1 };
	return vq_add(d, 0, b, n);
}

/* Waits for `n` completions. */
static void blk_wait(struct vdev *d, u32 n)
{
	u32 head;
	for (u32 i = 0; i < n; i++)
		vq_wait(d, 0, &head);
}

/* One request, start to finish; returns its status (0xfe if it could not be posted). */
static u8 blk_one(struct vdev *d, u32 type, u64 sector, u8 *buf, u32 len, u32 split, int device_writes)
{
	if (blk_post(d, &reqs[0], type, sector, buf, len, split, device_writes) < 0)
		return 0xfe;
	blk_wait(d, 1);
	return reqs[0].status;
}

static void line(const char *key, u64 v)
{
	puts(key);
	putdec(v);
	puts("\n");
}

static void sum_line(const char *key, u8 status, const void *p, u32 n)
{
	puts(key);
	putdec(status);
	puts(" ");
	puthex(fnv1a(p, n));
	puts("\n");
}

/* One request, posted alone; returns once both its used entry and an
 * interrupt have come, so the device has signalled this request before the
 * next one is posted (a trace of the launcher can then tell which
 * interrupt completed which request). */
static u8 blk_gated(struct vdev *d, u32 type, u64 sector, u8 *buf, u32 len)
{
	u32 seen = d->interrupts;
	u32 head, used;
	if (blk_post(d, &reqs[0], type, sector, buf, len, 0, 0) < 0)
		return 0xfe;
	while (!vq_poll(d, 0, &head, &used))
		__asm__ volatile("sti; hlt; cli");
	while (d->interrupts == seen)
		__asm__ volatile("sti; hlt; cli");
	return reqs[0].status;
}

/* "blk.sync": SYNC_ROUNDS rounds of a write of sector SYNC_SECTOR + k
 * (byte i is i * 3 + k * 29 + 0x5c) and a flush, one request at a time,
 * each reported as "BLK-SYNC: k <write status> <flush status>". The
 * durability test runs this under strace and looks for each flush's
 * fdatasync between the write's interrupt and the flush's. */
static void sync_rounds(struct vdev *d)
{
	for (u32 k = 0; k < SYNC_ROUNDS; k++) {
		for (u32 i = 0; i < 512; i++)
			wbuf[0][i] = (u8)(i * 3 + k * 29 + 0x5c);
		u8 w = blk_gated(d, T_OUT, SYNC_SECTOR + k, wbuf[0], 512);
		u8 f = blk_gated(d, T_FLUSH, 0, 0, 0);
		puts("BLK-SYNC: ");
		putdec(k);
		puts(" ");
		putdec(w);
		puts(" ");
		putdec(f);
		puts("\n");
	}
}

void test_blk(struct vdev *d)
{
	int r = virtio_init(d, BLK_F_SEG_MAX | BLK_F_RO | BLK_F_BLK_SIZE | BLK_F_FLUSH, 1);
	line("BLK-INIT: ", (u64)(r < 0 ? -r : 0));
	if (r < 0)
		return;
	puts("BLK-FEATURES: ");
	puthex(d->features & 0xffffffffUL);
	puts("\n");
	u64 capacity = virtio_config32(d, 0) | ((u64)virtio_config32(d, 4) << 32);
	line("BLK-CAPACITY: ", capacity);
	line("BLK-SEG-MAX: ", virtio_config32(d, 12));
	line("BLK-SIZE: ", virtio_config32(d, 20));
	if (cmdline_has("blk.sync")) {
		sync_rounds(d);
		return;
	}

	u8 s = blk_one(d, T_GET_ID, 0, id, 20, 0, 1);
	puts("BLK-ID: ");
	putdec(s);
	puts(" ");
	puts((const char *)id);
	puts("\n");

	s = blk_one(d, T_IN, 0, sector0, 512, 0, 1);
	puts("BLK-READ: ");
	putdec(s);
	puts(" ");
	puthex(fnv1a(sector0, 512));
	puts(" ");
	puthexbytes(sector0, 16);
	puts("\n");

	s = blk_one(d, T_IN, 5, two[0], 1024, 512, 1);
	sum_line("BLK-READ2: ", s, two, sizeof(two));

	/* Four reads in flight at once: sectors 1..4. */
	u32 posted = 0;
	for (u32 k = 0; k < NREQ; k++)
		posted += blk_post(d, &reqs[k], T_IN, 1 + k, multi[k], 512, 0, 1) >= 0;
	blk_wait(d, posted);
	u32 ok = 0;
	for (u32 k = 0; k < NREQ; k++)
		ok += reqs[k].status == 0;
	sum_line("BLK-MULTI: ", (u8)ok, multi, sizeof(multi));

	/* Four writes in flight at once: sectors 7..10, a pattern per sector. */
	for (u32 k = 0; k < NREQ; k++)
		for (u32 i = 0; i < 512; i++)
			wbuf[k][i] = (u8)(i * 5 + (WRITE_SECTOR + k) * 17 + 0xa7);
	posted = 0;
	for (u32 k = 0; k < NREQ; k++)
		posted += blk_post(d, &reqs[k], T_OUT, WRITE_SECTOR + k, wbuf[k], 512, 0, 0) >= 0;
	blk_wait(d, posted);
	puts("BLK-WRITE:");
	for (u32 k = 0; k < NREQ; k++) {
		puts(" ");
		putdec(reqs[k].status);
	}
	puts("\n");

	s = blk_one(d, T_FLUSH, 0, 0, 0, 0, 0);
	line("BLK-FLUSH: ", s);
	if (s == 0) {
		puts("BLK-FLUSHED: ");
		puthex(fnv1a(wbuf, sizeof(wbuf)));
		puts("\n");
	}
	if (cmdline_has("blk.hold"))
		for (;;)
			__asm__ volatile("sti; hlt; cli");

	s = blk_one(d, T_IN, WRITE_SECTOR, rback[0], sizeof(rback), 0, 1);
	puts("BLK-READBACK: ");
	putdec(s);
	puts(" ");
	putdec(memcmp(rback, wbuf, sizeof(rback)) == 0);
	puts("\n");

	line("BLK-OOR: ", blk_one(d, T_IN, capacity, sector0, 512, 0, 1));
	line("BLK-UNSUPP: ", blk_one(d, 99, 0, 0, 0, 0, 0));
	line("BLK-IRQS: ", d->interrupts);
}
