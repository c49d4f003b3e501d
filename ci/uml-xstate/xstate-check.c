/*
 * xstate-check.c -- the unit-level check of xstate-fix.c, and the host facts
 * ci/nfs-lab prints when a guest cannot boot.
 *
 *   xstate-check            round trip through the fix (run it with the fix
 *                           preloaded: LD_PRELOAD=.../xstate-fix.so)
 *   xstate-check facts      one line: XCR0, the host's XSTATE regset size, and
 *                           the sizes CPUID gives
 *   xstate-check bench [N]  nanoseconds per SETREGSET: the kernel's own, the
 *                           fix passing a full-size call through, and the fix
 *                           widening a short one
 *
 * The round trip, on any x86-64 host with XSAVE (AMX or not): a traced child
 * loads ymm0 with pattern A and xmm1 with pattern B and stops itself.  The
 * parent
 *   1. reads the child's full XSTATE (GETREGSET with a large buffer: the host's
 *      size comes back in iov_len);
 *   2. sets it back at full size through ptrace() (the fix passes it through),
 *      with xmm1 = C;
 *   3. shows the kernel's rule the fix exists for: a raw SETREGSET (the
 *      syscall itself, not the wrapper) of only the first 576 bytes -- legacy
 *      area and XSAVE header, as UML's short buffer is on an AMX host -- fails
 *      with EFAULT;
 *   4. sets the same 576 bytes through ptrace() with xmm1 = D: the fix must
 *      widen it and the call must succeed;
 *   5. lets the child run on; the child reports its registers: xmm1 must be D
 *      (the short write reached the task) and all of ymm0 must still be A (its
 *      upper half lies beyond the 576 bytes: the state the caller did not
 *      provide was kept, not zeroed).
 * Exit status: 0 passed (or nothing to check: no XSTATE regset), 1 failed,
 * 2 could not run (no ptrace, bad usage).
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

#define LEGACY_AND_HEADER 576 /* x87/SSE legacy area (512) + XSAVE header (64) */
#define XMM_OFFSET 160        /* xmm0 in the legacy area; 16 bytes each */
#define BIG (1u << 20)

static unsigned char buf_full[BIG];
static unsigned char buf_again[BIG];

static int fail(const char *what)
{
    fprintf(stderr, "xstate-check: FAIL: %s\n", what);
    return 1;
}

static int have_avx(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
}

/* The child: patterns into registers, stop, report the registers. No libc
 * call between loading and reporting, so nothing else touches them. */
static void child(int out, int avx)
{
    unsigned char a[32], b[16], got0[32] = { 0 }, got1[16];
    for (int i = 0; i < 32; i++)
        a[i] = (unsigned char)(0xa0 + i);
    for (int i = 0; i < 16; i++)
        b[i] = (unsigned char)(0xb0 + i);
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
        _exit(3);
    if (avx) {
        __asm__ volatile("vmovdqu (%[a]), %%ymm0\n\t"
                         "vmovdqu (%[b]), %%xmm1\n\t"
                         "mov $39, %%eax\n\t" /* getpid */
                         "syscall\n\t"
                         "mov %%rax, %%rdi\n\t"
                         "mov $19, %%esi\n\t" /* SIGSTOP */
                         "mov $62, %%eax\n\t" /* kill */
                         "syscall\n\t"
                         "vmovdqu %%ymm0, (%[g0])\n\t"
                         "vmovdqu %%xmm1, (%[g1])\n\t"
                         :
                         : [a] "r"(a), [b] "r"(b), [g0] "r"(got0), [g1] "r"(got1)
                         : "rax", "rdi", "rsi", "rcx", "r11", "memory", "xmm0", "xmm1");
    } else {
        __asm__ volatile("movdqu (%[b]), %%xmm1\n\t"
                         "mov $39, %%eax\n\t"
                         "syscall\n\t"
                         "mov %%rax, %%rdi\n\t"
                         "mov $19, %%esi\n\t"
                         "mov $62, %%eax\n\t"
                         "syscall\n\t"
                         "movdqu %%xmm1, (%[g1])\n\t"
                         :
                         : [b] "r"(b), [g1] "r"(got1)
                         : "rax", "rdi", "rsi", "rcx", "r11", "memory", "xmm1");
    }
    ssize_t w = write(out, got0, sizeof got0);
    w += write(out, got1, sizeof got1);
    _exit(w == (ssize_t)(sizeof got0 + sizeof got1) ? 0 : 4);
}

