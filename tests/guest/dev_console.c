/* virtio-console: print a line through the transmitq and report (on the
 * serial port) the used length the device gave back. With
 * lguest.hvc-echo=N on the command line, also read N bytes from the
 * receiveq, through only two small buffers that are posted again as they
 * come back, so input longer than 32 bytes has to wait for the guest; then
 * send the bytes back through the transmitq as hex. Without the flag the
 * receiveq is set up but never given a buffer. */
#include "virtio.h"

#define CONSOLE_RX 0
#define CONSOLE_TX 1
#define RX_BUF 16
#define RX_POSTED 2
#define ECHO_MAX 1024

/* Sends n bytes as one transmit buffer; returns the used length. */
static u32 hvc_write(struct vdev *d, const void *p, u32 n)
{
	struct vbuf b = { p, n, 0 };
	u32 head;
	if (vq_add(d, CONSOLE_TX, &b, 1) < 0)
		return 0xffffffff;
	return vq_wait(d, CONSOLE_TX, &head);
}

static void post_rx(struct vdev *d, const u8 *buf)
{
	struct vbuf b = { buf, RX_BUF, 1 };
	vq_add(d, CONSOLE_RX, &b, 1);
}

static void hvc_echo(struct vdev *d, u64 want)
{
	static u8 rx[RX_POSTED][RX_BUF];
	static u8 got[ECHO_MAX];
	static char line[sizeof("HVC-IN: ") + 2 * ECHO_MAX + 1];
	static const char digits[] = "0123456789abcdef";
	u32 have = 0, bufs = 0, too_long = 0;

	if (want > ECHO_MAX)
		want = ECHO_MAX;
	for (u32 i = 0; i < RX_POSTED; i++)
		post_rx(d, rx[i]);
	while (have < want) {
		u32 head;
		u32 len = vq_wait(d, CONSOLE_RX, &head);
		const u8 *buf = (const u8 *)d->q[CONSOLE_RX].desc[head % VQ_SIZE].addr;
		if (len > RX_BUF) {
			too_long++;
			len = RX_BUF;
		}
		for (u32 i = 0; i < len && have < want; i++)
			got[have++] = buf[i];
		bufs++;
		post_rx(d, buf);
	}
	u32 at = 0;
	for (const char *p = "HVC-IN: "; *p; p++)
		line[at++] = *p;
	for (u32 i = 0; i < have; i++) {
		line[at++] = digits[got[i] >> 4];
		line[at++] = digits[got[i] & 15];
	}
	line[at++] = '\n';
	hvc_write(d, line, at);
	puts("HVC-RX-BUFFERS: ");
	putdec(bufs);
	puts(" ");
	putdec(too_long);
	puts("\n");
}

void test_console(struct vdev *d)
{
	static const char hello[] = "HVC-OUT: hello from hvc0\n";
	int r = virtio_init(d, 0, 2);
	puts("HVC-INIT: ");
	putdec((u64)(r < 0 ? -r : 0));
	puts("\n");
	if (r < 0)
		return;
	u32 used = hvc_write(d, hello, sizeof(hello) - 1);
	puts("HVC-TX-USED: ");
	putdec(used);
	puts("\n");
	u32 n;
	const char *v = cmdline_param("lguest.hvc-echo", &n);
	if (v)
		hvc_echo(d, parse_num(v, n));
}
