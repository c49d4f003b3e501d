/*
 * Mutation shims for lockcheck's test suite: an LD_PRELOAD library that
 * breaks one aspect of file locking, to prove that the catalog notices.
 *
 *   LOCKCHECK_MUTATION=<mode>       which breakage (see below)
 *   LOCKCHECK_MUTATION_DIR=<dir>    only files under this directory are affected
 *
 * It is active only in lockcheck actor processes and the zygote that forks
 * them (argv[1] is the actor or zygote
 * marker), never in the harness itself.
 *
 * Modes:
 *   flock-noop        flock() succeeds without locking
 *   setlkw-nowait     F_SETLKW / F_OFD_SETLKW become F_SETLK / F_OFD_SETLK
 *   setlk-noop        record lock requests succeed without locking
 *   ranges-whole-file every record lock / test covers the whole file
 *   open-rdwr         read-only and write-only opens become read-write
 *   edeadlk-eagain    EDEADLK is reported as EAGAIN
 *   close-keeps-locks close() of a file under the directory does nothing
 *   flock-as-posix    flock() is emulated with whole-file POSIX locks (as NFS does)
 *   ofd-as-posix      F_OFD_* commands become the process-owned F_* commands
 *   getlk-pid-zero    F_GETLK / F_OFD_GETLK report pid 0 for a conflicting lock
 *   getlk-pid-untranslated
 *                     F_GETLK reporting pid 0 for a conflicting lock (its
 *                     holder is outside the caller's PID namespace) reports
 *                     pid 1 instead, as a layer that passes pid numbers
 *                     through untranslated would (some number that means
 *                     another process there)
 *   locks-mandatory   pread() and pwrite() on a file under the directory fail
 *                     with EACCES where another open file description or
 *                     process holds a conflicting record lock on the range
 *                     (as SMB's mandatory byte-range locks do)
 *   stale-page-cache  pwrite() on a file under the directory goes through a
 *                     page cache of the process that locks never invalidate:
 *                     the first 16 4 KiB pages are read when the file is
 *                     opened (later pages on their first write), and every
 *                     pwrite() writes back the whole cached page up to the
 *                     end of the write (as a client that merges a stale page
 *                     with its own record would)
 *   whence-ignored    record locks and tests count l_start from the start of
 *                     the file whatever l_whence says (SEEK_CUR, SEEK_END)
 *   getlk-free-reset  F_GETLK / F_OFD_GETLK finding no conflict also reset
 *                     l_whence, l_start and l_len (to SEEK_SET, 0, 0)
 *   errors-hidden     flock() and fcntl() calls that fail with EBADF, EINVAL
 *                     or EFAULT (on a file under the directory, or on a
 *                     descriptor that is not open) report success
 *   excl-ignored      O_EXCL is dropped from open()
 *   lease-noop        F_SETLEASE succeeds without a lease
 *   setlkw-giveup     a waiting lock waits (really, in the kernel) for at most
 *                     100 ms, then gives up and reports success without the lock
 *   conflict-eacces   a lock refused for a conflict (EAGAIN, EWOULDBLOCK) is
 *                     reported as EACCES, by flock() and every fcntl() lock
 *                     command (as the Linux SMB client does)
 *   rare-double-grant an exclusive request the kernel refuses for a conflict
 *                     is reported granted (without the lock) once in
 *                     LOCKCHECK_MUTATION_RATE refusals on average (default
 *                     100000), at random: flock(LOCK_EX), F_SETLK(W) and
 *                     F_OFD_SETLK(W) with F_WRLCK. A waiting request is
 *                     tried without waiting first, so that it can be
 *                     refused. Each false grant appends a line to
 *                     LOCKCHECK_MUTATION_LOG when that is set.
 *
 * Broken actors (the harness must fail their trial only):
 *   crash-on-unlock   flock(LOCK_UN) on a file under the directory crashes
 *                     the actor (SIGSEGV)
 *   garble-on-unlock  after flock(LOCK_UN) on a file under the directory,
 *                     the actor's next message to the harness is garbage
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/openat2.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum mode {
    NONE,
    FLOCK_NOOP,
    SETLKW_NOWAIT,
    SETLK_NOOP,
    RANGES_WHOLE_FILE,
    OPEN_RDWR,
    EDEADLK_EAGAIN,
    CLOSE_KEEPS_LOCKS,
    FLOCK_AS_POSIX,
    OFD_AS_POSIX,
    GETLK_PID_ZERO,
    WHENCE_IGNORED,
    GETLK_FREE_RESET,
    ERRORS_HIDDEN,
    EXCL_IGNORED,
    LEASE_NOOP,
    SETLKW_GIVEUP,
    CONFLICT_EACCES,
    RARE_DOUBLE_GRANT,
    CRASH_ON_UNLOCK,
    GARBLE_ON_UNLOCK,
    GETLK_PID_UNTRANSLATED,
    LOCKS_MANDATORY,
    STALE_PAGE_CACHE,
};

static const char *names[] = {
    "", "flock-noop", "setlkw-nowait", "setlk-noop", "ranges-whole-file",
    "open-rdwr", "edeadlk-eagain", "close-keeps-locks", "flock-as-posix",
    "ofd-as-posix", "getlk-pid-zero", "whence-ignored", "getlk-free-reset",
    "errors-hidden", "excl-ignored", "lease-noop",
    "setlkw-giveup", "conflict-eacces", "rare-double-grant", "crash-on-unlock",
    "garble-on-unlock", "getlk-pid-untranslated",
    "locks-mandatory", "stale-page-cache",
};

static enum mode mode = NONE;
static char dir[4096];
static size_t dir_len;

typedef int (*fcntl_fn)(int, int, ...);
typedef int (*flock_fn)(int, int);
typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*close_fn)(int);
typedef long (*syscall_fn)(long, ...);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pread_fn)(int, void *, size_t, off_t);

static fcntl_fn real_fcntl;
static flock_fn real_flock;
static open_fn real_open;
static openat_fn real_openat;
static close_fn real_close;
static syscall_fn real_syscall;
static write_fn real_write;
static int garble_next;

static void *next(const char *a, const char *b)
{
    void *f = dlsym(RTLD_NEXT, a);
    return f ? f : dlsym(RTLD_NEXT, b);
}

__attribute__((constructor)) static void init(void)
{
    real_syscall = (syscall_fn)next("syscall", "syscall");
    real_write = (write_fn)next("write", "write");
    real_fcntl = (fcntl_fn)next("fcntl64", "fcntl");
    real_flock = (flock_fn)next("flock", "flock");
    real_open = (open_fn)next("open64", "open");
    real_openat = (openat_fn)next("openat64", "openat");
    real_close = (close_fn)next("close", "close");

    const char *m = getenv("LOCKCHECK_MUTATION");
    if (!m)
        return;
    /* Only in actors, the zygote and stress agents (whose forked workers
     * take the locks): /proc/self/cmdline's second word is the marker. */
    char cmd[4096];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = syscall(SYS_read, fd, cmd, sizeof(cmd) - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return;
    cmd[n] = 0;
    size_t first = strlen(cmd);
    /* The zygote's forked children are actors too: it is set up there. */
    if ((ssize_t)first + 1 >= n || (strcmp(cmd + first + 1, "__lockcheck_actor") != 0 &&
                                     strcmp(cmd + first + 1, "__lockcheck_zygote") != 0 &&
                                     strcmp(cmd + first + 1, "__lockcheck_stress") != 0))
        return;
    for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(m, names[i]) == 0)
            mode = (enum mode)i;
    const char *d = getenv("LOCKCHECK_MUTATION_DIR");
    if (d && strlen(d) < sizeof(dir)) {
        strcpy(dir, d);
        dir_len = strlen(dir);
    }
}

