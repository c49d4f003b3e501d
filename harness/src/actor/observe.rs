//! Observing actors from the outside: is a call waiting in the kernel, and
//! has a process ended. "Blocked" is read off the kernel's own state, never
//! guessed from elapsed time:
//!
//! - `/proc/PID/syscall` shows the waiting call (number, descriptor, command),
//! - `/proc/PID/stat` shows the task sleeping (S, or D),
//! - `/proc/locks` shows the request queued behind the holder (`->` lines)
//!   on filesystems whose locks the local kernel manages.
//!
//! Where the filesystem keeps its own waiters (NFS, some FUSE), no `->` line
//! appears. The task's kernel stack (`/proc/PID/stack`, readable by root)
//! then names where it sleeps: `nfs4_retry_setlk` (NFSv4 polling for a
//! denied lock), `nlmclnt_block` (NLM waiting for a GRANTED callback),
//! `locks_lock_inode_wait` (the local lock table), `cifs_setlk` or a
//! pending `SMB2_lock` (the SMB client), and it is the evidence.
//! Where neither is available the call is reported blocked after the
//! syscall state has been stable over a bounded observation window, and the
//! evidence says so. Kernels without `/proc/PID/syscall` (User-Mode Linux)
//! are read through the stack alone.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::actor::signature::{Confirm, WaitSignature};

/// A process's current system call, from `/proc/PID/syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyscallState {
    /// On a CPU, not in a system call we can read.
    Running,
    /// Blocked, but not inside a system call.
    NotInSyscall,
    InSyscall {
        nr: i64,
        args: [u64; 6],
    },
}

fn parse_hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

pub(crate) fn parse_syscall(text: &str) -> Option<SyscallState> {
    let text = text.trim();
    if text == "running" {
        return Some(SyscallState::Running);
    }
    let mut parts = text.split_whitespace();
    let nr: i64 = parts.next()?.parse().ok()?;
    if nr < 0 {
        return Some(SyscallState::NotInSyscall);
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        *a = parse_hex(parts.next()?)?;
    }
    Some(SyscallState::InSyscall { nr, args })
}

pub(crate) fn read_syscall(pid: i32) -> io::Result<SyscallState> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/syscall"))?;
    parse_syscall(&text)
        .ok_or_else(|| io::Error::other(format!("unreadable /proc/{pid}/syscall: {text:?}")))
}

/// The one-letter state from `/proc/PID/stat` (R, S, D, T, Z, ...).
pub(crate) fn parse_stat_state(text: &str) -> Option<char> {
    let after = &text[text.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

pub(crate) fn read_state(pid: i32) -> io::Result<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_state(&text).ok_or_else(|| io::Error::other("unreadable /proc/PID/stat"))
}

/// The kernel function the task sleeps in (diagnostics only; names change between kernels).
pub(crate) fn read_wchan(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/wchan"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "0")
}

/// One line of `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockLine {
    /// A request waiting behind the lock above it.
    pub(crate) blocked: bool,
    /// POSIX, FLOCK, OFDLCK, LEASE, ...
    pub(crate) kind: String,
    /// ADVISORY, or for leases ACTIVE / BREAKING / BREAKER.
    pub(crate) class: String,
    /// READ, WRITE, ...
    pub(crate) access: String,
    pub(crate) pid: i64,
    /// `major:minor` as printed (hex).
    pub(crate) dev: String,
    pub(crate) ino: u64,
    pub(crate) start: String,
    pub(crate) end: String,
    pub(crate) raw: String,
}

pub(crate) fn parse_lock_line(line: &str) -> Option<LockLine> {
    let mut t = line.split_whitespace().peekable();
    let _id = t.next()?;
    let blocked = t.peek() == Some(&"->");
    if blocked {
        t.next();
    }
    let kind = t.next()?.to_string();
    let class = t.next()?.to_string();
    let access = t.next()?.to_string();
    let pid: i64 = t.next()?.parse().ok()?;
    let id = t.next()?;
    let (dev, ino) = id.rsplit_once(':')?;
    let ino: u64 = ino.parse().ok()?;
    let start = t.next().unwrap_or("").to_string();
    let end = t.next().unwrap_or("").to_string();
    Some(LockLine {
        blocked,
        kind,
        class,
        access,
        pid,
        dev: dev.to_string(),
        ino,
        start,
        end,
        raw: line.trim().to_string(),
    })
}

pub(crate) fn read_proc_locks() -> io::Result<Vec<LockLine>> {
    let text = std::fs::read_to_string("/proc/locks")?;
    Ok(text.lines().filter_map(parse_lock_line).collect())
}

