//! The actor: the harness binary re-executed as `lockcheck __lockcheck_actor
//! PARENT_PID`. It is single-threaded, so it may fork (inheritance
//! scenarios); it reads one request per line from stdin, performs exactly
//! that system call, and writes what the kernel returned to stdout.
//!
//! It never outlives the harness: it asks for SIGKILL when the harness
//! thread that started it ends (PR_SET_PDEATHSIG), and it exits when its
//! control channel reaches end of file.

use std::ffi::CString;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};

use crate::actor::beneath;
use crate::actor::protocol::{
    monotonic_ns, Beneath, Envelope, Hello, HelloBody, LockDesc, Outcome, Reply, Request,
    ACTOR_ARG, MAX_LINE,
};

/// Whether this process was started as an actor.
pub fn is_actor_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == ACTOR_ARG)
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn die(code: i32, msg: &str) -> ! {
    let line = format!("lockcheck actor {}: {msg}\n", std::process::id());
    // SAFETY: writing a valid buffer to stderr, then ending the process.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(code)
    }
}

/// Line-based I/O on raw descriptors, so that a forked child can switch
/// its channel without buffered state left behind.
struct Io {
    rfd: RawFd,
    wfd: RawFd,
    buf: Vec<u8>,
}

impl Io {
    fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(nl + 1);
                let mut line = std::mem::replace(&mut self.buf, rest);
                line.pop();
                return Some(line);
            }
            // No newline yet: with one, the line would pass MAX_LINE.
            if self.buf.len() >= MAX_LINE {
                die(4, "request line too long");
            }
            let mut chunk = [0u8; 8192];
            // SAFETY: reading into a valid, writable buffer of that length.
            let n = unsafe { libc::read(self.rfd, chunk.as_mut_ptr().cast(), chunk.len()) };
            match n {
                0 => return None,
                n if n > 0 => self.buf.extend_from_slice(&chunk[..n as usize]),
                _ if errno() == libc::EINTR => continue,
                _ => return None,
            }
        }
    }

    fn write_line(&self, s: &str) {
        let mut data = Vec::with_capacity(s.len() + 1);
        data.extend_from_slice(s.as_bytes());
        data.push(b'\n');
        let mut off = 0;
        while off < data.len() {
            // SAFETY: writing from a valid buffer.
            let n = unsafe { libc::write(self.wfd, data[off..].as_ptr().cast(), data.len() - off) };
            if n > 0 {
                off += n as usize;
            } else if n < 0 && errno() == libc::EINTR {
                continue;
            } else {
                // The harness is gone: nothing left to do.
                // SAFETY: ending the process.
                unsafe { libc::_exit(0) };
            }
        }
    }

    fn hello(&self) {
        let h = Hello {
            hello: HelloBody::here(std::process::id() as i32, gettid()),
        };
        match serde_json::to_string(&h) {
            Ok(s) => self.write_line(&s),
            Err(_) => die(5, "cannot encode hello"),
        }
    }
}

/// Run as an actor; never returns.
pub fn main() -> ! {
    // The parent to watch: the harness for actors it starts; 0 for an image
    // that replaced a forked actor with exec (its parent is another actor,
    // and it must be allowed to outlive it).
    let parent: i32 = std::env::args()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // A spawned actor connects back to the harness on a socket instead of
    // talking over its stdin/stdout.
    let mut args = std::env::args().skip(3);
    if let (Some(flag), Some(socket)) = (args.next(), args.next()) {
        if flag == "--connect" {
            let fd = match connect(&socket) {
                Ok(s) => s.into_raw_fd(),
                Err(e) => die(98, &format!("cannot connect to the harness: {e}")),
            };
            // SAFETY: dup2/close on descriptors this process owns.
            unsafe {
                if libc::dup2(fd, 0) < 0 || libc::dup2(fd, 1) < 0 {
                    libc::_exit(96);
                }
                libc::close(fd);
            }
        }
    }
    // Enter the trial directory here, not in the harness before exec: on a
    // server that stopped answering the chdir sleeps, and only this actor
    // (which the harness times out and kills) may sleep with it.
    if let Some(dir) = std::env::var_os(CWD_ENV) {
        std::env::remove_var(CWD_ENV);
        if let Err(e) = std::env::set_current_dir(&dir) {
            die(95, &format!("cannot enter {}: {e}", dir.to_string_lossy()));
        }
    }
    become_actor(parent)
}

/// The directory an exec'd actor enters first (set by the harness).
pub(crate) const CWD_ENV: &str = "LOCKCHECK_ACTOR_CWD";

/// Serve as an actor on stdin/stdout until the channel closes; never
/// returns. `parent` (when not 0) is the process whose death must end this
/// one: the harness, or the zygote that forked it.
pub(crate) fn become_actor(parent: i32) -> ! {
    // SAFETY: prctl/signal/getppid with plain integer arguments.
    unsafe {
        if parent != 0 {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != parent {
                // The parent died before the death signal was armed.
                libc::_exit(3);
            }
        }
        // A lease holder is told of a lease break with SIGIO, whose default
        // action would end the actor: it is counted instead (`caught`), and
        // interrupted calls are restarted.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = counting_handler as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGIO, &sa, std::ptr::null_mut());
        // Children (forked or spawned actors) are reaped by the kernel at once,
        // so a dead actor's pid is free (for PID reuse) and no zombie is left.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    serve(
        Io {
            rfd: 0,
            wfd: 1,
            buf: Vec::new(),
        },
        true,
    );
    // SAFETY: ending the process when the harness closed the channel.
    unsafe { libc::_exit(0) }
}

