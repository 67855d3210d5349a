/*T:590 "flood" on the command line makes the test guest hostile in the
 * most ordinary way: it keeps every queue it can full, and gives each
 * buffer back the moment it comes back used, ringing the doorbell every
 * time, without ever sleeping. The entropy device gets 64-byte requests,
 * the disk one-sector reads, the console's transmit queue short lines.
 * The guest polls the used rings with interrupts off, so its vCPU never
 * stops for anything but doorbells. Every 2^14 completions it prints a
 * "FLOOD: " line with the total, so a test can see the flood is real
 * before it tries to stop the machine (T:591). The network device is left
 * alone: it needs a tap, and its transmit path has had its budget for
 * longer. :*/
#include "virtio.h"

#define FLOOD_REQ 16
#define FLOOD_REPORT 16384

struct flood_q {
	struct vdev *d;
	u32 q;
	u32 nreq;
	u32 nbufs;
	struct vbuf bufs[FLOOD_REQ][3];
	u8 owner[VQ_SIZE];
};

struct blk_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static u8 rng_buf[FLOOD_REQ][64];
static struct blk_hdr blk_hdr[FLOOD_REQ];
static u8 blk_data[FLOOD_REQ][512];
static u8 blk_status[FLOOD_REQ];
static const char con_line[] = "flood\n";

static struct flood_q queues[VIRTIO_MAX_DEVICES];

/* Posts request k of q and notes which request the head belongs to. */
static void post(struct flood_q *f, u32 k)
{
	int head = vq_add(f->d, f->q, f->bufs[k], f->nbufs);
	if (head >= 0)
		f->owner[head] = (u8)k;
}

/* Sets up the flood for one device; returns 0 if it has nothing to flood. */
static int prepare(struct flood_q *f, struct vdev *d)
{
	f->d = d;
	f->q = 0;
	f->nbufs = 1;
	switch (d->id) {
	case VIRTIO_ID_RNG:
		if (virtio_init(d, 0, 1) < 0)
			return 0;
		f->nreq = FLOOD_REQ;
		for (u32 k = 0; k < f->nreq; k++)
			f->bufs[k][0] = (struct vbuf){ rng_buf[k], sizeof(rng_buf[k]), 1 };
		return 1;
	case VIRTIO_ID_BLOCK:
		if (virtio_init(d, 0, 1) < 0)
			return 0;
		f->nreq = VQ_SIZE / 3;
		f->nbufs = 3;
		for (u32 k = 0; k < f->nreq; k++) {
			blk_hdr[k] = (struct blk_hdr){ 0, 0, k };
			f->bufs[k][0] = (struct vbuf){ &blk_hdr[k], sizeof(blk_hdr[k]), 0 };
			f->bufs[k][1] = (struct vbuf){ blk_data[k], sizeof(blk_data[k]), 1 };
			f->bufs[k][2] = (struct vbuf){ &blk_status[k], 1, 1 };
		}
		return 1;
	case VIRTIO_ID_CONSOLE:
		if (virtio_init(d, 0, 2) < 0)
			return 0;
		f->q = 1;
		f->nreq = FLOOD_REQ;
		for (u32 k = 0; k < f->nreq; k++)
			f->bufs[k][0] = (struct vbuf){ con_line, sizeof(con_line) - 1, 0 };
		return 1;
	default:
		return 0;
	}
}

void flood(struct vdev *devs, int n)
{
	int nq = 0;
	for (int i = 0; i < n; i++)
		if (prepare(&queues[nq], &devs[i]))
			nq++;
	puts("FLOOD-QUEUES: ");
	putdec((u64)nq);
	puts("\n");
	for (int i = 0; i < nq; i++)
		for (u32 k = 0; k < queues[i].nreq; k++)
			post(&queues[i], k);
	u64 done = 0;
	for (;;) {
		for (int i = 0; i < nq; i++) {
			struct flood_q *f = &queues[i];
			u32 head, len;
			while (vq_poll(f->d, f->q, &head, &len)) {
				post(f, f->owner[head % VQ_SIZE]);
				if (++done % FLOOD_REPORT == 0) {
					puts("FLOOD: ");
					putdec(done);
					puts("\n");
				}
			}
		}
	}
}
