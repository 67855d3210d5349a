/* virtio-rng: ask for 32 random bytes, twice, and report them. */
#include "virtio.h"

void test_rng(struct vdev *d)
{
	static u8 buf[2][32];
	int r = virtio_init(d, 0, 1);
	puts("RNG-INIT: ");
	putdec((u64)(r < 0 ? -r : 0));
	puts("\n");
	if (r < 0)
		return;
	for (int i = 0; i < 2; i++) {
		struct vbuf b = { buf[i], sizeof(buf[i]), 1 };
		u32 head;
		vq_add(d, 0, &b, 1);
		u32 len = vq_wait(d, 0, &head);
		puts("RNG: ");
		putdec(len);
		puts(" ");
		puthexbytes(buf[i], sizeof(buf[i]));
		puts("\n");
	}
	/* The used ring can be seen before the interrupt lands: wait for it. */
	while (d->interrupts == 0)
		__asm__ volatile("sti; hlt; cli");
	puts("RNG-IRQS: ");
	putdec(d->interrupts);
	puts("\n");
}