fn gettid() -> i32 {
    // The system call, not glibc's gettid() (2.30): the portable binary
    // links against glibc 2.17.
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Answer requests on one channel until it closes. The main thread's loop
/// is also where a forked child continues (on its new channel).
fn serve(mut io: Io, main_thread: bool) {
    io.hello();
    while let Some(line) = io.read_line() {
        let env: Envelope = match serde_json::from_slice(&line) {
            Ok(e) => e,
            Err(e) => {
                let reply = Reply {
                    seq: 0,
                    t_ns: monotonic_ns(),
                    start_ns: 0,
                    outcome: Outcome::BadRequest {
                        message: e.to_string(),
                    },
                };
                send(&io, &reply);
                continue;
            }
        };
        let start_ns = monotonic_ns();
        let outcome = match &env.req {
            Request::Fork { socket } => match fork_actor(socket) {
                ForkResult::Parent(o) => o,
                ForkResult::Child(stream_fd) => {
                    // Become an actor on the new channel.
                    // SAFETY: dup2/close on descriptors this process owns.
                    unsafe {
                        if libc::dup2(stream_fd, 0) < 0 || libc::dup2(stream_fd, 1) < 0 {
                            libc::_exit(96);
                        }
                        libc::close(stream_fd);
                    }
                    io = Io {
                        rfd: 0,
                        wfd: 1,
                        buf: Vec::new(),
                    };
                    io.hello();
                    continue;
                }
            },
            Request::Thread { socket } => start_thread(socket),
            Request::Exec => exec_self(),
            req => perform(req),
        };
        let t_ns = monotonic_ns();
        send(
            &io,
            &Reply {
                seq: env.seq,
                t_ns,
                start_ns,
                outcome,
            },
        );
    }
    if main_thread {
        // SAFETY: ending the process when the harness closed the channel.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: the thread's channel is done; close it.
    unsafe {
        libc::close(io.rfd);
    }
}

/// Connect to the harness: a socket path (reachable from other network
/// namespaces on the same filesystem), or an abstract name.
fn connect(socket: &str) -> std::io::Result<UnixStream> {
    if socket.starts_with('/') {
        UnixStream::connect(socket)
    } else {
        UnixStream::connect_addr(&SocketAddr::from_abstract_name(socket.as_bytes())?)
    }
}

fn start_thread(socket: &str) -> Outcome {
    let socket = socket.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("actor".into())
        .spawn(move || {
            let _ = tx.send(gettid());
            match connect(&socket) {
                Ok(s) => {
                    let fd = s.into_raw_fd();
                    serve(
                        Io {
                            rfd: fd,
                            wfd: fd,
                            buf: Vec::new(),
                        },
                        false,
                    );
                }
                Err(e) => die(98, &format!("thread cannot connect to the harness: {e}")),
            }
        });
    match spawned {
        Err(e) => Outcome::Failed {
            errno: e.raw_os_error().unwrap_or(libc::EAGAIN),
        },
        Ok(_) => match rx.recv() {
            Ok(tid) => Outcome::Threaded { tid },
            Err(_) => Outcome::Failed {
                errno: libc::ECHILD,
            },
        },
    }
}

/// Replace this process with a fresh actor image; returns only on failure.
fn exec_self() -> Outcome {
    let exe = match std::fs::read_link("/proc/self/exe") {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Failed {
                errno: e.raw_os_error().unwrap_or(libc::ENOENT),
            }
        }
    };
    let (Ok(path), Ok(arg0), Ok(arg1), Ok(arg2)) = (
        CString::new(exe.as_os_str().as_encoded_bytes()),
        CString::new(exe.as_os_str().as_encoded_bytes()),
        CString::new(ACTOR_ARG),
        CString::new("0"),
    ) else {
        return Outcome::Failed {
            errno: libc::EINVAL,
        };
    };
    let argv = [
        arg0.as_ptr(),
        arg1.as_ptr(),
        arg2.as_ptr(),
        std::ptr::null(),
    ];
    // SAFETY: a NUL-terminated path and argv; the environment is inherited.
    unsafe {
        libc::execv(path.as_ptr(), argv.as_ptr());
    }
    Outcome::Failed { errno: errno() }
}

fn send(io: &Io, reply: &Reply) {
    match serde_json::to_string(reply) {
        Ok(s) => io.write_line(&s),
        Err(_) => die(5, "cannot encode reply"),
    }
}

enum ForkResult {
    Parent(Outcome),
    Child(RawFd),
}

fn fork_actor(socket: &str) -> ForkResult {
    // SAFETY: this process is single-threaded, so the child may continue
    // running ordinary Rust code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return ForkResult::Parent(Outcome::Failed { errno: errno() });
    }
    if pid > 0 {
        return ForkResult::Parent(Outcome::Forked { pid });
    }
    match connect(socket) {
        Ok(s) => ForkResult::Child(s.into_raw_fd()),
        Err(e) => die(98, &format!("cannot connect to the harness: {e}")),
    }
}

