/* A minimal virtio-mmio (version 2) driver for the test guest: enough to
 * bring a device up in spec order, run split virtqueues, and sleep in hlt
 * until the device's interrupt says a buffer came back. */
#ifndef VIRTIO_H
#define VIRTIO_H
#include "guest.h"

#define VIRTIO_MAX_DEVICES 8
#define VIRTIO_MAX_QUEUES 3
#define VQ_SIZE 16

struct vring_desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vring_avail { u16 flags; u16 idx; u16 ring[VQ_SIZE]; u16 used_event; };
struct vring_used_elem { u32 id; u32 len; };
struct vring_used { u16 flags; u16 idx; struct vring_used_elem ring[VQ_SIZE]; u16 avail_event; };
#define VRING_USED_F_NO_NOTIFY 1
extern int vq_honour_no_notify;

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2

struct vq {
	u16 index;
	u16 free_head;
	u16 num_free;
	u16 last_used;
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
};

struct vdev {
	u64 base;
	u32 irq;
	u32 id;
	u64 features;
	u32 nqueues;
	struct vq q[VIRTIO_MAX_QUEUES];
	volatile u32 interrupts;
};

/* One buffer of a request: guest-physical address, length, device-writable? */
struct vbuf { const void *addr; u32 len; int write; };

int virtio_find(struct vdev *out, int max);
/* Brings the device up: reset, ACK, DRIVER, features (we accept `want`,
 * always with VERSION_1), FEATURES_OK, `nqueues` queues, DRIVER_OK.
 * Returns 0, or a negative step number where it failed. */
int virtio_init(struct vdev *d, u64 want, u32 nqueues);
/* Posts a chain and rings the doorbell; returns the head or -1. */
int vq_add(struct vdev *d, u32 q, const struct vbuf *bufs, u32 n);
/* Sleeps until a used buffer comes back; returns its length (id in *head). */
u32 vq_wait(struct vdev *d, u32 q, u32 *head);
/* Non-blocking: 1 and the used element if one is there. */
int vq_poll(struct vdev *d, u32 q, u32 *head, u32 *len);
u32 virtio_status(struct vdev *d);
u8 virtio_config8(struct vdev *d, u32 off);
u32 virtio_config32(struct vdev *d, u32 off);
void virtio_irq(u32 vector);

#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG 4
#define VIRTIO_F_VERSION_1 (1UL << 32)

void test_rng(struct vdev *d);
void test_blk(struct vdev *d);
void test_net(struct vdev *d);
void test_console(struct vdev *d);
/* Keeps every queue full for ever ("flood" on the command line): never returns. */
void flood(struct vdev *devs, int n);

#endif
