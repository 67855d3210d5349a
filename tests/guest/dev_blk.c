/* virtio-blk checks: not written yet. */
#include "virtio.h"

void test_blk(struct vdev *d)
{
	(void)d;
	puts("VIRTIO-BLK: no driver yet\n");
}
