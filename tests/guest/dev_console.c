/* virtio-console checks: not written yet. */
#include "virtio.h"

void test_console(struct vdev *d)
{
	(void)d;
	puts("VIRTIO-CONSOLE: no driver yet\n");
}