fn perform(req: &Request) -> Outcome {
    // SAFETY (whole function): each libc call gets valid descriptors as
    // numbers (the kernel checks them), valid pointers to live buffers of
    // the stated length, and a zero-initialised `struct flock`.
    unsafe {
        match req {
            Request::Open { path, flags } => match beneath::open(path, *flags, 0o644) {
                Ok(fd) => opened(fd.into_raw_fd()),
                Err(r) => refused(r, path),
            },
            Request::Close { fd } => ret(libc::close(*fd) as i64),
            Request::Dup { fd } => {
                // dup(2) itself: the copy does not have close-on-exec.
                let n = libc::dup(*fd);
                if n < 0 {
                    return Outcome::Failed { errno: errno() };
                }
                opened(n)
            }
            Request::Flock { fd, operation } => ret(libc::flock(*fd, *operation) as i64),
            Request::Fcntl {
                fd,
                cmd,
                l_type,
                start,
                len,
                whence,
            } => {
                let mut fl = flock_of(*l_type, *whence, *start, *len);
                let asked = fl;
                let r = libc::fcntl(*fd, *cmd, &mut fl as *mut libc::flock);
                if r < 0 {
                    return Outcome::Failed { errno: errno() };
                }
                if matches!(*cmd, libc::F_GETLK | libc::F_OFD_GETLK) {
                    lock_outcome(&fl, &asked)
                } else {
                    Outcome::Done { ret: r as i64 }
                }
            }
            Request::InPidNamespace { request } => match &**request {
                Request::Fcntl {
                    fd,
                    cmd,
                    l_type,
                    start,
                    len,
                    whence,
                } if matches!(*cmd, libc::F_GETLK | libc::F_OFD_GETLK) => {
                    getlk_in_new_pid_namespace(*fd, *cmd, flock_of(*l_type, *whence, *start, *len))
                }
                other => Outcome::BadRequest {
                    message: format!(
                        "only F_GETLK and F_OFD_GETLK are made from a new PID namespace, not {other:?}"
                    ),
                },
            },
            Request::Write {
                fd,
                data,
                offset,
                sync,
            } => {
                let n = match offset {
                    Some(o) => {
                        libc::pwrite(*fd, data.as_ptr().cast(), data.len(), *o as libc::off_t)
                    }
                    None => libc::write(*fd, data.as_ptr().cast(), data.len()),
                };
                if n >= 0 && *sync && libc::fsync(*fd) != 0 {
                    return Outcome::Failed { errno: errno() };
                }
                ret(n as i64)
            }
            Request::Read { fd, len, offset } => {
                let mut buf = vec![0u8; (*len).min(1 << 20) as usize];
                let n = match offset {
                    Some(o) => {
                        libc::pread(*fd, buf.as_mut_ptr().cast(), buf.len(), *o as libc::off_t)
                    }
                    None => libc::read(*fd, buf.as_mut_ptr().cast(), buf.len()),
                };
                if n < 0 {
                    return Outcome::Failed { errno: errno() };
                }
                buf.truncate(n as usize);
                Outcome::Data {
                    data: String::from_utf8_lossy(&buf).into_owned(),
                }
            }
            Request::Exit { code } => libc::_exit(*code),
            Request::FcntlInt { fd, cmd, arg } => {
                match ret(libc::fcntl(*fd, *cmd, *arg as libc::c_int) as i64) {
                    Outcome::Done { ret } if *cmd == libc::F_GETLEASE => {
                        Outcome::Leased { l_type: ret }
                    }
                    other => other,
                }
            }
            Request::Handle { signal, restart } => {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = counting_handler as *const () as libc::sighandler_t;
                sa.sa_flags = if *restart { libc::SA_RESTART } else { 0 };
                libc::sigemptyset(&mut sa.sa_mask);
                ret(libc::sigaction(*signal, &sa, std::ptr::null_mut()) as i64)
            }
            Request::Unlink { path } => in_parent(path, |d, n| libc::unlinkat(d, n, 0)),
            Request::Mkdir { path } => in_parent(path, |d, n| libc::mkdirat(d, n, 0o755)),
            Request::MappedWrite {
                fd,
                data,
                offset,
                sync,
            } => mapped_io(*fd, *offset, data.len() as u64, true, |map| {
                map.copy_from_slice(data.as_bytes());
                if *sync {
                    Some(())
                } else {
                    None
                }
            })
            .map_or_else(
                |f| f,
                |_| Outcome::Done {
                    ret: data.len() as i64,
                },
            ),
            Request::MappedRead { fd, len, offset } => {
                let mut out = Vec::new();
                match mapped_io(*fd, *offset, *len, false, |map| {
                    out.extend_from_slice(map);
                    None
                }) {
                    Ok(()) => Outcome::Data {
                        data: String::from_utf8_lossy(&out).into_owned(),
                    },
                    Err(f) => f,
                }
            }
            Request::Mkfifo { path } => {
                in_parent(path, |d, n| libc::mknodat(d, n, libc::S_IFIFO | 0o644, 0))
            }
            Request::Truncate { path, len } => {
                // By path, as truncate(2) breaks leases (ftruncate on a
                // descriptor opened for writing has already broken them):
                // the path is resolved beneath the trial directory first.
                match beneath::open(path, libc::O_PATH | libc::O_CLOEXEC, 0) {
                    Ok(fd) => match CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
                        Ok(p) => ret(libc::truncate(p.as_ptr(), *len as libc::off_t) as i64),
                        Err(_) => Outcome::Failed {
                            errno: libc::EINVAL,
                        },
                    },
                    Err(r) => refused(r, path),
                }
            }
            Request::Symlink { target, path } => match CString::new(target.as_bytes()) {
                Ok(t) => in_parent(path, |d, n| libc::symlinkat(t.as_ptr(), d, n)),
                Err(_) => Outcome::Failed {
                    errno: libc::EINVAL,
                },
            },
            Request::Rename { from, to } => match (beneath::parent(from), beneath::parent(to)) {
                (Ok((fd, f)), Ok((td, t))) => {
                    ret(
                        libc::renameat(fd.as_raw_fd(), f.as_ptr(), td.as_raw_fd(), t.as_ptr())
                            as i64,
                    )
                }
                (Err(r), _) => refused(r, from),
                (_, Err(r)) => refused(r, to),
            },
            Request::Counter {
                fd,
                lock,
                unlock,
                times,
                offset,
            } => counter(*fd, lock, unlock, *times, *offset),
            Request::LockLoop {
                lock,
                unlock,
                times,
            } => lock_loop(lock, unlock, *times),
            Request::Caught { signal, timeout_ms } => caught(*signal, *timeout_ms),
            Request::IoLoop {
                fd,
                chunk,
                budget_ms,
                min_chunks,
                lock,
                unlock,
            } => {
                if let Some(l) = lock {
                    if let Err(f) = perform_ok(l) {
                        return f;
                    }
                }
                let io = io_loop(*fd, *chunk, *budget_ms, *min_chunks);
                if let Some(u) = unlock {
                    if let Err(f) = perform_ok(u) {
                        return f;
                    }
                }
                io
            }
            Request::FcntlNull { fd, cmd } => {
                ret(libc::fcntl(*fd, *cmd, std::ptr::null_mut::<libc::flock>()) as i64)
            }
            Request::ByteLocks { lock, count } => {
                for i in 0..*count {
                    if let Err(f) = perform_ok(&at_range(lock, 2 * i64::from(i), 1)) {
                        return f;
                    }
                }
                Outcome::Done {
                    ret: i64::from(*count),
                }
            }
            Request::Hold {
                lock,
                unlock,
                hold_ms,
            } => {
                if let Err(f) = perform_ok(lock) {
                    return f;
                }
                // Holding is the workload here, not a wait for an event.
                std::thread::sleep(std::time::Duration::from_millis(*hold_ms));
                match perform_ok(unlock) {
                    Err(f) => f,
                    Ok(()) => Outcome::Done { ret: 0 },
                }
            }
            Request::Records {
                fd,
                lock,
                unlock,
                count,
                size,
                writer,
                writers,
            } => records(*fd, lock, unlock, *count, *size, (*writer, *writers)),
            Request::LockFileCreate { path, pid } => lock_file(path, *pid),
            Request::LockFileRemove { path } => in_parent(path, |d, n| libc::unlinkat(d, n, 0)),
            Request::PidAlive { path } => pid_alive(path),
            Request::Spawn { socket, set_tid } => spawn_actor(socket, *set_tid),
            Request::ReadProc { tid } => Outcome::Proc {
                snapshot: read_proc(*tid),
            },
            Request::SignalPid { pid, tid, signal } => ret(match tid {
                Some(t) => libc::syscall(libc::SYS_tgkill, *pid, *t, *signal),
                None => libc::kill(*pid, *signal) as i64,
            }),
            Request::WaitGone { pid, timeout_ms } => wait_gone(*pid, *timeout_ms),
            Request::Fork { .. } | Request::Thread { .. } | Request::Exec => Outcome::BadRequest {
                message: "handled by the request loop".into(),
            },
        }
    }
}