/// A handle on a process that says when it has ended, immune to PID reuse.
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    pub(crate) fn open(pid: i32) -> io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor; nobody else owns it.
        Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// SIGKILL this very process (not whoever has its pid now).
    pub(crate) fn kill(&self) {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal with our pidfd, a signal number and no info.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }

    /// Wait up to `timeout` for the process to end; true once it has.
    /// By then the kernel has closed its descriptors and dropped its locks.
    pub(crate) fn wait_exit(&self, timeout: Duration) -> io::Result<bool> {
        crate::actor::channel::wait_readable(self.0.as_fd(), timeout)
    }
}

/// Where the kernel's view of a task comes from: this host's /proc, or a
/// snapshot an agent took on the task's own host.
pub(crate) trait ProcView {
    fn state(&mut self, tid: i32) -> Option<char>;
    fn syscall(&mut self, tid: i32) -> io::Result<SyscallState>;
    fn wchan(&mut self, tid: i32) -> Option<String>;
    fn locks(&mut self) -> Vec<LockLine>;
    /// `/proc/TID/stack`, if readable (root only).
    fn stack(&mut self, tid: i32) -> Option<String>;
}

/// Whether a process has been killed and is on its way out: gone, a zombie,
/// exiting, or SIGKILL pending (it may be stuck finishing a call, like an
/// NFS unlock waiting for the network).
pub(crate) fn is_dying(pid: i32) -> bool {
    // Already exiting: SIGKILL was taken, and the process waits in its
    // exit for what closing its files needs (an NFS unlock over a link that
    // is down) -- in state D, with no signal pending any more, so only the
    // kernel's PF_EXITING flag (field 9 of /proc/PID/stat) shows it.
    const PF_EXITING: u64 = 0x4;
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let flags = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(6))
            .and_then(|f| f.parse::<u64>().ok());
        if flags.is_some_and(|f| f & PF_EXITING != 0) {
            return true;
        }
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    const SIGKILL_BIT: u64 = 1 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let (k, v) = l.split_once(':').unwrap_or(("", ""));
        match k {
            "State" => matches!(v.trim().chars().next(), Some('Z' | 'X')),
            "SigPnd" | "ShdPnd" => {
                u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & SIGKILL_BIT != 0)
            }
            _ => false,
        }
    })
}

/// `/proc/TID/stack`, if this process may read it.
pub(crate) fn read_stack(tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{tid}/stack")).ok()
}

/// The function names of a `/proc/PID/stack` text, innermost first
/// (`[<0>] nfs4_retry_setlk+0x177/0x1c7 [nfsv4]` gives `nfs4_retry_setlk`).
fn stack_frames(stack: &str) -> impl Iterator<Item = &str> {
    stack.lines().filter_map(|l| {
        let f = l.split_whitespace().find(|w| !w.starts_with('['))?;
        Some(f.split('+').next().unwrap_or(f))
    })
}

/// Frames that only say "asleep", skipped to find where the task waits.
const SLEEP_FRAMES: &[&str] = &[
    "__switch_to",
    "__switch_to_asm",
    "__schedule",
    "schedule",
    "schedule_timeout",
    "io_schedule",
    "io_schedule_timeout",
    "wait_woken",
    "schedule_hrtimeout_range",
    "schedule_hrtimeout_range_clock",
    "freezable_schedule_timeout",
    "do_wait_for_common",
    "__wait_for_common",
    "wait_for_completion",
];

/// Kernel functions in which a task sleeps because of another lock holder:
/// the local lock table, the NFSv4 client retrying a denied LOCK, the NLM
/// client waiting for a GRANTED callback, the SMB client waiting behind a
/// byte-range lock it knows of (`cifs_setlk`), an open waiting for a lease
/// break.
const LOCK_WAIT_SITES: &[&str] = &[
    "cifs_setlk",
    "locks_lock_inode_wait",
    "locks_lock_file_wait",
    "flock_lock_inode_wait",
    "posix_lock_inode_wait",
    "fcntl_setlk",
    "fcntl_setlk64",
    "__do_sys_flock",
    "nfs4_retry_setlk",
    "nlmclnt_block",
    "__break_lease",
    "break_lease",
];

