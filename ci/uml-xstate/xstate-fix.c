/*
 * xstate-fix.c -- an LD_PRELOAD library for linux.uml (User-Mode Linux) that
 * lets UML guests boot on hosts whose XSAVE area is larger than UML's buffer,
 * such as CPUs with AMX.  Built and preloaded by ci/nfs-lab.
 *
 * The problem
 *   UML runs each guest process as a host process that it drives with
 *   ptrace.  Every time it resumes one, it writes the process's FPU/vector
 *   state back with
 *       ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, &iov)
 *   using a buffer of its own size (2696 bytes in Debian's UML 6.1 and 6.12:
 *   x87/SSE, AVX, AVX-512 and PKRU).  The host kernel accepts an XSTATE
 *   SETREGSET only when iov_len is exactly its full user XSAVE size
 *   (arch/x86/kernel/fpu/regset.c, xstateregs_set: "count !=
 *   fpu_user_cfg.max_size" gives -EFAULT).  On a CPU with AMX that size is
 *   about 11 KiB, so the very first resume fails and the guest panics:
 *       userspace - ptrace set fp regs failed, errno = 14
 *       Kernel panic - not syncing: Attempted to kill init!
 *   PTRACE_GETREGSET has no such rule: a short buffer is filled as far as it
 *   goes, which is how UML learns a size no larger than its own.
 *
 * The fix
 *   ptrace() is wrapped.  A SETREGSET of NT_X86_XSTATE whose iov_len is
 *   shorter than the host's size is widened: the task's current full state
 *   is read with GETREGSET into a buffer of the host's size, the caller's
 *   bytes are copied over its beginning, and the full buffer is set.  The
 *   bytes UML did not provide (the state components beyond its buffer, AMX
 *   tiles on today's CPUs, which no guest process can enable) keep the
 *   values the task has, and the XSAVE header, which lies in the first 576
 *   bytes, is UML's own.  Every other call, and a SETREGSET that already has
 *   the host's size, passes through untouched: on a host where the sizes
 *   agree the wrapper costs one comparison per call.
 *
 *   Why not make the XSTATE regset fail so that UML falls back to FXSAVE?
 *   That was tried: the guest boots, but the AVX/AVX-512 state of guest
 *   processes is then no longer saved and restored, and guest programs break
 *   (modprobe got EINVAL, python hung).
 *
 * Environment
 *   LOCKCHECK_XSTATE_FIX=refuse  fault mode for testing the lab's boot
 *       diagnostics: every XSTATE SETREGSET fails with EFAULT, as on an AMX
 *       host without this library.
 *   LOCKCHECK_XSTATE_FIX_LOG=FD  write one line to descriptor FD when the
 *       library loads and one the first time it widens a call (the lab uses
 *       2, which ends in the guest's console log).
 *
 * Constraints: UML calls ptrace from its kernel threads, which are all one
 * host thread switching stacks, on small kernel stacks, with signal
 * handlers that may run UML code at almost any point.  So the wrapper keeps
 * no large buffer on the stack, takes no lock, and does not call malloc:
 * one buffer is mapped once, claimed with an atomic flag, and a call that
 * finds it taken (a nested call from a signal handler) maps a buffer of its
 * own for that call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

/* The largest XSAVE area the probe will look for (AMX makes it ~11 KiB). */
#define PROBE_LIMIT (1u << 20)

/* glibc's ptrace is variadic: call it through a variadic type. */
typedef long (*ptrace_fn)(enum __ptrace_request, ...);

static ptrace_fn real_ptrace;
static int refuse_mode;
static int log_fd = -1;
/* The host's full user XSAVE size: 0 unknown, (size_t)-1 no XSTATE regset. */
static _Atomic size_t host_size;
static void *shared_buf;
static size_t shared_len;
static atomic_flag shared_busy = ATOMIC_FLAG_INIT;
static atomic_int widened_logged;

/* Marks the library as loaded, for the check program (dlsym). */
const char lockcheck_xstate_fix[] = "lockcheck-xstate-fix 1";

static void log_line(const char *line)
{
    if (log_fd < 0)
        return;
    int saved = errno;
    ssize_t ignored = write(log_fd, line, strlen(line));
    (void)ignored;
    errno = saved;
}

