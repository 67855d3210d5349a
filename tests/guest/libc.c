/*
 * The few libc pieces gcc may call on its own (the guest links no libc),
 * and the checksum the host tests compare against.
 */
#include "guest.h"

/* Eight bytes a store where it can: ring-0 code is emulated on PVM hosts,
 * so a byte loop over a page costs milliseconds. */
void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	if (((u64)p & 7) == 0) {
		u64 v = 0x0101010101010101UL * (u8)c;
		for (; n >= 8; n -= 8, p += 8)
			*(u64 *)p = v;
	}
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, u64 n)
{
	const u8 *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

u64 strlen(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

/* FNV-1a, 32-bit: cheap enough for an emulated CPU; the host tests compute
 * the same over what they expect the guest to have seen. */
u32 fnv1a(const void *p, u64 n)
{
	u32 h = 2166136261u;
	for (u64 i = 0; i < n; i++)
		h = (h ^ ((const u8 *)p)[i]) * 16777619u;
	return h;
}