/// Where a task sleeps (`/proc/PID/wchan`, which its own user may read) when
/// that alone says it waits behind another holder: the local lock table's
/// waits, the NFSv4 client between retries of a denied LOCK (its retry loop
/// is inlined into `nfs4_proc_setlk`), the NLM client waiting for GRANTED,
/// the SMB client behind a lock it knows of. Used only when neither the
/// system call nor the kernel stack can be read: User-Mode Linux has no
/// `/proc/PID/syscall` and the stack is root's, so an unprivileged lockcheck
/// in the NFS lab has only this (and `/proc/locks`, which NFSv4 waiters are
/// not in). An RPC to the server sleeps elsewhere (`rpc_wait_bit_killable`,
/// in state D), so a task seen here in state S was refused and waits.
const LOCK_WAIT_WCHANS: &[&str] = &[
    "nfs4_proc_setlk",
    "nfs4_retry_setlk",
    "nlmclnt_block",
    "locks_lock_inode_wait",
    "locks_lock_file_wait",
    "flock_lock_inode_wait",
    "posix_lock_inode_wait",
    "fcntl_setlk",
    "__do_sys_flock",
    "cifs_setlk",
];

/// Whether a task in system call `nr`, asleep (state S) in kernel function
/// `wchan`, waits for a lock (see [`LOCK_WAIT_WCHANS`]): for flock and fcntl
/// one of those; for an open or truncate, a lease break.
pub(crate) fn wchan_lock_wait(wchan: &str, nr: i64) -> Option<String> {
    let waits = if nr == libc::SYS_flock || nr == libc::SYS_fcntl {
        LOCK_WAIT_WCHANS.contains(&wchan)
    } else {
        wchan.contains("break_lease")
    };
    waits.then(|| {
        format!(
            "asleep in {wchan} (wchan; the system call and the kernel stack cannot be read here)"
        )
    })
}

/// Where the stack shows the task waiting for a lock (the wait site and the
/// system call entry) when the task is in the call `nr`; `None` when it
/// sleeps elsewhere (for example in an RPC to the server, which is not yet
/// a lock wait).
/// Whether a task in system call `nr` is in the call `want` describes: an
/// open is openat2 (beneath the trial directory), or openat where the
/// kernel has no openat2 and actors walk the path instead.
fn same_call(want: i64, nr: i64) -> bool {
    nr == want || (want == libc::SYS_openat2 && nr == libc::SYS_openat)
}

pub(crate) fn stack_lock_wait(stack: &str, nr: i64) -> Option<String> {
    let frames: Vec<&str> = stack_frames(stack).collect();
    let mut site = *frames.iter().find(|f| !SLEEP_FRAMES.contains(f))?;
    // A blocking SMB2 LOCK (no FAIL_IMMEDIATELY) is held pending by the
    // server until the conflicting lock goes: the client sleeps for the
    // answer to it, and that is the wait (MS-SMB2 3.3.5.14).
    if site == "wait_for_response" && frames.contains(&"SMB2_lock") {
        site = "SMB2_lock";
    } else if !LOCK_WAIT_SITES.contains(&site) {
        return None;
    }
    let entry = if nr == libc::SYS_flock {
        "sys_flock"
    } else if nr == libc::SYS_fcntl {
        "sys_fcntl"
    } else {
        // An open or truncate that waits for a lease break.
        return (site.contains("break_lease")).then(|| format!("waits in {site}"));
    };
    let in_entry = frames
        .iter()
        .any(|f| f.ends_with(entry) || f.ends_with("sys_fcntl64"));
    in_entry.then(|| format!("kernel stack waits in {site} under {entry}"))
}

/// This host's /proc.
pub(crate) struct LocalProc;

impl ProcView for LocalProc {
    fn state(&mut self, tid: i32) -> Option<char> {
        read_state(tid).ok()
    }
    fn syscall(&mut self, tid: i32) -> io::Result<SyscallState> {
        read_syscall(tid)
    }
    fn wchan(&mut self, tid: i32) -> Option<String> {
        read_wchan(tid)
    }
    fn locks(&mut self) -> Vec<LockLine> {
        read_proc_locks().unwrap_or_default()
    }
    fn stack(&mut self, tid: i32) -> Option<String> {
        read_stack(tid)
    }
}

/// A snapshot taken by an agent on another host.
impl ProcView for crate::actor::protocol::ProcSnapshot {
    fn state(&mut self, _: i32) -> Option<char> {
        self.state
    }
    fn syscall(&mut self, _: i32) -> io::Result<SyscallState> {
        match &self.syscall {
            Some(text) => parse_syscall(text)
                .ok_or_else(|| io::Error::other(format!("unreadable syscall {text:?}"))),
            None => Err(io::Error::from_raw_os_error(libc::EACCES)),
        }
    }
    fn wchan(&mut self, _: i32) -> Option<String> {
        self.wchan.clone()
    }
    fn locks(&mut self) -> Vec<LockLine> {
        self.locks.lines().filter_map(parse_lock_line).collect()
    }
    fn stack(&mut self, _: i32) -> Option<String> {
        self.stack.clone()
    }
}