static int path_in_dir(const char *path)
{
    return path && (dir_len == 0 || strncmp(path, dir, dir_len) == 0);
}

static int fd_in_dir(int fd)
{
    if (dir_len == 0)
        return 1;
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    return strncmp(target, dir, dir_len) == 0;
}

static volatile sig_atomic_t alarmed;

static void on_alarm(int sig)
{
    (void)sig;
    alarmed = 1;
}

/* Run a waiting lock call for at most 100 ms; when the timer interrupts it,
 * pretend it succeeded. */
static long give_up_after_100ms(long nr, int fd, long arg1, void *arg2)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 100000}};
    alarmed = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    long r = syscall(nr, fd, arg1, arg2);
    int e = errno;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    if (r < 0 && e == EINTR && alarmed)
        return 0;
    errno = e;
    return r;
}

/* rare-double-grant: one refusal in `rate` becomes a grant. Each process
 * (forked workers too) has its own random sequence. */
static unsigned long long rng_state;
static pid_t rng_pid;

static int lucky(void)
{
    static long rate = -1;
    if (rate < 0) {
        const char *r = getenv("LOCKCHECK_MUTATION_RATE");
        rate = r ? atol(r) : 100000;
        if (rate < 1)
            rate = 1;
    }
    pid_t me = (pid_t)syscall(SYS_getpid);
    if (rng_pid != me) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng_state = ((unsigned long long)me << 32) ^ (unsigned long long)ts.tv_nsec ^ 0x9e3779b97f4a7c15ULL;
        rng_pid = me;
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    unsigned long long x = rng_state * 0x2545F4914F6CDD1DULL;
    if (x % (unsigned long long)rate != 0)
        return 0;
    const char *log = getenv("LOCKCHECK_MUTATION_LOG");
    if (log) {
        int fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char line[64];
            int n = snprintf(line, sizeof(line), "%d false grant\n", (int)me);
            if (n > 0)
                real_write(fd, line, (size_t)n);
            real_close(fd);
        }
    }
    return 1;
}

