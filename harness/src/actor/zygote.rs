//! The zygote: a single-threaded copy of the binary, started once per run,
//! that forks actors on request. Starting an actor by exec costs the loading
//! and relocation of the whole binary (tens of milliseconds under
//! User-Mode Linux, a millisecond here); a fork of the small, idle zygote
//! costs a fraction of that. The harness itself never forks: it is
//! multi-threaded, the zygote is not.
//!
//! The harness talks to the zygote over a `SOCK_SEQPACKET` socket pair (the
//! zygote's stdin). A spawn request carries the actor's two descriptors —
//! its end of the control channel and the write end of its stderr pipe — as
//! `SCM_RIGHTS`, and the directory to run in. The child becomes an actor in
//! its own process group, dies with the zygote (`PR_SET_PDEATHSIG`), which
//! dies with the harness. The zygote reaps its children at once (so a dead
//! actor's pid is free for PID-reuse scenarios) and keeps their exit status
//! until the harness asks for it.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The first argument that makes the binary a zygote.
pub(crate) const ZYGOTE_ARG: &str = "__lockcheck_zygote";

/// The largest request or reply.
const MAX_MSG: usize = 16 << 10;

/// Exit statuses kept for the harness to ask for (oldest dropped first).
const MAX_STATUSES: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ZRequest {
    /// Fork an actor in `cwd`; the message carries its channel and stderr.
    Spawn { cwd: String },
    /// The exit status of a child (reaping it first if it has ended).
    Status { pid: i32 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ZReply {
    Ready { pid: i32 },
    Spawned { pid: i32 },
    Status { status: Option<String> },
    Error { message: String },
}

/// An actor the zygote started: its pid and the harness's ends.
pub(crate) struct Spawned {
    pub(crate) pid: i32,
    /// Read end of the control channel.
    pub(crate) chan_read: OwnedFd,
    /// Write end of the control channel (the same socket).
    pub(crate) chan_write: OwnedFd,
    /// Read end of its stderr.
    pub(crate) stderr: OwnedFd,
}

/// The harness's handle on a running zygote.
pub(crate) struct Zygote {
    inner: Mutex<Inner>,
}

struct Inner {
    sock: OwnedFd,
    child: Child,
    /// It stopped answering and was killed: actors are started by exec.
    dead: bool,
}

/// How long the zygote may take to answer (a fork, a status).
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn socket_pair(kind: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair fills two descriptors we then own.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: as above.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Send one message, with descriptors attached.
fn send_msg(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds one header with room for `bytes`
        // of data (CMSG_SPACE above); we write exactly that much.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), bytes);
        }
    }
    loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        let r = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Receive one message and the descriptors attached to it (close-on-exec).
/// An empty message with no descriptors means the peer closed.
fn recv_msg(sock: RawFd) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_MSG];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a pure size computation.
    let space = unsafe { libc::CMSG_SPACE((4 * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: msg points at live buffers for the duration of the call.
        let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into cbuf;
    // each SCM_RIGHTS payload is an array of descriptors now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
                for k in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(k));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other(
            "descriptors were dropped (control data truncated)",
        ));
    }
    buf.truncate(n);
    Ok((buf, fds))
}

impl Zygote {
    /// Start the zygote from `exe`. Call it from the thread that lives as
    /// long as the run (the main thread): the zygote dies with that thread.
    pub(crate) fn start(exe: &Path) -> io::Result<Zygote> {
        let (mine, theirs) = socket_pair(libc::SOCK_SEQPACKET)?;
        let child = Command::new(exe)
            .arg(ZYGOTE_ARG)
            .arg(std::process::id().to_string())
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let pid = child.id() as i32;
        let z = Zygote {
            inner: Mutex::new(Inner {
                sock: mine,
                child,
                dead: false,
            }),
        };
        match z.call(&ZRequest::Status { pid: 0 }, &[]) {
            Ok(_) => {
                // Only a zygote that answered is ours to kill on Ctrl-C.
                crate::actor::interrupt::set_zygote(pid);
                Ok(z)
            }
            Err(e) => Err(io::Error::other(format!("the zygote did not start: {e}"))),
        }
    }