/// How "blocked" was decided, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evidence {
    pub(crate) text: String,
}

/// Decides from kernel state whether a call is waiting for a lock.
pub(crate) struct BlockDetector {
    /// The task to read /proc/TID/{syscall,stat} of (a thread id for thread actors).
    tid: i32,
    /// The process id /proc/locks prints for the waiter.
    pid: i32,
    sig: WaitSignature,
    /// The file the call is about (its inode), when known.
    ino: Option<u64>,
    /// The device as /proc/locks prints it for this target (`MAJ:MIN`), when known:
    /// inode numbers repeat across filesystems (two tmpfs mounts both start at 2).
    dev: Option<String>,
    /// Whether `/proc/locks` is expected to show the waiter.
    lock_lists: bool,
    stable: u32,
    stable_since: Option<Instant>,
    syscall_unreadable: bool,
    /// The lock wait the kernel shows when it is not the requested one.
    substituted: Option<String>,
}

/// The name of a lock wait seen in /proc/PID/syscall, if it is one.
fn lock_wait_name(nr: i64, args: [u64; 6]) -> Option<String> {
    let arg1 = low32(args[1]);
    if nr == libc::SYS_flock
        && arg1 & libc::LOCK_NB == 0
        && arg1 & (libc::LOCK_EX | libc::LOCK_SH) != 0
    {
        Some(format!("flock op {arg1}"))
    } else if nr == libc::SYS_fcntl && (arg1 == libc::F_SETLKW || arg1 == libc::F_OFD_SETLKW) {
        Some(format!(
            "fcntl {}",
            crate::actor::signature::fcntl_cmd_name(arg1)
        ))
    } else {
        None
    }
}

/// Consecutive matching reads needed together with /proc/locks evidence.
const CONFIRMED_READS: u32 = 2;
/// Without /proc/locks evidence: consecutive matching reads and a minimum window.
const UNCONFIRMED_READS: u32 = 20;
/// The window when the target is expected to list waiters but did not.
const WINDOW_WITH_LISTS: Duration = Duration::from_millis(250);
/// The window on filesystems that keep their own waiters (NFS, FUSE).
const WINDOW_WITHOUT_LISTS: Duration = Duration::from_millis(50);

fn low32(v: u64) -> i32 {
    v as u32 as i32
}

impl BlockDetector {
    pub(crate) fn new(
        tid: i32,
        pid: i32,
        sig: WaitSignature,
        ino: Option<u64>,
        dev: Option<String>,
        lock_lists: bool,
    ) -> Self {
        BlockDetector {
            tid,
            pid,
            sig,
            ino,
            dev,
            lock_lists,
            stable: 0,
            stable_since: None,
            syscall_unreadable: false,
            substituted: None,
        }
    }

    /// The /proc/locks line that shows this wait, if there is one. Any kind
    /// of lock request counts: the call the kernel sees may not be the one
    /// asked for (a library or filesystem emulating one lock with another).
    fn evidence_line(&self, view: &mut dyn ProcView) -> Option<LockLine> {
        let lines = view.locks();
        lines.into_iter().find(|l| match self.sig.confirm {
            Confirm::Waiter(_) => {
                l.blocked
                    // ACCESS: a filesystem lock client (NFS) first waits for
                    // a conflicting lock of this host with FL_ACCESS.
                    && matches!(l.kind.as_str(), "FLOCK" | "POSIX" | "OFDLCK" | "ACCESS")
                    && (l.pid == i64::from(self.pid)
                        || (matches!(l.kind.as_str(), "OFDLCK" | "ACCESS") && l.pid == -1))
                    && self.ino.is_none_or(|ino| ino == l.ino)
                    && self.dev.as_ref().is_none_or(|d| *d == l.dev)
            }
            Confirm::LeaseBreaking => {
                l.kind == "LEASE"
                    && l.class == "BREAKING"
                    && self.ino.is_some_and(|ino| ino == l.ino)
                    && self.dev.as_ref().is_none_or(|d| *d == l.dev)
            }
        })
    }