/// The most an I/O loop writes.
const MAX_IO_BYTES: u64 = 64 << 20;

/// Write `chunk`-byte blocks until `budget_ms` has passed (at least
/// `min_chunks`), fsync, read them back: the bytes and both times.
fn io_loop(fd: RawFd, chunk: u32, budget_ms: u64, min_chunks: u32) -> Outcome {
    let chunk = chunk.clamp(512, 1 << 20) as usize;
    let block = vec![b'x'; chunk];
    let mut buf = vec![0u8; chunk];
    let budget = std::time::Duration::from_millis(budget_ms);
    let t0 = monotonic_ns();
    let began = std::time::Instant::now();
    let mut n: u64 = 0;
    while (n < u64::from(min_chunks) || began.elapsed() < budget)
        && (n + 1) * chunk as u64 <= MAX_IO_BYTES
    {
        // SAFETY: pwrite from a live buffer of its length.
        let w = unsafe {
            libc::pwrite(
                fd,
                block.as_ptr().cast(),
                chunk,
                (n * chunk as u64) as libc::off_t,
            )
        };
        if w != chunk as isize {
            return Outcome::Failed {
                errno: if w < 0 { errno() } else { libc::EIO },
            };
        }
        n += 1;
    }
    // SAFETY: fsync of the actor's own descriptor.
    if unsafe { libc::fsync(fd) } != 0 {
        return Outcome::Failed { errno: errno() };
    }
    let t1 = monotonic_ns();
    for k in 0..n {
        // SAFETY: pread into a live buffer of its length.
        let r = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                chunk,
                (k * chunk as u64) as libc::off_t,
            )
        };
        if r != chunk as isize {
            return Outcome::Failed {
                errno: if r < 0 { errno() } else { libc::EIO },
            };
        }
    }
    let t2 = monotonic_ns();
    Outcome::Io {
        bytes: n * chunk as u64,
        write_ns: t1.saturating_sub(t0),
        read_ns: t2.saturating_sub(t1),
    }
}

/// How many of each signal the process has received since `caught` last asked.
static CAUGHT: [std::sync::atomic::AtomicU32; 65] =
    [const { std::sync::atomic::AtomicU32::new(0) }; 65];

