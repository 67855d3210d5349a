/* The 64 KiB TCP/IPv4 segments of net_host.c (T:777): checksum helpers and
 * the segment itself. Included by net_host.c after its VNET_HDR and TSO_*
 * definitions. */
#ifndef NET_TSO_H
#define NET_TSO_H

static uint16_t fold(uint64_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static uint64_t sum16(const uint8_t *p, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint64_t)p[i] << 8 | p[i + 1];
	return s;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* A virtio_net_hdr asking for the TCP checksum and a cut at TSO_MSS, then the
 * segment: the checksum field holds the pseudo-header's sum, as for CHECKSUM_PARTIAL. */
static void tso_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint32_t saddr, uint32_t daddr)
{
	memset(f, 0, VNET_HDR + TSO_FRAME);
	struct virtio_net_hdr *h = (struct virtio_net_hdr *)f;
	h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
	h->hdr_len = TSO_HEADERS;
	h->gso_size = TSO_MSS;
	h->csum_start = 14 + 20;
	h->csum_offset = 16;
	uint8_t *eth = f + VNET_HDR, *ip = eth + 14, *tcp = ip + 20;
	memcpy(eth, dst, 6);
	memcpy(eth + 6, src, 6);
	eth[12] = 0x08;
	ip[0] = 0x45;
	put16(ip + 2, 20 + 20 + TSO_PAYLOAD);
	ip[6] = 0x40;
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	memcpy(ip + 12, &saddr, 4);
	memcpy(ip + 16, &daddr, 4);
	put16(ip + 10, (uint16_t)~fold(sum16(ip, 20)));
	put16(tcp, 40000);
	put16(tcp + 2, TSO_PORT);
	tcp[12] = 5 << 4;
	tcp[13] = 0x18;
	put16(tcp + 14, 0xffff);
	put16(tcp + 16, fold(sum16(ip + 12, 8) + IPPROTO_TCP + 20 + TSO_PAYLOAD));
	for (size_t k = 0; k < TSO_PAYLOAD; k++)
		tcp[20 + k] = (uint8_t)k;
}

#endif