    /// One observation. `Some` once the call is known to be waiting.
    pub(crate) fn probe(&mut self, view: &mut dyn ProcView) -> Option<Evidence> {
        let state = view.state(self.tid)?;
        if !matches!(state, 'S' | 'D') {
            self.reset();
            return None;
        }
        // A local lock (or lease-break) wait sleeps interruptibly: S. A task
        // in D inside fcntl or flock waits for something else -- typically
        // the locks code's rwsem while /proc/locks is being read (by us) --
        // on its way to a lock it may already have been granted; with OFD
        // locks (pid -1 in /proc/locks) another waiter's line would then be
        // taken for its own. Network filesystems wait for the server in D.
        if state == 'D' && self.lock_lists {
            self.reset();
            return None;
        }
        let in_call = if self.syscall_unreadable {
            None
        } else {
            match view.syscall(self.tid) {
                Ok(SyscallState::InSyscall { nr, args }) => {
                    let exact = same_call(self.sig.nr, nr)
                        && self.sig.args[0].is_none_or(|a| a == low32(args[0]))
                        && self.sig.args[1].is_none_or(|a| a == low32(args[1]));
                    // A different lock wait on the same descriptor is still a
                    // lock wait; the evidence names both calls.
                    let other = match (exact, self.sig.confirm, lock_wait_name(nr, args)) {
                        (false, Confirm::Waiter(_), Some(name))
                            if self.sig.args[0].is_none_or(|a| a == low32(args[0])) =>
                        {
                            Some(name)
                        }
                        _ => None,
                    };
                    self.substituted = other.clone();
                    Some(exact || other.is_some())
                }
                Ok(_) => Some(false),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::ENOENT)
                    ) =>
                {
                    // No ptrace access (for example Yama scope 2), or a
                    // kernel without the file (User-Mode Linux): rely on the
                    // stack, the sleeping state and /proc/locks.
                    self.syscall_unreadable = true;
                    None
                }
                Err(_) => Some(false),
            }
        };
        if in_call == Some(false) {
            self.reset();
            return None;
        }
        // Without the syscall, the kernel stack (when readable) decides
        // whether the task is in the call and waiting for a lock.
        let mut site = None;
        let in_call = match in_call {
            Some(c) => Some(c),
            None => match view.stack(self.tid) {
                Some(st) => {
                    site = stack_lock_wait(&st, self.sig.nr);
                    if site.is_none() {
                        self.reset();
                        return None;
                    }
                    Some(true)
                }
                None => match view
                    .wchan(self.tid)
                    .filter(|_| state == 'S')
                    .and_then(|w| wchan_lock_wait(&w, self.sig.nr))
                {
                    Some(w) => {
                        site = Some(w);
                        Some(true)
                    }
                    None => None,
                },
            },
        };
        self.stable += 1;
        let since = *self.stable_since.get_or_insert_with(Instant::now);
        if self.stable >= CONFIRMED_READS {
            // A `->` line is a local wait, which sleeps in S (see above).
            // OFD lines name no pid: the task must still be asleep after the
            // line was read, or it may have been granted meanwhile and the
            // line be another waiter's.
            if let Some(line) = (state == 'S')
                .then(|| self.evidence_line(view))
                .flatten()
                .filter(|_| view.state(self.tid) == Some('S'))
            {
                let call = self.call_text(view, state);
                return Some(Evidence {
                    text: format!("task {call}; /proc/locks: `{}`", line.raw),
                });
            }
            if site.is_none() && in_call.is_some() {
                site = view
                    .stack(self.tid)
                    .and_then(|st| stack_lock_wait(&st, self.sig.nr));
            }
            if let Some(site) = &site {
                let call = self.call_text(view, state);
                return Some(Evidence {
                    text: format!("task {call}; {site}"),
                });
            }
        }
        // Without the syscall or the stack, only a /proc/locks line is proof enough.
        in_call?;
        if !self.sig.fallback {
            return None;
        }
        let window = if self.lock_lists {
            WINDOW_WITH_LISTS
        } else {
            WINDOW_WITHOUT_LISTS
        };
        if self.stable >= UNCONFIRMED_READS && since.elapsed() >= window {
            let call = self.call_text(view, state);
            return Some(Evidence {
                text: format!(
                    "task {call}, unchanged over {} reads in {} ms; no line in /proc/locks shows the wait (the filesystem queues waiters itself)",
                    self.stable,
                    since.elapsed().as_millis()
                ),
            });
        }
        None
    }

    fn reset(&mut self) {
        self.stable = 0;
        self.stable_since = None;
    }

    /// The task and its call, for the evidence.
    fn call_text(&self, view: &mut dyn ProcView, state: char) -> String {
        let what = match &self.substituted {
            Some(actual) => format!("{actual} (asked for {})", self.sig.describe()),
            None => self.sig.describe(),
        };
        format!(
            "{} in {what} (state {state}{})",
            self.tid,
            view.wchan(self.tid)
                .map(|w| format!(", wchan {w}"))
                .unwrap_or_default()
        )
    }
}