static int refused_errno(int e)
{
    return e == EAGAIN || e == EACCES || e == EWOULDBLOCK;
}

static int is_setlk(int cmd)
{
    return cmd == F_SETLK || cmd == F_SETLKW || cmd == F_OFD_SETLK || cmd == F_OFD_SETLKW;
}

static int is_getlk(int cmd)
{
    return cmd == F_GETLK || cmd == F_OFD_GETLK;
}

/* errors-hidden: an argument error reported as success. */
static int hide_errors(int r)
{
    if (r < 0 && (errno == EBADF || errno == EINVAL || errno == EFAULT))
        return 0;
    return r;
}

static int mutated_fcntl(int fd, int cmd, void *arg)
{
    if (mode == ERRORS_HIDDEN && (fd < 0 || fd_in_dir(fd)))
        return hide_errors(real_fcntl(fd, cmd, arg));
    if (mode == NONE || !fd_in_dir(fd))
        return real_fcntl(fd, cmd, arg);
    struct flock *fl = arg;
    if (fl == NULL && (is_setlk(cmd) || is_getlk(cmd)))
        return real_fcntl(fd, cmd, arg); /* the kernel says EFAULT */
    switch (mode) {
    case SETLKW_NOWAIT:
        if (cmd == F_SETLKW)
            cmd = F_SETLK;
        else if (cmd == F_OFD_SETLKW)
            cmd = F_OFD_SETLK;
        break;
    case SETLK_NOOP:
        if (is_setlk(cmd) && fl->l_type != F_UNLCK)
            return 0;
        break;
    case RANGES_WHOLE_FILE:
        if (is_setlk(cmd) || is_getlk(cmd)) {
            fl->l_whence = SEEK_SET;
            fl->l_start = 0;
            fl->l_len = 0;
        }
        break;
    case EDEADLK_EAGAIN: {
        int r = real_fcntl(fd, cmd, arg);
        if (r < 0 && errno == EDEADLK)
            errno = EAGAIN;
        return r;
    }
    case OFD_AS_POSIX:
        if (cmd == F_OFD_SETLK)
            cmd = F_SETLK;
        else if (cmd == F_OFD_SETLKW)
            cmd = F_SETLKW;
        else if (cmd == F_OFD_GETLK)
            cmd = F_GETLK;
        break;
    case GETLK_PID_ZERO: {
        int r = real_fcntl(fd, cmd, arg);
        if (r == 0 && is_getlk(cmd) && fl->l_type != F_UNLCK)
            fl->l_pid = 0;
        return r;
    }
    case GETLK_PID_UNTRANSLATED: {
        int r = real_fcntl(fd, cmd, arg);
        if (r == 0 && cmd == F_GETLK && fl->l_type != F_UNLCK && fl->l_pid == 0)
            fl->l_pid = 1;
        return r;
    }
    case WHENCE_IGNORED:
        if ((is_setlk(cmd) || is_getlk(cmd))
            && (fl->l_whence == SEEK_CUR || fl->l_whence == SEEK_END))
            fl->l_whence = SEEK_SET;
        break;
    case GETLK_FREE_RESET: {
        int r = real_fcntl(fd, cmd, arg);
        if (r == 0 && is_getlk(cmd) && fl->l_type == F_UNLCK) {
            fl->l_whence = SEEK_SET;
            fl->l_start = 0;
            fl->l_len = 0;
        }
        return r;
    }
    case LEASE_NOOP:
        if (cmd == F_SETLEASE)
            return 0;
        break;
    case SETLKW_GIVEUP:
        if (cmd == F_SETLKW || cmd == F_OFD_SETLKW)
            return (int)give_up_after_100ms(SYS_fcntl, fd, cmd, arg);
        break;
    case CONFLICT_EACCES: {
        int r = real_fcntl(fd, cmd, arg);
        if (r < 0 && errno == EAGAIN && is_setlk(cmd))
            errno = EACCES;
        return r;
    }
    case RARE_DOUBLE_GRANT: {
        if (!is_setlk(cmd) || fl->l_type != F_WRLCK)
            break;
        int nb = cmd == F_SETLKW ? F_SETLK : cmd == F_OFD_SETLKW ? F_OFD_SETLK : cmd;
        int r = real_fcntl(fd, nb, arg);
        int e = errno;
        if (r == 0 || !refused_errno(e))
            return r;
        if (lucky())
            return 0;
        if (nb == cmd) {
            errno = e;
            return -1;
        }
        return real_fcntl(fd, cmd, arg);
    }
    default:
        break;
    }
    return real_fcntl(fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return mutated_fcntl(fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return mutated_fcntl(fd, cmd, arg);
}

int flock(int fd, int op)
{
    if (mode == ERRORS_HIDDEN && (fd < 0 || fd_in_dir(fd)))
        return hide_errors(real_flock(fd, op));
    if (mode == NONE || !fd_in_dir(fd))
        return real_flock(fd, op);
    if (mode == CRASH_ON_UNLOCK && (op & ~LOCK_NB) == LOCK_UN) {
        /* The default action (Rust's stack-overflow handler would return). */
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    if (mode == GARBLE_ON_UNLOCK && (op & ~LOCK_NB) == LOCK_UN)
        garble_next = 1;
    if (mode == FLOCK_NOOP)
        return 0;
    if (mode == CONFLICT_EACCES) {
        int r = real_flock(fd, op);
        if (r < 0 && errno == EWOULDBLOCK)
            errno = EACCES;
        return r;
    }
    if (mode == RARE_DOUBLE_GRANT && (op & LOCK_EX)) {
        int r = real_flock(fd, op | LOCK_NB);
        if (r == 0 || errno != EWOULDBLOCK)
            return r;
        if (lucky())
            return 0;
        if (op & LOCK_NB) {
            errno = EWOULDBLOCK;
            return -1;
        }
        return real_flock(fd, op);
    }
    if (mode == SETLKW_GIVEUP && !(op & LOCK_NB) && (op & (LOCK_EX | LOCK_SH)))
        return (int)give_up_after_100ms(SYS_flock, fd, op, NULL);
    if (mode == FLOCK_AS_POSIX) {
        /* What an NFS client does: a whole-file POSIX lock. */
        struct flock fl;
        memset(&fl, 0, sizeof(fl));
        fl.l_whence = SEEK_SET;
        int base = op & ~LOCK_NB;
        fl.l_type = base == LOCK_EX ? F_WRLCK : base == LOCK_SH ? F_RDLCK : F_UNLCK;
        int r = real_fcntl(fd, (op & LOCK_NB) || base == LOCK_UN ? F_SETLK : F_SETLKW, &fl);
        if (r < 0 && errno == EACCES)
            errno = EWOULDBLOCK;
        return r;
    }
    return real_flock(fd, op);
}

static int mutate(int in_dir, int flags)
{
    if (mode == NONE || !in_dir)
        return flags;
    if (mode == OPEN_RDWR && !(flags & O_DIRECTORY))
        flags = (flags & ~O_ACCMODE) | O_RDWR;
    if (mode == EXCL_IGNORED)
        flags &= ~O_EXCL;
    return flags;
}

static int mutate_flags(const char *path, int flags)
{
    return mutate(path_in_dir(path), flags);
}

/* openat(2): a relative path is in the directory if its dirfd is. */
static int at_in_dir(int dirfd, const char *path)
{
    if (!path || path[0] == '/' || dirfd == AT_FDCWD)
        return path_in_dir(path);
    return fd_in_dir(dirfd);
}

static void snapshot_pages(int fd);
static void forget_pages(int fd);

/* Actors open scenario paths with openat2(2) (through syscall(3): glibc has
 * no wrapper), beneath a descriptor of the trial directory. */
long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (!real_syscall)
        real_syscall = (syscall_fn)next("syscall", "syscall");
    if (nr == SYS_openat2 && mode != NONE && a[2]) {
        struct open_how *how = (struct open_how *)a[2];
        how->flags = (unsigned long long)(unsigned int)mutate(fd_in_dir((int)a[0]), (int)how->flags);
    }
    long r = real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (nr == SYS_openat2 && mode == STALE_PAGE_CACHE && r >= 0 && fd_in_dir((int)r))
        snapshot_pages((int)r);
    return r;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int m = va_arg(ap, int);
    va_end(ap);
    return real_open(path, mutate_flags(path, flags), m);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int m = va_arg(ap, int);
    va_end(ap);
    return real_open(path, mutate_flags(path, flags), m);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int m = va_arg(ap, int);
    va_end(ap);
    return real_openat(dirfd, path, mutate(at_in_dir(dirfd, path), flags), m);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int m = va_arg(ap, int);
    va_end(ap);
    return real_openat(dirfd, path, mutate(at_in_dir(dirfd, path), flags), m);
}

int close(int fd)
{
    if (mode == CLOSE_KEEPS_LOCKS && fd > 2 && fd_in_dir(fd))
        return 0;
    if (mode == STALE_PAGE_CACHE)
        forget_pages(fd);
    return real_close(fd);
}

/* garble-on-unlock: the next line to the harness (a socket or a pipe, not
 * stderr) is replaced by a line that is not JSON. */
ssize_t write(int fd, const void *buf, size_t len)
{
    if (!real_write)
        real_write = (write_fn)next("write", "write");
    if (garble_next && fd != 2) {
        struct stat st;
        if (fstat(fd, &st) == 0 && (S_ISSOCK(st.st_mode) || S_ISFIFO(st.st_mode))) {
            garble_next = 0;
            static const char junk[] = "}{\x01 not a reply\n";
            if (real_write(fd, junk, sizeof(junk) - 1) < 0)
                return -1;
            return (ssize_t)len;
        }
    }
    return real_write(fd, buf, len);
}

/* locks-mandatory: I/O on a range that another owner has locked in a
 * conflicting mode fails with EACCES: a lock that both F_OFD_GETLK (locks
 * not taken through this open file description) and F_GETLK (locks not
 * this process's own) report. */
static int mandatory_conflict(int fd, short type, size_t len, off_t off)
{
    if (mode != LOCKS_MANDATORY || len == 0 || !fd_in_dir(fd))
        return 0;
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = off;
    fl.l_len = (off_t)len;
    struct flock mine = fl;
    if (real_fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type == F_UNLCK)
        return 0;
    /* The process's own POSIX locks are no conflict for it. */
    if (real_fcntl(fd, F_GETLK, &mine) != 0 || mine.l_type == F_UNLCK)
        return 0;
    errno = EACCES;
    return 1;
}

/* stale-page-cache: pages this process has written, never invalidated. */
#define PAGE 4096
static struct cached_page {
    int fd;
    off_t index;
    size_t valid; /* bytes of the page the file had, or that were written */
    char data[PAGE];
} pages[256];
static int pages_used;

static pread_fn real_pread;

static struct cached_page *page_of(int fd, off_t index, pread_fn rd)
{
    for (int i = 0; i < pages_used; i++)
        if (pages[i].fd == fd && pages[i].index == index)
            return &pages[i];
    if (pages_used == (int)(sizeof(pages) / sizeof(pages[0])))
        return NULL;
    struct cached_page *p = &pages[pages_used++];
    p->fd = fd;
    p->index = index;
    memset(p->data, 0, PAGE);
    ssize_t n = rd(fd, p->data, PAGE, index * PAGE);
    p->valid = n > 0 ? (size_t)n : 0;
    return p;
}

static ssize_t write_through_stale_pages(int fd, const char *buf, size_t len, off_t off,
                                         pwrite_fn wr, pread_fn rd)
{
    size_t done = 0;
    while (done < len) {
        off_t at = off + (off_t)done;
        size_t in_page = (size_t)(at % PAGE);
        size_t n = PAGE - in_page < len - done ? PAGE - in_page : len - done;
        struct cached_page *p = page_of(fd, at / PAGE, rd);
        if (!p)
            return wr(fd, buf, len, off);
        memcpy(p->data + in_page, buf + done, n);
        if (in_page + n > p->valid)
            p->valid = in_page + n;
        /* The whole cached page up to the end of this write goes back. */
        if (wr(fd, p->data, in_page + n, at - (off_t)in_page) < 0)
            return -1;
        done += n;
    }
    return (ssize_t)len;
}

static void snapshot_pages(int fd)
{
    if (!real_pread)
        real_pread = (pread_fn)next("pread", "pread64");
    forget_pages(fd);
    for (off_t i = 0; i < 16; i++)
        page_of(fd, i, real_pread);
}

static void forget_pages(int fd)
{
    for (int i = 0; i < pages_used; i++)
        if (pages[i].fd == fd) {
            pages[i] = pages[--pages_used];
            i--;
        }
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    static pwrite_fn real;
    static pread_fn real_rd;
    if (!real)
        real = (pwrite_fn)next("pwrite", "pwrite64");
    if (!real_rd)
        real_rd = (pread_fn)next("pread", "pread64");
    if (mandatory_conflict(fd, F_WRLCK, len, off))
        return -1;
    if (mode == STALE_PAGE_CACHE && off >= 0 && fd_in_dir(fd))
        return write_through_stale_pages(fd, buf, len, off, real, real_rd);
    return real(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    static pread_fn real;
    if (!real)
        real = (pread_fn)next("pread", "pread64");
    if (mandatory_conflict(fd, F_RDLCK, len, off))
        return -1;
    return real(fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
    return pread(fd, buf, len, off);
}
