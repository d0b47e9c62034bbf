/*
 * LD_PRELOAD shim for the local-fault tests: fdatasync(2) fails once with EIO.
 *
 * While the file named by WALRELAY_FAIL_FDATASYNC exists, the next fdatasync removes it and
 * returns -1 with errno EIO, as a failing device makes the kernel report it; every other call
 * goes to libc. Compiled by the test into a temporary directory:
 *   cc -shared -fPIC -o fail_fdatasync.so fail_fdatasync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int
fdatasync(int fd)
{
	static int (*real_fdatasync) (int) = NULL;
	const char *trigger = getenv("WALRELAY_FAIL_FDATASYNC");

	if (trigger != NULL && unlink(trigger) == 0)
	{
		errno = EIO;
		return -1;
	}
	if (real_fdatasync == NULL)
		real_fdatasync = (int (*) (int)) dlsym(RTLD_NEXT, "fdatasync");
	return real_fdatasync(fd);
}