/// The handler of every signal an actor handles: it only counts (an
/// interrupted call returns EINTR, or restarts with SA_RESTART).
extern "C" fn counting_handler(sig: libc::c_int) {
    if let Some(c) = usize::try_from(sig).ok().and_then(|s| CAUGHT.get(s)) {
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Wait up to `timeout_ms` for `signal` to have arrived; take the count.
fn caught(signal: i32, timeout_ms: u64) -> Outcome {
    let Some(count) = usize::try_from(signal).ok().and_then(|s| CAUGHT.get(s)) else {
        return Outcome::BadRequest {
            message: format!("no signal {signal}"),
        };
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    // SAFETY: sigset_t values are plain data, initialised by sigemptyset
    // and sigprocmask before use; ppoll gets no descriptors, a valid
    // timespec and a valid mask.
    unsafe {
        // Block the signal while checking the count, and let ppoll unblock
        // it atomically while it sleeps: a signal arriving between the check
        // and the sleep interrupts the sleep instead of being missed.
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, signal);
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, &only, &mut before);
        let mut during = before;
        libc::sigdelset(&mut during, signal);
        let outcome = loop {
            let n = count.swap(0, std::sync::atomic::Ordering::SeqCst);
            if n > 0 {
                break Outcome::Done { ret: i64::from(n) };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Outcome::Failed {
                    errno: libc::ETIMEDOUT,
                };
            }
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            // Returns on the signal (EINTR) or when the time is up.
            libc::ppoll(std::ptr::null_mut(), 0, &ts, &during);
        };
        libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        outcome
    }
}

/// Map `len` bytes of `fd` at `offset` (shared; writable for a `write`,
/// which mmap refuses with EACCES on a descriptor not open read-write),
/// give them to `f`, msync if `f` asks, unmap. A write must lie inside the
/// file: past its end a mapping faults (SIGBUS), so that is refused with
/// ENXIO first; a read stops at the file's end.
fn mapped_io(
    fd: RawFd,
    offset: u64,
    len: u64,
    write: bool,
    f: impl FnOnce(&mut [u8]) -> Option<()>,
) -> Result<(), Outcome> {
    // SAFETY: fstat into a zeroed struct; mmap of a live descriptor with a
    // page-aligned offset, used only within the mapped length and unmapped
    // before returning; msync/munmap on that mapping.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(Outcome::Failed { errno: errno() });
        }
        let size = st.st_size.max(0) as u64;
        let len = if write {
            if offset.checked_add(len).is_none_or(|end| end > size) {
                return Err(Outcome::Failed { errno: libc::ENXIO });
            }
            len
        } else {
            len.min(size.saturating_sub(offset))
        };
        if len == 0 {
            return Ok(());
        }
        let page = libc::sysconf(libc::_SC_PAGESIZE).max(4096) as u64;
        let base = offset - offset % page;
        let span = (offset - base + len) as usize;
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let map = libc::mmap(
            std::ptr::null_mut(),
            span,
            prot,
            libc::MAP_SHARED,
            fd,
            base as libc::off_t,
        );
        if map == libc::MAP_FAILED {
            return Err(Outcome::Failed { errno: errno() });
        }
        let bytes = std::slice::from_raw_parts_mut(map.cast::<u8>(), span);
        let want_sync = f(&mut bytes[(offset - base) as usize..]);
        let synced = want_sync.is_none() || libc::msync(map, span, libc::MS_SYNC) == 0;
        let sync_errno = if synced { 0 } else { errno() };
        libc::munmap(map, span);
        if synced {
            Ok(())
        } else {
            Err(Outcome::Failed { errno: sync_errno })
        }
    }
}

/// A call on a name in the directory that holds `path` (resolved beneath
/// its trial directory).
fn in_parent(path: &Beneath, f: impl FnOnce(RawFd, *const libc::c_char) -> libc::c_int) -> Outcome {
    match beneath::parent(path) {
        Ok((dir, name)) => ret(f(dir.as_raw_fd(), name.as_ptr()) as i64),
        Err(r) => refused(r, path),
    }
}

/// A path that could not be used: its errno, or a refusal for one that
/// leads out of the trial directory.
fn refused(r: beneath::Refusal, path: &Beneath) -> Outcome {
    match r {
        beneath::Refusal::Errno(errno) => Outcome::Failed { errno },
        beneath::Refusal::Escapes => Outcome::Refused {
            message: r.message(path),
        },
    }
}

/// `perform`, with a failure as the error.
fn perform_ok(req: &Request) -> Result<(), Outcome> {
    match perform(req) {
        f if f.is_failure() => Err(f),
        _ => Ok(()),
    }
}

/// The most rounds a lock loop makes (its answer is one number per round).
const MAX_LOOP: u32 = 200_000;

/// Lock and unlock `times` times, timing each round.
fn lock_loop(lock: &Request, unlock: &Request, times: u32) -> Outcome {
    if times > MAX_LOOP {
        return Outcome::BadRequest {
            message: format!("at most {MAX_LOOP} rounds"),
        };
    }
    let mut ns = Vec::with_capacity(times as usize);
    for _ in 0..times {
        let t0 = monotonic_ns();
        for req in [lock, unlock] {
            if let Err(f) = perform_ok(req) {
                return f;
            }
        }
        ns.push(monotonic_ns().saturating_sub(t0));
    }
    Outcome::Samples { ns }
}

/// Read-increment-write under a lock, `times` times.
fn counter(fd: RawFd, lock: &Request, unlock: &Request, times: u32, offset: u64) -> Outcome {
    for _ in 0..times {
        if let Err(f) = perform_ok(lock) {
            return f;
        }
        // A failed read or write (a full disk) still unlocks: the other
        // actors must not wait for a lock nobody will release.
        let body = increment(fd, offset);
        let unlocked = perform_ok(unlock);
        if let Err(f) = body.and(unlocked) {
            return f;
        }
    }
    Outcome::Done {
        ret: i64::from(times),
    }
}

