/*T:773 The host limit for the virtio-blk benchmark: the same request pattern the
 * test guest's bench.blk loop sends (n requests of a given size, sequential
 * or random, reads or writes, qd in flight) done directly on the same file
 * with preadv/pwritev, qd threads each keeping one request in flight, through
 * the page cache or with O_DIRECT.
 *
 * The threads are created, and their buffers allocated and filled, before
 * the clock starts: the guest's loop is timed from its first request, with
 * its buffers already set up, so a host limit that also counted up to 32
 * pthread_create calls and page faults would be slower than the host
 * really is, and the ratio lguest/host would flatter lguest.
 *
 * Usage: blk_host <file> <n> <size-KiB> <qd> <r|w> <seq|rand> <cache|direct>
 * Prints: BENCH-BLK-HOST: <n> <ns> <errors> :*/
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int fd, writing, random_order;
static uint64_t n, size, blocks;
static uint64_t next_seq;
static uint64_t issued, errors;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Every worker and main meet here twice: once when all are ready (main
 * then reads the clock), once to let them go. */
static pthread_barrier_t gate;

/* Hands out the next request's block, the way the guest loop does. */
static int take(uint64_t *block, uint64_t *rng)
{
	pthread_mutex_lock(&lock);
	int ok = issued < n;
	if (ok) {
		issued++;
		if (random_order) {
			*rng ^= *rng << 13;
			*rng ^= *rng >> 7;
			*rng ^= *rng << 17;
			*block = *rng % blocks;
		} else {
			*block = next_seq++ % blocks;
		}
	}
	pthread_mutex_unlock(&lock);
	return ok;
}

static void *worker(void *arg)
{
	uint64_t rng = 0x9e3779b97f4a7c15ULL + (uintptr_t)arg;
	void *buf = NULL;
	if (posix_memalign(&buf, 4096, size))
		buf = NULL;
	else
		memset(buf, 0x5a, size);
	/* Even without a buffer, meet main at both gates, or it would wait forever. */
	pthread_barrier_wait(&gate);
	pthread_barrier_wait(&gate);
	if (buf == NULL) {
		__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	struct iovec iov = { buf, size };
	uint64_t block;
	while (take(&block, &rng)) {
		ssize_t r = writing ? pwritev(fd, &iov, 1, (off_t)(block * size))
				    : preadv(fd, &iov, 1, (off_t)(block * size));
		if (r != (ssize_t)size)
			__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: blk_host <file> <n> <size-KiB> <qd> <r|w> <seq|rand> <cache|direct>\n");
		return 2;
	}
	n = strtoull(argv[2], NULL, 10);
	size = strtoull(argv[3], NULL, 10) * 1024;
	int qd = atoi(argv[4]);
	writing = argv[5][0] == 'w';
	random_order = !strcmp(argv[6], "rand");
	int flags = (writing ? O_RDWR : O_RDONLY) | (strcmp(argv[7], "direct") ? 0 : O_DIRECT);
	fd = open(argv[1], flags);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || size == 0 || qd < 1) {
		perror(argv[1]);
		return 1;
	}
	blocks = (uint64_t)st.st_size / size;
	if (blocks == 0) {
		fprintf(stderr, "blk_host: file smaller than one request\n");
		return 1;
	}
	pthread_t t[64];
	if (qd > 64)
		qd = 64;
	struct timespec a, b;
	pthread_barrier_init(&gate, NULL, (unsigned)qd + 1);
	for (int i = 0; i < qd; i++)
		if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i)) {
			fprintf(stderr, "blk_host: cannot create thread %d\n", i);
			return 1;
		}
	/* All qd threads exist and hold their buffers: the timed window starts
	 * now, and the second gate lets them take their first requests. */
	pthread_barrier_wait(&gate);
	clock_gettime(CLOCK_MONOTONIC, &a);
	pthread_barrier_wait(&gate);
	for (int i = 0; i < qd; i++)
		pthread_join(t[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &b);
	uint64_t ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ULL + (uint64_t)(b.tv_nsec - a.tv_nsec);
	printf("BENCH-BLK-HOST: %llu %llu %llu\n", (unsigned long long)n, (unsigned long long)ns,
	       (unsigned long long)errors);
	return errors ? 1 : 0;
}
