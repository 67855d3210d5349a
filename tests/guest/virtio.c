/*
 * The test guest's virtio-mmio driver. It finds devices the way Linux does,
 * from "virtio_mmio.device=4K@<base>:<irq>" words on the command line, and
 * brings each up in the order the spec gives. Rings live in static, page
 * aligned memory (the guest's physical and virtual addresses are the same).
 * Doorbells are plain writes to QueueNotify (the launcher turns them into
 * eventfd signals with no exit); completions arrive as interrupts routed
 * through the IOAPIC to vector 0x30 + irq, and the driver sleeps in hlt
 * until one comes.
 */
#include "virtio.h"

#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_AVAIL_LOW 0x090
#define REG_QUEUE_AVAIL_HIGH 0x094
#define REG_QUEUE_USED_LOW 0x0a0
#define REG_QUEUE_USED_HIGH 0x0a4
#define REG_CONFIG 0x100

#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

#define RING_PAGES (VIRTIO_MAX_DEVICES * VIRTIO_MAX_QUEUES)
static u8 ring_pages[RING_PAGES][4096] __attribute__((aligned(4096)));
static u32 ring_pages_used;

static struct vdev *by_irq[24];

extern void (*const irq_stubs[32])(void);

static u32 rd(struct vdev *d, u32 reg) { return mmio_read32(d->base + reg); }
static void wr(struct vdev *d, u32 reg, u32 v) { mmio_write32(d->base + reg, v); }

u32 virtio_status(struct vdev *d) { return rd(d, REG_STATUS); }
u8 virtio_config8(struct vdev *d, u32 off) { return mmio_read8(d->base + REG_CONFIG + off); }
u32 virtio_config32(struct vdev *d, u32 off) { return rd(d, REG_CONFIG + off); }

static u64 parse_hex(const char *s, const char **end)
{
	u64 v = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
		s += 2;
	for (;; s++) {
		char c = *s;
		if (c >= '0' && c <= '9') v = v * 16 + (u64)(c - '0');
		else if (c >= 'a' && c <= 'f') v = v * 16 + (u64)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F') v = v * 16 + (u64)(c - 'A' + 10);
		else break;
	}
	*end = s;
	return v;
}

/* Finds "virtio_mmio.device=4K@0xBASE:IRQ" words, in command-line order. */
int virtio_find(struct vdev *out, int max)
{
	static const char key[] = "virtio_mmio.device=";
	extern const char *guest_cmdline;
	int n = 0;
	for (const char *s = guest_cmdline; s && *s && n < max; s++) {
		if (s != guest_cmdline && s[-1] != ' ')
			continue;
		u32 i = 0;
		while (key[i] && s[i] == key[i])
			i++;
		if (key[i])
			continue;
		const char *p = s + i;
		while (*p && *p != '@')
			p++;
		if (*p != '@')
			continue;
		const char *e;
		u64 base = parse_hex(p + 1, &e);
		if (*e != ':')
			continue;
		u64 irq = 0;
		for (e++; *e >= '0' && *e <= '9'; e++)
			irq = irq * 10 + (u64)(*e - '0');
		if (irq >= 24)
			continue;
		struct vdev *d = &out[n];
		memset(d, 0, sizeof(*d));
		d->base = base;
		d->irq = (u32)irq;
		if (rd(d, REG_MAGIC) != 0x74726976 || rd(d, REG_VERSION) != 2)
			continue;
		d->id = rd(d, REG_DEVICE_ID);
		by_irq[irq] = d;
		idt_set(0x30 + (u32)irq, irq_stubs[irq]);
		ioapic_route((u32)irq, 0x30 + (u32)irq);
		n++;
	}
	return n;
}

/* Called from the interrupt stub for vectors 0x30 + irq. */
void virtio_irq(u32 vector)
{
	struct vdev *d = vector >= 0x30 && vector < 0x30 + 24 ? by_irq[vector - 0x30] : 0;
	if (d) {
		u32 isr = rd(d, REG_INTERRUPT_STATUS);
		wr(d, REG_INTERRUPT_ACK, isr);
		d->interrupts++;
	}
	mmio_write32(LAPIC_BASE + 0xb0, 0);
}