static long raw_ptrace(long req, pid_t pid, long addr, void *data)
{
    return syscall(SYS_ptrace, req, pid, addr, data);
}

/* Starts a traced child and waits for its stop. */
static pid_t start_child(int *rd, int avx)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(p[0]);
        child(p[1], avx);
    }
    close(p[1]);
    *rd = p[0];
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st)) {
        fprintf(stderr, "xstate-check: the child did not stop under ptrace (status 0x%x): "
                        "is ptrace refused here (seccomp, kernel.yama.ptrace_scope=3)?\n", st);
        kill(pid, SIGKILL);
        return -1;
    }
    return pid;
}

static long get_full(pid_t pid, unsigned char *buf, size_t *len)
{
    struct iovec iov = { buf, BIG };
    long r = raw_ptrace(PTRACE_GETREGSET, pid, NT_X86_XSTATE, &iov);
    *len = iov.iov_len;
    return r;
}

static unsigned long long xcr0(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int facts(void)
{
    unsigned a = 0, b = 0, c = 0, d = 0;
    int cpuid_ok = __get_cpuid_count(0xd, 0, &a, &b, &c, &d);
    int rd;
    pid_t pid = start_child(&rd, 0);
    size_t len = 0;
    long r = pid > 0 ? get_full(pid, buf_full, &len) : -1;
    int err = errno;
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    printf("XSAVE: XCR0 0x%llx; ", xcr0());
    if (pid < 0)
        printf("ptrace XSTATE regset: ptrace refused");
    else if (r < 0)
        printf("ptrace XSTATE regset: none (%s)", strerror(err));
    else
        printf("ptrace XSTATE regset %zu bytes", len);
    if (cpuid_ok)
        printf("; CPUID 0xD: %u bytes for the features enabled, %u for all supported", b, c);
    printf("\n");
    return 0;
}

static int round_trip(void)
{
    int avx = have_avx();
    int fix = dlsym(RTLD_DEFAULT, "lockcheck_xstate_fix") != NULL;
    int rd;
    pid_t pid = start_child(&rd, avx);
    if (pid < 0)
        return 2;
    size_t full = 0;
    if (get_full(pid, buf_full, &full) < 0) {
        int err = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (err == ENODEV || err == EINVAL) {
            printf("xstate-check: no XSTATE regset on this host (%s): UML uses FXSAVE and the "
                   "fix is never used\n", strerror(err));
            return 0;
        }
        fprintf(stderr, "xstate-check: PTRACE_GETREGSET NT_X86_XSTATE: %s\n", strerror(err));
        return 2;
    }
    int rc = 0;
    unsigned char b[16], c[16], dd[16];
    for (int i = 0; i < 16; i++) {
        b[i] = (unsigned char)(0xb0 + i);
        c[i] = (unsigned char)(0xc0 + i);
        dd[i] = (unsigned char)(0xd0 + i);
    }
    if (!fix)
        rc |= fail("the fix is not loaded (run with LD_PRELOAD=.../xstate-fix.so)");
    if (full <= LEGACY_AND_HEADER)
        rc |= fail("the host's XSAVE area is no larger than the legacy area and header");
    if (memcmp(buf_full + XMM_OFFSET + 16, b, 16) != 0)
        rc |= fail("GETREGSET: xmm1 is not what the child loaded");
    /* 2: full size through the wrapper */
    memcpy(buf_full + XMM_OFFSET + 16, c, 16);
    struct iovec iov = { buf_full, full };
    if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
        rc |= fail("a full-size SETREGSET through the fix failed");
    size_t again = 0;
    if (get_full(pid, buf_again, &again) < 0 || again != full ||
        memcmp(buf_again + XMM_OFFSET + 16, c, 16) != 0)
        rc |= fail("after a full-size SETREGSET, xmm1 did not read back");
    /* 3: the kernel's rule, seen directly */
    memcpy(buf_full + XMM_OFFSET + 16, dd, 16);
    iov.iov_len = LEGACY_AND_HEADER;
    errno = 0;
    long raw = raw_ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, &iov);
    int raw_err = errno;
    /* 4: the same short buffer through the wrapper */
    iov.iov_len = LEGACY_AND_HEADER;
    long wrapped = ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
    int wrapped_err = errno;
    if (wrapped < 0) {
        char m[160];
        snprintf(m, sizeof m, "a %d-byte SETREGSET through the fix failed: %s", LEGACY_AND_HEADER,
                 strerror(wrapped_err));
        rc |= fail(m);
    }
    /* 5: the child's own view */
    if (raw_ptrace(PTRACE_CONT, pid, 0, 0) < 0)
        rc |= fail("PTRACE_CONT");
    unsigned char got[48];
    size_t n = 0;
    while (n < sizeof got) {
        ssize_t r = read(rd, got + n, sizeof got - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (n != sizeof got || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        rc |= fail("the child did not report its registers");
    } else {
        if (memcmp(got + 32, dd, 16) != 0)
            rc |= fail("xmm1 in the child is not what the short SETREGSET wrote");
        if (avx) {
            unsigned char a[32];
            for (int i = 0; i < 32; i++)
                a[i] = (unsigned char)(0xa0 + i);
            if (memcmp(got, a, 32) != 0)
                rc |= fail("ymm0 in the child changed: the state beyond the short buffer was not kept");
        }
    }
    printf("xstate-check: host XSTATE regset %zu bytes; a raw %d-byte SETREGSET %s; through the fix "
           "it %s; round trip (xmm1 written, %s) %s\n",
           full, LEGACY_AND_HEADER,
           raw < 0 ? (raw_err == EFAULT ? "fails with EFAULT (the AMX-host failure)" : strerror(raw_err))
                   : "was accepted (this kernel has no exact-size rule)",
           wrapped < 0 ? "failed" : "succeeds",
           avx ? "ymm0 kept" : "no AVX on this CPU", rc ? "FAILED" : "passed");
    return rc;
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int bench(long n)
{
    int rd;
    pid_t pid = start_child(&rd, 0);
    if (pid < 0)
        return 2;
    size_t full = 0;
    if (get_full(pid, buf_full, &full) < 0) {
        perror("xstate-check: GETREGSET");
        return 2;
    }
    struct iovec iov = { buf_full, full };
    double t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (raw_ptrace(PTRACE_SETREGSET, pid, NT_X86_XSTATE, &iov) < 0)
            return fail("raw SETREGSET");
    double t1 = now_ns();
    for (long i = 0; i < n; i++)
        if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
            return fail("full-size SETREGSET through the fix");
    double t2 = now_ns();
    iov.iov_len = LEGACY_AND_HEADER;
    for (long i = 0; i < n; i++)
        if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
            return fail("short SETREGSET through the fix");
    double t3 = now_ns();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    printf("xstate-check bench: SETREGSET of %zu bytes: kernel %.0f ns; through the fix at full size "
           "%.0f ns; a %d-byte call widened %.0f ns (%ld calls each)\n",
           full, (t1 - t0) / n, (t2 - t1) / n, LEGACY_AND_HEADER, (t3 - t2) / n, n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "facts") == 0)
        return facts();
    if (argc >= 2 && strcmp(argv[1], "bench") == 0)
        return bench(argc >= 3 ? atol(argv[2]) > 0 ? atol(argv[2]) : 100000 : 100000);
    if (argc >= 2) {
        fprintf(stderr, "usage: xstate-check [facts | bench [N]]\n");
        return 2;
    }
    return round_trip();
}
