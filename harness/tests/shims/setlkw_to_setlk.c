/* Mutation shim: waiting record-lock requests (F_SETLKW, F_OFD_SETLKW) are
 * turned into non-waiting ones (F_SETLK, F_OFD_SETLK), so they fail with
 * EAGAIN instead of blocking. Every scenario that expects a waiter to block
 * must fail under it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>

typedef int (*fcntl_fn)(int, int, ...);

static fcntl_fn real_fcntl(void)
{
    static fcntl_fn fn;
    if (!fn) {
        fn = (fcntl_fn)dlsym(RTLD_NEXT, "fcntl64");
        if (!fn)
            fn = (fcntl_fn)dlsym(RTLD_NEXT, "fcntl");
    }
    return fn;
}

static int mutate(int fd, int cmd, void *arg)
{
    if (cmd == F_SETLKW)
        cmd = F_SETLK;
    else if (cmd == F_OFD_SETLKW)
        cmd = F_OFD_SETLK;
    return real_fcntl()(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return mutate(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return mutate(fd, cmd, arg);
}