/// A `struct flock` for a request (l_pid 0, the rest zeroed).
fn flock_of(l_type: i16, whence: i16, start: i64, len: i64) -> libc::flock {
    // SAFETY: struct flock is plain data; all zeroes is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = whence;
    fl.l_start = start;
    fl.l_len = len;
    fl.l_pid = 0;
    fl
}

/// F_GETLK's answer, with the `struct flock` as it was passed in.
fn lock_outcome(fl: &libc::flock, asked: &libc::flock) -> Outcome {
    let desc = |f: &libc::flock| LockDesc {
        l_type: f.l_type,
        l_whence: f.l_whence,
        start: f.l_start,
        len: f.l_len,
        pid: f.l_pid,
    };
    Outcome::Lock {
        lock: desc(fl),
        asked: Some(desc(asked)),
    }
}

/// What the process in the new PID namespace sends back through the pipe.
#[repr(C)]
#[derive(Clone, Copy)]
struct NsAnswer {
    /// 1: no namespace (`errno` says why), 2: fcntl failed, 3: done.
    stage: i32,
    errno: i32,
    /// Its own pid, as it sees it (1 in a new namespace).
    pid: i32,
    fl: libc::flock,
}

/// F_GETLK (or F_OFD_GETLK) made by PID 1 of a new PID namespace: the
/// actor forks a child, which unshares a PID namespace (or, without the
/// privilege for that, a user and a PID namespace) and forks the process
/// that asks. Only async-signal-safe calls run after the fork (the actor
/// may have threads); SIGCHLD is ignored, so both are reaped by the kernel,
/// and the pipe's end of file says both are gone.
fn getlk_in_new_pid_namespace(fd: RawFd, cmd: i32, asked: libc::flock) -> Outcome {
    let size = std::mem::size_of::<NsAnswer>();
    let mut p = [0 as libc::c_int; 2];
    // SAFETY: pipe2, fork, unshare, fcntl, write, read, close and _exit on
    // our own descriptors and on stack memory of the stated size.
    unsafe {
        if libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Outcome::Failed { errno: errno() };
        }
        let send = |a: &NsAnswer| {
            libc::write(p[1], (a as *const NsAnswer).cast(), size);
        };
        let child = libc::fork();
        if child < 0 {
            let e = errno();
            libc::close(p[0]);
            libc::close(p[1]);
            return Outcome::Failed { errno: e };
        }
        if child == 0 {
            libc::close(p[0]);
            let mut a = NsAnswer {
                stage: 1,
                errno: 0,
                pid: 0,
                fl: asked,
            };
            if libc::unshare(libc::CLONE_NEWPID) != 0
                && (errno() != libc::EPERM
                    || libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID) != 0)
            {
                a.errno = errno();
                send(&a);
                libc::_exit(0);
            }
            let g = libc::fork();
            if g == 0 {
                a.pid = libc::getpid();
                let r = libc::fcntl(fd, cmd, &mut a.fl as *mut libc::flock);
                (a.stage, a.errno) = if r < 0 { (2, errno()) } else { (3, 0) };
                send(&a);
                libc::_exit(0);
            }
            if g < 0 {
                a.errno = errno();
                send(&a);
            } else {
                let mut st = 0;
                libc::waitpid(g, &mut st, 0);
            }
            libc::_exit(0);
        }
        libc::close(p[1]);
        let mut a: NsAnswer = std::mem::zeroed();
        let mut got = 0usize;
        while got < size {
            let n = libc::read(
                p[0],
                (&mut a as *mut NsAnswer).cast::<u8>().add(got).cast(),
                size - got,
            );
            if n > 0 {
                got += n as usize;
            } else if n == 0 || errno() != libc::EINTR {
                break;
            }
        }
        libc::close(p[0]);
        match (got == size, a.stage) {
            (false, _) => Outcome::BadRequest {
                message: "the process in the new PID namespace ended without an answer".into(),
            },
            // No namespace (unshare or fork failed), or F_GETLK failed.
            (true, 1 | 2) => Outcome::Failed { errno: a.errno },
            (true, _) if a.pid != 1 => Outcome::BadRequest {
                message: format!(
                    "the process meant to be PID 1 of a new PID namespace is pid {}",
                    a.pid
                ),
            },
            (true, _) => lock_outcome(&a.fl, &asked),
        }
    }
}

/// A request's record-lock range moved to `start`, `len` (a flock or
/// other whole-file request stays as it is).
fn at_range(req: &Request, at: i64, n: i64) -> Request {
    match req {
        Request::Fcntl {
            fd,
            cmd,
            l_type,
            whence,
            ..
        } => Request::Fcntl {
            fd: *fd,
            cmd: *cmd,
            l_type: *l_type,
            start: at,
            len: n,
            whence: *whence,
        },
        other => other.clone(),
    }
}