    fn call(&self, req: &ZRequest, fds: &[RawFd]) -> io::Result<ZReply> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.dead {
            return Err(io::Error::other("the zygote stopped answering"));
        }
        let data = serde_json::to_vec(req).map_err(io::Error::other)?;
        let sock = inner.sock.as_raw_fd();
        send_msg(sock, &data, fds)?;
        loop {
            let readable =
                crate::actor::channel::wait_readable(inner.sock.as_fd(), ANSWER_TIMEOUT)?;
            if !readable {
                // Stuck (stopped, or a fork that does not return): give up
                // on it for good; actors are then started by exec.
                inner.dead = true;
                let _ = inner.child.kill();
                let _ = inner.child.wait();
                return Err(io::Error::other(format!(
                    "the zygote did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )));
            }
            let (reply, _) = recv_msg(sock)?;
            if reply.is_empty() {
                return Err(io::Error::other("the zygote is gone"));
            }
            match serde_json::from_slice::<ZReply>(&reply).map_err(io::Error::other)? {
                // The greeting, read on the first call.
                ZReply::Ready { .. } => continue,
                ZReply::Error { message } => return Err(io::Error::other(message)),
                r => return Ok(r),
            }
        }
    }

    /// Fork an actor that runs in `cwd`.
    pub(crate) fn spawn(&self, cwd: &Path) -> io::Result<Spawned> {
        let (chan, actor_chan) = socket_pair(libc::SOCK_STREAM)?;
        let (err_read, err_write) = pipe()?;
        let cwd = cwd
            .to_str()
            .ok_or_else(|| io::Error::other("the trial directory is not UTF-8"))?
            .to_string();
        let reply = self.call(
            &ZRequest::Spawn { cwd },
            &[actor_chan.as_raw_fd(), err_write.as_raw_fd()],
        )?;
        drop(actor_chan);
        drop(err_write);
        match reply {
            ZReply::Spawned { pid } => Ok(Spawned {
                pid,
                chan_write: chan.try_clone()?,
                chan_read: chan,
                stderr: err_read,
            }),
            other => Err(io::Error::other(format!(
                "unexpected zygote reply {other:?}"
            ))),
        }
    }

    /// How a child ended (`exit status 0`, `signal 9 (SIGKILL)`), once it
    /// has; asking also makes sure it is reaped and its pid free.
    pub(crate) fn status(&self, pid: i32) -> Option<String> {
        match self.call(&ZRequest::Status { pid }, &[]) {
            Ok(ZReply::Status { status }) => status,
            _ => None,
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        // Closing our end ends it; its actors die with it.
        // SAFETY: shutting down a socket we own.
        unsafe { libc::shutdown(inner.sock.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = inner.child.kill();
        let _ = inner.child.wait();
    }
}

/// Whether this process was started as a zygote.
pub fn is_zygote_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == ZYGOTE_ARG)
}

fn describe_status(st: libc::c_int) -> String {
    // Worded as std's ExitStatus, which exec'd actors are described with.
    if libc::WIFEXITED(st) {
        format!("exit status: {}", libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        let sig = libc::WTERMSIG(st);
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| "?".into());
        format!("signal: {sig} ({name})")
    } else {
        format!("wait status {st:#x}")
    }
}

fn reply(sock: RawFd, r: &ZReply) {
    if let Ok(data) = serde_json::to_vec(r) {
        if send_msg(sock, &data, &[]).is_err() {
            // The harness is gone.
            // SAFETY: ending the process.
            unsafe { libc::_exit(0) };
        }
    }
}

/// The zygote's set-up: die with the harness, and take SIGCHLD through a
/// signalfd (returned) instead of a handler.
fn set_up(harness: i32) -> RawFd {
    // SAFETY: plain prctl/getppid/sigprocmask/signalfd calls on this
    // single-threaded process.
    let sfd = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if harness != 0 && libc::getppid() != harness {
            libc::_exit(3);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if sfd < 0 {
        // SAFETY: ending the process.
        unsafe { libc::_exit(4) };
    }
    sfd
}

/// The exit statuses of the zygote's children, kept until asked for (the
/// oldest forgotten beyond [`MAX_STATUSES`]).
#[derive(Default)]
struct Reaper {
    statuses: HashMap<i32, libc::c_int>,
    order: std::collections::VecDeque<i32>,
}

impl Reaper {
    /// Collects ended children: `pid`, or every one (-1).
    fn reap(&mut self, pid: libc::pid_t) {
        loop {
            let mut st = 0;
            // SAFETY: waitpid on our own children.
            let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
            if r <= 0 {
                break;
            }
            self.keep(r, st);
            if pid > 0 {
                break;
            }
        }
    }

    /// Keeps `pid`'s status, forgetting the oldest beyond [`MAX_STATUSES`].
    fn keep(&mut self, pid: i32, status: libc::c_int) {
        self.statuses.insert(pid, status);
        self.order.push_back(pid);
        while self.order.len() > MAX_STATUSES {
            if let Some(old) = self.order.pop_front() {
                self.statuses.remove(&old);
            }
        }
    }
}

/// Run as the zygote; never returns.
pub fn main() -> ! {
    let harness: i32 = std::env::args()
        .nth(2)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let sfd = set_up(harness);
    let ctl: RawFd = 0;
    let me = std::process::id() as i32;
    let mut reaper = Reaper::default();
    reply(ctl, &ZReply::Ready { pid: me });
    loop {
        let mut fds = [
            libc::pollfd {
                fd: ctl,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: polling two descriptors we own.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: draining the signalfd into a buffer of its record size.
            while unsafe { libc::read(sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
            reaper.reap(-1);
        }
        if fds[0].revents == 0 {
            continue;
        }
        let (data, received) = match recv_msg(ctl) {
            Ok(m) => m,
            // SAFETY: ending the process.
            Err(_) => unsafe { libc::_exit(0) },
        };
        if data.is_empty() && received.is_empty() {
            // The harness closed its end.
            // SAFETY: ending the process.
            unsafe { libc::_exit(0) };
        }
        match serde_json::from_slice(&data) {
            Err(e) => reply(
                ctl,
                &ZReply::Error {
                    message: e.to_string(),
                },
            ),
            Ok(ZRequest::Status { pid }) => {
                reaper.reap(-1);
                let status = reaper.statuses.remove(&pid).map(describe_status);
                reply(ctl, &ZReply::Status { status });
            }
            Ok(ZRequest::Spawn { cwd }) => reply(ctl, &spawn(sfd, me, &cwd, received)),
        }
    }
}

/// Forks an actor on the two descriptors received (its channel and its
/// stderr), in `cwd`; the reply for the harness. The child never returns.
fn spawn(sfd: RawFd, me: i32, cwd: &str, received: Vec<OwnedFd>) -> ZReply {
    let [chan, err] = match <[OwnedFd; 2]>::try_from(received) {
        Ok(f) => f,
        Err(_) => {
            return ZReply::Error {
                message: "a spawn request carries two descriptors".into(),
            }
        }
    };
    let Ok(cwd_c) = std::ffi::CString::new(cwd) else {
        return ZReply::Error {
            message: "the directory contains a NUL byte".into(),
        };
    };
    // SAFETY: this process is single-threaded, so the child may run any
    // code after fork.
    match unsafe { libc::fork() } {
        -1 => ZReply::Error {
            message: format!("fork: {}", io::Error::last_os_error()),
        },
        0 => {
            // The child: an actor on the descriptors it was given.
            // SAFETY: descriptor and signal-mask set-up of the new
            // single-threaded child before it serves.
            unsafe {
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                libc::close(sfd);
                if libc::dup2(chan.as_raw_fd(), 0) < 0
                    || libc::dup2(chan.as_raw_fd(), 1) < 0
                    || libc::dup2(err.as_raw_fd(), 2) < 0
                {
                    libc::_exit(96);
                }
                drop(chan);
                drop(err);
                libc::setpgid(0, 0);
                if libc::chdir(cwd_c.as_ptr()) != 0 {
                    let msg = format!(
                        "lockcheck actor: cannot enter {cwd}: {}\n",
                        io::Error::last_os_error()
                    );
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::_exit(95);
                }
            }
            crate::actor::process::become_actor(me)
        }
        pid => {
            drop(chan);
            drop(err);
            ZReply::Spawned { pid }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_keeps_a_bounded_number_of_statuses() {
        let mut r = Reaper::default();
        for pid in 1..=(MAX_STATUSES as i32 + 10) {
            r.keep(pid, pid);
        }
        assert_eq!(r.statuses.len(), MAX_STATUSES);
        assert!(!r.statuses.contains_key(&10), "the oldest are forgotten");
        assert_eq!(
            r.statuses.get(&(MAX_STATUSES as i32 + 10)),
            Some(&(MAX_STATUSES as i32 + 10))
        );
    }

    #[test]
    // The child is reaped by the Reaper under test, not by Child::wait.
    #[allow(clippy::zombie_processes)]
    fn the_reaper_collects_a_named_child() {
        // A child of this test process, reaped by pid (never -1 here: other
        // tests' children are not ours to reap).
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .expect("sh");
        let pid = child.id() as i32;
        let mut r = Reaper::default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !r.statuses.contains_key(&pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} not reaped in 10 s"
            );
            r.reap(pid);
            std::thread::yield_now();
        }
        assert_eq!(describe_status(r.statuses[&pid]), "exit status: 7");
    }
}