static int setup_queue(struct vdev *d, u32 index)
{
	if (ring_pages_used >= RING_PAGES)
		return -1;
	u8 *page = ring_pages[ring_pages_used++];
	struct vq *q = &d->q[index];
	q->index = (u16)index;
	q->desc = (struct vring_desc *)page;
	q->avail = (struct vring_avail *)(page + 16 * VQ_SIZE);
	q->used = (struct vring_used *)(page + 2048);
	/* Clear just the three rings, not the whole page (see memset). */
	memset(q->desc, 0, sizeof(struct vring_desc) * VQ_SIZE + sizeof(struct vring_avail));
	memset(q->used, 0, sizeof(struct vring_used));
	for (u16 i = 0; i < VQ_SIZE; i++)
		q->desc[i].next = (u16)(i + 1);
	q->free_head = 0;
	q->num_free = VQ_SIZE;
	q->last_used = 0;

	wr(d, REG_QUEUE_SEL, index);
	if (rd(d, REG_QUEUE_READY) != 0)
		return -2;
	u32 max = rd(d, REG_QUEUE_NUM_MAX);
	if (max < VQ_SIZE)
		return -3;
	wr(d, REG_QUEUE_NUM, VQ_SIZE);
	wr(d, REG_QUEUE_DESC_LOW, (u32)(u64)q->desc);
	wr(d, REG_QUEUE_DESC_HIGH, (u32)((u64)q->desc >> 32));
	wr(d, REG_QUEUE_AVAIL_LOW, (u32)(u64)q->avail);
	wr(d, REG_QUEUE_AVAIL_HIGH, (u32)((u64)q->avail >> 32));
	wr(d, REG_QUEUE_USED_LOW, (u32)(u64)q->used);
	wr(d, REG_QUEUE_USED_HIGH, (u32)((u64)q->used >> 32));
	wr(d, REG_QUEUE_READY, 1);
	return rd(d, REG_QUEUE_READY) == 1 ? 0 : -4;
}

int virtio_init(struct vdev *d, u64 want, u32 nqueues)
{
	wr(d, REG_STATUS, 0);
	if (rd(d, REG_STATUS) != 0)
		return -1;
	wr(d, REG_STATUS, S_ACKNOWLEDGE);
	wr(d, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER);
	wr(d, REG_DEVICE_FEATURES_SEL, 0);
	u64 offered = rd(d, REG_DEVICE_FEATURES);
	wr(d, REG_DEVICE_FEATURES_SEL, 1);
	offered |= (u64)rd(d, REG_DEVICE_FEATURES) << 32;
	if (!(offered & VIRTIO_F_VERSION_1))
		return -2;
	d->features = (want & offered) | VIRTIO_F_VERSION_1;
	wr(d, REG_DRIVER_FEATURES_SEL, 0);
	wr(d, REG_DRIVER_FEATURES, (u32)d->features);
	wr(d, REG_DRIVER_FEATURES_SEL, 1);
	wr(d, REG_DRIVER_FEATURES, (u32)(d->features >> 32));
	wr(d, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
	if (!(rd(d, REG_STATUS) & S_FEATURES_OK))
		return -3;
	if (nqueues > VIRTIO_MAX_QUEUES)
		return -4;
	for (u32 i = 0; i < nqueues; i++)
		if (setup_queue(d, i) < 0)
			return -5;
	d->nqueues = nqueues;
	wr(d, REG_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	return (rd(d, REG_STATUS) & S_DRIVER_OK) ? 0 : -6;
}

/* Whether vq_add leaves out the doorbell while the device says it is
 * looking anyway (VRING_USED_F_NO_NOTIFY), as Linux's drivers do. The
 * benchmark loops set it; the functional tests ring after every add, which
 * a device must take too. */
int vq_honour_no_notify;

int vq_add(struct vdev *d, u32 index, const struct vbuf *bufs, u32 n)
{
	struct vq *q = &d->q[index];
	if (n == 0 || n > q->num_free)
		return -1;
	u16 head = q->free_head, i = head, last = head;
	for (u32 k = 0; k < n; k++) {
		struct vring_desc *desc = &q->desc[i];
		desc->addr = (u64)bufs[k].addr;
		desc->len = bufs[k].len;
		desc->flags = (u16)((bufs[k].write ? VRING_DESC_F_WRITE : 0) | (k + 1 < n ? VRING_DESC_F_NEXT : 0));
		last = i;
		i = desc->next;
	}
	q->free_head = q->desc[last].next;
	q->num_free = (u16)(q->num_free - n);
	q->avail->ring[q->avail->idx % VQ_SIZE] = head;
	barrier();
	q->avail->idx++;
	barrier();	/* the index out before the flag is read (spec 2.7.7.2) */
	if (!vq_honour_no_notify || !(*(volatile u16 *)&q->used->flags & VRING_USED_F_NO_NOTIFY))
		wr(d, REG_QUEUE_NOTIFY, index);
	return head;
}

static void reclaim(struct vq *q, u32 head)
{
	u16 i = (u16)head, n = 1;
	while (q->desc[i].flags & VRING_DESC_F_NEXT) {
		i = q->desc[i].next;
		n++;
	}
	q->desc[i].next = q->free_head;
	q->free_head = (u16)head;
	q->num_free = (u16)(q->num_free + n);
}

int vq_poll(struct vdev *d, u32 index, u32 *head, u32 *len)
{
	struct vq *q = &d->q[index];
	barrier();
	if (*(volatile u16 *)&q->used->idx == q->last_used)
		return 0;
	struct vring_used_elem *e = &q->used->ring[q->last_used % VQ_SIZE];
	*head = e->id;
	*len = e->len;
	q->last_used++;
	reclaim(q, *head);
	return 1;
}

u32 vq_wait(struct vdev *d, u32 index, u32 *head)
{
	u32 len;
	while (!vq_poll(d, index, head, &len))
		__asm__ volatile("sti; hlt; cli");
	return len;
}