/// This writer's share of interleaved records, each under its own lock.
fn records(
    fd: RawFd,
    lock: &Request,
    unlock: &Request,
    count: u32,
    size: u32,
    (writer, writers): (u32, u32),
) -> Outcome {
    let mut written = 0i64;
    for j in (writer..count).step_by(writers.max(1) as usize) {
        let at = i64::from(j) * i64::from(size);
        if let Err(f) = perform_ok(&at_range(lock, at, i64::from(size))) {
            return f;
        }
        let text = crate::actor::protocol::record_text(j, writer, size);
        // SAFETY: pwrite with a valid buffer of the given length.
        let n = unsafe { libc::pwrite(fd, text.as_ptr().cast(), text.len(), at as libc::off_t) };
        let body = if n == text.len() as isize {
            Ok(())
        } else if n < 0 {
            Err(Outcome::Failed { errno: errno() })
        } else {
            Err(Outcome::Failed { errno: libc::EIO })
        };
        // Unlock even after a failed write: the others must not wait forever.
        let unlocked = perform_ok(&at_range(unlock, at, i64::from(size)));
        if let Err(f) = body.and(unlocked) {
            return f;
        }
        written += 1;
    }
    Outcome::Done { ret: written }
}

/// One round of the counter, under the lock: read the number, write it plus one.
fn increment(fd: RawFd, offset: u64) -> Result<(), Outcome> {
    let mut buf = [0u8; 32];
    // SAFETY: pread/pwrite with valid buffers of the given lengths.
    let n = unsafe {
        libc::pread(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    };
    if n < 0 {
        return Err(Outcome::Failed { errno: errno() });
    }
    let text = String::from_utf8_lossy(&buf[..n as usize]);
    let digits = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let value: u64 = if digits.is_empty() {
        0
    } else {
        // Not a counter any more: say so instead of starting over.
        digits.parse().map_err(|_| Outcome::Failed {
            errno: libc::EINVAL,
        })?
    };
    let next = value.saturating_add(1).to_string();
    // Give other processes the CPU between read and write: without
    // working exclusion, updates are then lost reliably, not by luck.
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
    // SAFETY: as above.
    let w = unsafe { libc::pwrite(fd, next.as_ptr().cast(), next.len(), offset as libc::off_t) };
    if w < 0 {
        return Err(Outcome::Failed { errno: errno() });
    }
    Ok(())
}

/// A lock file created exclusively. With `pid` (the daemon pid-file
/// pattern), write our pid, and treat an existing file whose pid is gone as
/// stale: remove it and try once more.
fn lock_file(path: &Beneath, pid: bool) -> Outcome {
    let (dir, name) = match beneath::parent(path) {
        Ok(p) => p,
        Err(r) => return refused(r, path),
    };
    for attempt in 0..2 {
        // SAFETY: openat/write/close/unlinkat with valid arguments.
        unsafe {
            let fd = libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            );
            if fd >= 0 {
                let mut result = Outcome::Done { ret: 0 };
                if pid {
                    let text = format!("{}\n", std::process::id());
                    if libc::write(fd, text.as_ptr().cast(), text.len()) < 0 {
                        result = Outcome::Failed { errno: errno() };
                    }
                }
                libc::close(fd);
                return result;
            }
            let e = errno();
            if e != libc::EEXIST || !pid || attempt > 0 {
                return Outcome::Failed { errno: e };
            }
            match pid_alive(path) {
                Outcome::Failed { errno } if errno == libc::ESRCH => {}
                r @ Outcome::Refused { .. } => return r,
                _ => {
                    return Outcome::Failed {
                        errno: libc::EEXIST,
                    }
                }
            }
            libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0);
        }
    }
    Outcome::Failed {
        errno: libc::EEXIST,
    }
}

/// The stale check of the pid-file pattern: is the process named in the file alive?
fn pid_alive(path: &Beneath) -> Outcome {
    let text = match beneath::open(path, libc::O_RDONLY | libc::O_CLOEXEC, 0) {
        Ok(fd) => {
            let mut t = String::new();
            match std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut t) {
                Ok(_) => t,
                Err(e) => {
                    return Outcome::Failed {
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                    }
                }
            }
        }
        Err(r) => return refused(r, path),
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Outcome::Failed {
            errno: libc::EINVAL,
        };
    };
    if pid <= 0 {
        return Outcome::Failed {
            errno: libc::EINVAL,
        };
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    if r == 0 || errno() == libc::EPERM {
        Outcome::Done {
            ret: i64::from(pid),
        }
    } else {
        Outcome::Failed { errno: errno() }
    }
}

/// What the kernel shows of a task on this host.
fn read_proc(tid: i32) -> crate::actor::protocol::ProcSnapshot {
    crate::actor::protocol::ProcSnapshot {
        state: crate::actor::observe::read_state(tid).ok(),
        syscall: std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok(),
        wchan: crate::actor::observe::read_wchan(tid),
        locks: std::fs::read_to_string("/proc/locks").unwrap_or_default(),
        stack: crate::actor::observe::read_stack(tid),
    }
}

/// Wait (bounded) for a process on this host to end.
fn wait_gone(pid: i32, timeout_ms: u64) -> Outcome {
    match crate::actor::observe::Pidfd::open(pid) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Outcome::Done { ret: 1 },
        Err(e) => Outcome::Failed {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        },
        Ok(fd) => match fd.wait_exit(std::time::Duration::from_millis(timeout_ms)) {
            Ok(gone) => Outcome::Done {
                ret: i64::from(gone),
            },
            Err(e) => Outcome::Failed {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
            },
        },
    }
}