__attribute__((constructor)) static void init(void)
{
    real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    const char *mode = getenv("LOCKCHECK_XSTATE_FIX");
    refuse_mode = mode && strcmp(mode, "refuse") == 0;
    const char *fd = getenv("LOCKCHECK_XSTATE_FIX_LOG");
    if (fd && *fd)
        log_fd = atoi(fd);
    char line[160];
    snprintf(line, sizeof line, "lockcheck-xstate-fix: loaded in pid %d%s\n", (int)getpid(),
             refuse_mode ? " (fault mode: every XSTATE SETREGSET fails with EFAULT)" : "");
    log_line(line);
}

static long call_real(enum __ptrace_request request, pid_t pid, void *addr, void *data)
{
    if (!real_ptrace) {
        errno = ENOSYS;
        return -1;
    }
    return real_ptrace(request, pid, addr, data);
}

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/*
 * The host's size, learnt once from a GETREGSET on a traced task with a
 * buffer larger than any XSAVE area: the kernel shortens iov_len to its own
 * size.  Returns 0 when it cannot be learnt now (the wrapper then passes the
 * call through and the kernel's answer stands).
 */
static size_t host_xstate_size(pid_t pid)
{
    size_t known = atomic_load(&host_size);
    if (known)
        return known == (size_t)-1 ? 0 : known;
    for (size_t cap = 16384; cap <= PROBE_LIMIT; cap *= 2) {
        void *probe = map(cap);
        if (!probe)
            return 0;
        struct iovec iov = { probe, cap };
        int saved = errno;
        long r = call_real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
        int err = errno;
        munmap(probe, cap);
        errno = saved;
        if (r < 0) {
            if (err == EINVAL || err == ENODEV)
                atomic_store(&host_size, (size_t)-1); /* no XSTATE regset at all */
            return 0;
        }
        if (iov.iov_len < cap) {
            atomic_store(&host_size, iov.iov_len);
            return iov.iov_len;
        }
    }
    return 0;
}

static long widened_set(pid_t pid, const struct iovec *caller, size_t full_len)
{
    void *buf = NULL;
    int own = 0;
    if (!atomic_flag_test_and_set(&shared_busy)) {
        if (!shared_buf) {
            shared_buf = map(full_len);
            shared_len = shared_buf ? full_len : 0;
        }
        if (shared_buf && shared_len >= full_len)
            buf = shared_buf;
        else
            atomic_flag_clear(&shared_busy);
    }
    if (!buf) {
        buf = map(full_len);
        if (!buf) {
            errno = ENOMEM;
            return -1;
        }
        own = 1;
    }
    struct iovec full = { buf, full_len };
    long r = call_real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &full);
    if (r == 0 && full.iov_len != full_len) {
        errno = EFAULT; /* the host's size changed under us: refuse, never guess */
        r = -1;
    }
    if (r == 0) {
        if (caller->iov_len)
            memcpy(buf, caller->iov_base, caller->iov_len);
        full.iov_len = full_len;
        r = call_real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &full);
    }
    int saved = errno;
    if (own)
        munmap(buf, full_len);
    else
        atomic_flag_clear(&shared_busy);
    errno = saved;
    if (r == 0 && !atomic_exchange(&widened_logged, 1)) {
        char line[200];
        snprintf(line, sizeof line,
                 "lockcheck-xstate-fix: PTRACE_SETREGSET NT_X86_XSTATE of %zu bytes widened to "
                 "the host's %zu (logged once)\n",
                 caller->iov_len, full_len);
        log_line(line);
    }
    return r;
}

/* glibc's prototype: long ptrace(enum __ptrace_request, ...). */
long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    if (request == PTRACE_SETREGSET && (uintptr_t)addr == NT_X86_XSTATE && data) {
        const struct iovec *iov = data;
        if (refuse_mode) {
            errno = EFAULT;
            return -1;
        }
        size_t full = host_xstate_size(pid);
        if (full && iov->iov_len < full)
            return widened_set(pid, iov, full);
    }
    return call_real(request, pid, addr, data);
}
