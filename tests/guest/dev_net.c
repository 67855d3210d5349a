/* virtio-net checks: not written yet. */
#include "virtio.h"

void test_net(struct vdev *d)
{
	(void)d;
	puts("VIRTIO-NET: no driver yet\n");
}