/// clone3(2)'s argument block (struct clone_args, version 2: with set_tid and cgroup).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Start a fresh actor process that connects back on `socket`; with
/// `set_tid`, clone3 gives it exactly that pid (EEXIST if it is taken,
/// EPERM without CAP_SYS_ADMIN). The child only execs or exits.
fn spawn_actor(socket: &str, set_tid: Option<i32>) -> Outcome {
    let exe = match std::fs::read_link("/proc/self/exe") {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Failed {
                errno: e.raw_os_error().unwrap_or(libc::ENOENT),
            }
        }
    };
    let (Ok(path), Ok(arg1), Ok(arg2), Ok(arg3), Ok(arg4)) = (
        CString::new(exe.as_os_str().as_encoded_bytes()),
        CString::new(ACTOR_ARG),
        CString::new("0"),
        CString::new("--connect"),
        CString::new(socket),
    ) else {
        return Outcome::Failed {
            errno: libc::EINVAL,
        };
    };
    let argv = [
        path.as_ptr(),
        arg1.as_ptr(),
        arg2.as_ptr(),
        arg3.as_ptr(),
        arg4.as_ptr(),
        std::ptr::null(),
    ];
    let tid: [libc::pid_t; 1] = [set_tid.unwrap_or(0)];
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if set_tid.is_some() {
            tid.as_ptr() as u64
        } else {
            0
        },
        set_tid_size: u64::from(set_tid.is_some()),
        cgroup: 0,
    };
    // SAFETY: clone3 with a valid argument block; like fork, the child of this
    // single-threaded process continues here and only execs or exits.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid < 0 {
        return Outcome::Failed { errno: errno() };
    }
    if pid == 0 {
        // SAFETY: exec the actor binary, or exit if that fails.
        unsafe {
            libc::execv(path.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    Outcome::Spawned { pid: pid as i32 }
}

fn ret(r: i64) -> Outcome {
    if r < 0 {
        Outcome::Failed { errno: errno() }
    } else {
        Outcome::Done { ret: r }
    }
}

fn opened(fd: RawFd) -> Outcome {
    // SAFETY: fstat into a zeroed stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Outcome::Opened { fd, dev: 0, ino: 0 };
        }
        Outcome::Opened {
            fd,
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// The actor's system-call layer, in this process: what `perform` returns
/// for real calls on a scratch directory. (Conflicts between processes are
/// the catalog's; here, two open file descriptions of one process conflict
/// for flock and OFD locks as they would across processes.)
#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, rel: &str, flags: i32) -> i32 {
        match perform(&Request::Open {
            path: Beneath::new(dir, rel),
            flags,
        }) {
            Outcome::Opened { fd, ino, .. } => {
                assert!(ino > 0, "an opened file has its inode");
                fd
            }
            other => panic!("open {rel}: {other:?}"),
        }
    }

    fn close(fd: i32) {
        assert!(matches!(
            perform(&Request::Close { fd }),
            Outcome::Done { ret: 0 }
        ));
    }

    #[test]
    fn writes_and_reads_at_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fd = open(
            dir.path(),
            "f",
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
        );
        let w = perform(&Request::Write {
            fd,
            data: "hello".into(),
            offset: Some(3),
            sync: true,
        });
        assert!(matches!(w, Outcome::Done { ret: 5 }), "{w:?}");
        let r = perform(&Request::Read {
            fd,
            len: 5,
            offset: Some(3),
        });
        assert!(
            matches!(&r, Outcome::Data { data } if data == "hello"),
            "{r:?}"
        );
        close(fd);
        // A closed descriptor is an errno, not a panic.
        assert!(matches!(
            perform(&Request::Close { fd }),
            Outcome::Failed { errno: libc::EBADF }
        ));
    }

    #[test]
    fn two_open_file_descriptions_conflict_for_flock_and_ofd_locks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC;
        let (a, b) = (open(dir.path(), "f", flags), open(dir.path(), "f", flags));
        let flock = |fd, operation| perform(&Request::Flock { fd, operation });
        assert!(matches!(
            flock(a, libc::LOCK_EX | libc::LOCK_NB),
            Outcome::Done { .. }
        ));
        assert!(matches!(
            flock(b, libc::LOCK_SH | libc::LOCK_NB),
            Outcome::Failed {
                errno: libc::EWOULDBLOCK
            }
        ));
        assert!(matches!(flock(a, libc::LOCK_UN), Outcome::Done { .. }));
        let ofd = |fd, cmd, l_type: i32, start| {
            perform(&Request::Fcntl {
                fd,
                cmd,
                l_type: l_type as i16,
                start,
                len: 10,
                whence: 0,
            })
        };
        assert!(matches!(
            ofd(a, libc::F_OFD_SETLK, libc::F_WRLCK, 0),
            Outcome::Done { .. }
        ));
        // The neighbouring range is free, the same range is not...
        assert!(matches!(
            ofd(b, libc::F_OFD_SETLK, libc::F_WRLCK, 10),
            Outcome::Done { .. }
        ));
        assert!(matches!(
            ofd(b, libc::F_OFD_SETLK, libc::F_RDLCK, 5),
            Outcome::Failed {
                errno: libc::EAGAIN
            }
        ));
        // ...and F_OFD_GETLK describes the holder (pid -1 for OFD locks).
        match ofd(b, libc::F_OFD_GETLK, libc::F_RDLCK, 5) {
            Outcome::Lock { lock, .. } => {
                assert_eq!(
                    (lock.l_type, lock.start, lock.len, lock.pid),
                    (libc::F_WRLCK as i16, 0, 10, -1)
                );
            }
            other => panic!("F_OFD_GETLK: {other:?}"),
        }
        close(a);
        close(b);
    }

    #[test]
    fn a_path_out_of_the_trial_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).expect("symlink");
        let r = perform(&Request::Open {
            path: Beneath::new(dir.path(), "out/passwd"),
            flags: libc::O_RDONLY | libc::O_CLOEXEC,
        });
        assert!(matches!(r, Outcome::Refused { .. }), "{r:?}");
    }
}
