/* Mutation shim: flock() claims success without locking anything.
 * Every flock scenario that checks exclusion must fail under it. */
#define _GNU_SOURCE
#include <sys/file.h>

int flock(int fd, int operation)
{
    (void)fd;
    (void)operation;
    return 0;
}