/// Complete readings of /proc/locks before a line is taken to be absent. The
/// kernel prints the file a page per read() and finds its place again by
/// position, so a line can be skipped when locks listed before it go away
/// between two pages; several readings all missing it do not happen by chance.
/// (Five readings were seen all missing a line once in 1,200 runs while
/// 64-process races churned the file; a line that is there is usually found
/// by the first reading, so only a missing one costs all of them.)
pub(crate) const LISTING_READS: usize = 40;

/// The lines of /proc/locks for a lock held (not waited for) on inode `ino`
/// (of device `dev` when known) of this kind by process `pid` (-1 for OFD locks).
pub(crate) fn held_lines(ino: u64, dev: Option<&str>, kind: &str, pid: i64) -> Vec<LockLine> {
    let mut lines = Vec::new();
    for _ in 0..LISTING_READS {
        lines = read_proc_locks()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| {
                !l.blocked
                    && l.ino == ino
                    && dev.is_none_or(|d| d == l.dev)
                    && l.kind == kind
                    && l.pid == pid
            })
            .collect();
        if !lines.is_empty() {
            break;
        }
        std::thread::yield_now();
    }
    lines
}

/// How /proc/locks names the device of the filesystem holding `file`: take a
/// flock on it and find the line. `None` if the filesystem does not list
/// locks there (or refuses flock).
pub(crate) fn locks_device(file: &std::fs::File, ino: u64) -> Option<String> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    let me = i64::from(std::process::id() as i32);
    let dev = held_lines(ino, None, "FLOCK", me)
        .into_iter()
        .next()
        .map(|l| l.dev);
    // SAFETY: as above.
    unsafe { libc::flock(fd, libc::LOCK_UN) };
    dev
}

