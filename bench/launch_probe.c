/*T:742 Times a program the way the launch benchmark needs: from just before
 * fork() to the first byte on its stdout, to the first appearance of a
 * marker string (optional), and to its exit, plus its peak RSS from
 * wait4()'s rusage. The same probe runs lguest and QEMU, so process
 * creation costs the same on both sides. The child finds the fork time, on
 * the wall clock in ms, in $LAUNCH_PROBE_FORK_MS.
 *
 * Usage: launch_probe [-t seconds] [-m marker] [-o stdout-file] [-e stderr-file]
 *                     -- cmd args...
 * Prints one JSON object on stdout. :*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEEP (1 << 20)

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	double timeout_s = 60;
	const char *marker = NULL, *outfile = NULL, *errfile = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "t:m:o:e:")) != -1) {
		switch (opt) {
		case 't': timeout_s = atof(optarg); break;
		case 'm': marker = optarg; break;
		case 'o': outfile = optarg; break;
		case 'e': errfile = optarg; break;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: launch_probe [-t s] [-m marker] [-o file] [-e file] -- cmd...\n");
		return 2;
	}
	int p[2];
	if (pipe(p) < 0)
		return perror("pipe"), 1;
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	double t0 = now_ms();
	pid_t pid = fork();
	if (pid < 0)
		return perror("fork"), 1;
	if (pid == 0) {
		/* The fork time on the wall clock, for a child that wants to
		 * report its own phases against the same start. */
		char t[64];
		snprintf(t, sizeof(t), "%.3f", wall.tv_sec * 1e3 + wall.tv_nsec / 1e6);
		setenv("LAUNCH_PROBE_FORK_MS", t, 1);
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(p[1], 1);
		int err = errfile ? open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0600) : nul;
		dup2(err < 0 ? nul : err, 2);
		close(p[0]);
		close(p[1]);
		execvp(argv[optind], argv + optind);
		_exit(127);
	}
	close(p[1]);
	static char buf[KEEP + 1];
	size_t len = 0;
	double first = -1, mark = -1;
	int timed_out = 0;
	for (;;) {
		double left = timeout_s * 1e3 - (now_ms() - t0);
		if (left <= 0) {
			timed_out = 1;
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		int r = poll(&pfd, 1, (int)left + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		char chunk[65536];
		ssize_t n = read(p[0], chunk, sizeof(chunk));
		if (n <= 0)
			break;
		double t = now_ms();
		if (first < 0)
			first = t - t0;
		size_t take = (size_t)n < KEEP - len ? (size_t)n : KEEP - len;
		memcpy(buf + len, chunk, take);
		len += take;
		buf[len] = 0;
		if (marker && mark < 0 && strstr(buf, marker))
			mark = t - t0;
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	double end = now_ms() - t0;
	if (outfile) {
		FILE *f = fopen(outfile, "w");
		if (f) {
			fwrite(buf, 1, len, f);
			fclose(f);
		}
	}
	printf("{\"firstByteMs\":%.3f,\"markerMs\":%.3f,\"exitMs\":%.3f,\"maxRssKiB\":%ld,"
	       "\"exitCode\":%d,\"signal\":%d,\"timedOut\":%s,\"outputBytes\":%zu}\n",
	       first, mark, end, ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
	       WIFSIGNALED(status) ? WTERMSIG(status) : 0, timed_out ? "true" : "false", len);
	return 0;
}