/// A one-line description of what a process is doing, for "no reply" failures.
pub(crate) fn describe_process(pid: i32) -> String {
    let state = read_state(pid)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| "gone".into());
    let call = match read_syscall(pid) {
        Ok(SyscallState::InSyscall { nr, args }) => {
            format!("in syscall {nr}({}, {:#x})", args[0], args[1])
        }
        Ok(SyscallState::Running) => "running".into(),
        Ok(SyscallState::NotInSyscall) => "not in a syscall".into(),
        Err(_) => "syscall unknown".into(),
    };
    let wchan = read_wchan(pid)
        .map(|w| format!(", wchan {w}"))
        .unwrap_or_default();
    let stack = read_stack(pid)
        .map(|st| {
            let frames: Vec<&str> = stack_frames(&st)
                .filter(|f| !SLEEP_FRAMES.contains(f))
                .take(5)
                .collect();
            format!(", stack {}", frames.join(" < "))
        })
        .unwrap_or_default();
    format!("pid {pid} state {state}, {call}{wchan}{stack}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wchan_is_a_lock_wait_only_where_a_refused_lock_sleeps() {
        assert!(wchan_lock_wait("nfs4_proc_setlk", libc::SYS_fcntl).is_some());
        assert!(wchan_lock_wait("nfs4_proc_setlk", libc::SYS_flock).is_some());
        assert!(wchan_lock_wait("rpc_wait_bit_killable", libc::SYS_fcntl).is_none());
        assert!(wchan_lock_wait("do_epoll_wait", libc::SYS_fcntl).is_none());
        assert!(wchan_lock_wait("nfs4_proc_setlk", libc::SYS_openat2).is_none());
        assert!(wchan_lock_wait("__break_lease", libc::SYS_openat2).is_some());
    }

    #[test]
    fn an_open_is_openat2_or_the_fallback_openat() {
        assert!(same_call(libc::SYS_openat2, libc::SYS_openat2));
        assert!(same_call(libc::SYS_openat2, libc::SYS_openat));
        assert!(!same_call(libc::SYS_flock, libc::SYS_fcntl));
        assert!(!same_call(libc::SYS_openat, libc::SYS_openat2));
    }

    #[test]
    fn reads_lock_waits_off_kernel_stacks() {
        // User-Mode Linux 6.1 guest, NFSv4.2 client waiting for a lock
        // another client holds (polling), then the same on NFSv3 (NLM).
        let v4 = "[<0>] __switch_to+0x50/0x7f\n[<0>] __schedule+0x51b/0x568\n[<0>] schedule+0xc8/0x115\n[<0>] schedule_timeout+0xcc/0xf5\n[<0>] wait_woken+0x47/0x82\n[<0>] nfs4_retry_setlk+0x177/0x1c7 [nfsv4]\n[<0>] nfs4_proc_lock+0x255/0x26a [nfsv4]\n[<0>] do_setlk+0x69/0xf7 [nfs]\n[<0>] nfs_lock+0x13b/0x147 [nfs]\n[<0>] vfs_lock_file+0x23/0x33\n[<0>] fcntl_setlk+0x127/0x24a\n[<0>] sys_fcntl+0x326/0x5f9\n[<0>] handle_syscall+0x79/0xa7\n";
        assert_eq!(
            stack_lock_wait(v4, libc::SYS_fcntl).as_deref(),
            Some("kernel stack waits in nfs4_retry_setlk under sys_fcntl")
        );
        assert_eq!(stack_lock_wait(v4, libc::SYS_flock), None);
        let v3 = "[<0>] __switch_to+0x50/0x7f\n[<0>] __schedule+0x51b/0x568\n[<0>] schedule+0xc8/0x115\n[<0>] schedule_timeout+0xcc/0xf5\n[<0>] nlmclnt_block+0xca/0x116 [lockd]\n[<0>] nlmclnt_proc+0x30d/0x710 [lockd]\n[<0>] nfs3_proc_lock+0x6f/0x94 [nfsv3]\n[<0>] do_setlk+0x69/0xf7 [nfs]\n[<0>] nfs_flock+0x49/0x4c [nfs]\n[<0>] __do_sys_flock+0x18e/0x1e7\n[<0>] sys_flock+0x10/0x12\n";
        assert!(stack_lock_wait(v3, libc::SYS_flock).is_some());
        // x86-64 local flock wait.
        let local = "[<0>] locks_lock_inode_wait+0x8b/0x180\n[<0>] __do_sys_flock+0x142/0x1c0\n[<0>] __x64_sys_flock+0x10/0x20\n[<0>] do_syscall_64+0x5b/0x110\n";
        assert!(stack_lock_wait(local, libc::SYS_flock).is_some());
        // SMB 3.1.1 client (User-Mode Linux 6.1): behind a lock of another
        // process of the same client, and for the server's answer to a
        // blocking LOCK that another client's lock holds pending.
        let smb_local = "[<0>] __switch_to+0x1/0x2\n[<0>] __schedule+0x1/0x2\n[<0>] schedule+0x1/0x2\n[<0>] cifs_setlk+0x1/0x2 [cifs]\n[<0>] cifs_lock+0x1/0x2 [cifs]\n[<0>] vfs_lock_file+0x1/0x2\n[<0>] fcntl_setlk+0x1/0x2\n[<0>] sys_fcntl+0x1/0x2\n";
        assert_eq!(
            stack_lock_wait(smb_local, libc::SYS_fcntl).as_deref(),
            Some("kernel stack waits in cifs_setlk under sys_fcntl")
        );
        let smb_server = "[<0>] __schedule+0x1/0x2\n[<0>] schedule+0x1/0x2\n[<0>] wait_for_response+0x1/0x2 [cifs]\n[<0>] compound_send_recv+0x1/0x2 [cifs]\n[<0>] cifs_send_recv+0x1/0x2 [cifs]\n[<0>] smb2_lockv+0x1/0x2 [cifs]\n[<0>] SMB2_lock+0x1/0x2 [cifs]\n[<0>] smb2_mand_lock+0x1/0x2 [cifs]\n[<0>] cifs_setlk+0x1/0x2 [cifs]\n[<0>] cifs_flock+0x1/0x2 [cifs]\n[<0>] __do_sys_flock+0x1/0x2\n[<0>] sys_flock+0x1/0x2\n";
        assert_eq!(
            stack_lock_wait(smb_server, libc::SYS_flock).as_deref(),
            Some("kernel stack waits in SMB2_lock under sys_flock")
        );
        // Any other request to the SMB server is not a lock wait.
        let smb_read = "[<0>] schedule+0x1/0x2\n[<0>] wait_for_response+0x1/0x2 [cifs]\n[<0>] compound_send_recv+0x1/0x2 [cifs]\n[<0>] smb2_sync_read+0x1/0x2 [cifs]\n[<0>] sys_fcntl+0x1/0x2\n";
        assert_eq!(stack_lock_wait(smb_read, libc::SYS_fcntl), None);
        // Waiting for the server's answer is not yet a lock wait.
        let rpc = "[<0>] __schedule+0x1/0x2\n[<0>] schedule+0x1/0x2\n[<0>] rpc_wait_bit_killable+0x1/0x2 [sunrpc]\n[<0>] __rpc_execute+0x1/0x2 [sunrpc]\n[<0>] nfs4_retry_setlk+0x1/0x2 [nfsv4]\n[<0>] fcntl_setlk+0x1/0x2\n[<0>] sys_fcntl+0x1/0x2\n";
        assert_eq!(stack_lock_wait(rpc, libc::SYS_fcntl), None);
    }

    #[test]
    fn a_task_in_uninterruptible_sleep_is_not_waiting_for_a_local_lock() {
        // Two OFD waiters on one file: w2's `->` line names no pid, and w1,
        // just granted, is held in D on the locks rwsem inside its fcntl.
        let sig = WaitSignature {
            nr: libc::SYS_fcntl,
            args: [Some(3), Some(libc::F_OFD_SETLKW)],
            confirm: crate::actor::signature::Confirm::Waiter("OFDLCK"),
            fallback: true,
        };
        let snap = |state| {
            crate::actor::protocol::ProcSnapshot {
            state: Some(state),
            syscall: Some(format!("72 0x3 0x{:x} 0x7ffd0 0x0 0x0 0x0 0x7ffc 0x7f00", libc::F_OFD_SETLKW)),
            wchan: None,
            locks: "1: OFDLCK ADVISORY  WRITE -1 fe:00:77 0 EOF\n1: -> OFDLCK ADVISORY  WRITE -1 fe:00:77 0 EOF\n".into(),
            stack: None,
        }
        };
        let mut d = BlockDetector::new(10, 10, sig, Some(77), Some("fe:00".into()), true);
        for _ in 0..5 {
            assert!(d.probe(&mut snap('D')).is_none());
        }
        let mut d = BlockDetector::new(10, 10, sig, Some(77), Some("fe:00".into()), true);
        assert!(d.probe(&mut snap('S')).is_none());
        assert!(
            d.probe(&mut snap('S')).is_some(),
            "two matching reads with a line"
        );
        // On a filesystem that keeps its own waiters, D can be a wait for
        // the server: the kernel stack decides, not a `->` line.
        let mut d = BlockDetector::new(10, 10, sig, Some(77), None, false);
        let nfs = "[<0>] schedule+0x1/0x2\n[<0>] nlmclnt_block+0x1/0x2 [lockd]\n[<0>] fcntl_setlk+0x1/0x2\n[<0>] sys_fcntl+0x1/0x2\n";
        let mut waiting = snap('D');
        waiting.stack = Some(nfs.into());
        assert!(d.probe(&mut snap('D')).is_none());
        assert!(
            d.probe(&mut snap('D')).is_none(),
            "no stack: not from a line alone"
        );
        assert!(d.probe(&mut waiting.clone()).is_some());
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_syscall("72 0x3 0x7 0x7ffd0 0x0 0x0 0x0 0x7ffc 0x7f00\n"),
            Some(SyscallState::InSyscall {
                nr: 72,
                args: [3, 7, 0x7ffd0, 0, 0, 0]
            })
        );
        assert_eq!(parse_syscall("running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffc 0x7f00\n"),
            Some(SyscallState::NotInSyscall)
        );
        assert_eq!(parse_stat_state("123 (a b) c) S 1 2 3"), Some('S'));
        let l =
            parse_lock_line("2: -> POSIX  ADVISORY  WRITE 1234 00:2a:5678 0 EOF").expect("line");
        assert!(l.blocked);
        assert_eq!((l.kind.as_str(), l.pid, l.ino), ("POSIX", 1234, 5678));
        let l =
            parse_lock_line("1: LEASE  BREAKING  READ 25178 fe:00:10067976 0 EOF").expect("lease");
        assert_eq!((l.kind.as_str(), l.class.as_str()), ("LEASE", "BREAKING"));
        let l = parse_lock_line("3: OFDLCK ADVISORY  READ  -1 08:01:99 10 19").expect("line");
        assert!(!l.blocked);
        assert_eq!((l.pid, l.dev.as_str(), l.end.as_str()), (-1, "08:01", "19"));
        assert!(parse_lock_line("garbage").is_none());
    }
}
