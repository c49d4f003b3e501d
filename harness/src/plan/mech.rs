//! How each mechanism's "lock exclusive / shared / unlock / try / wait /
//! test" becomes a system call, and what that call looks like from
//! `/proc/PID/syscall` while it waits.

use crate::actor::protocol::{Beneath, LockDesc, Request};
use crate::actor::signature::{fcntl_cmd_name, Confirm, WaitSignature};
use crate::plan::resolve::LockKind;
use crate::spec::scenario::{LockMode, Mechanism, Whence};

/// The pid file a pidfile lock on `path` creates.
pub(crate) fn pidfile_path(path: &Beneath) -> Beneath {
    path.with_rel(format!("{}.lock", path.rel))
}

/// A record lock's byte range: `start` counted from `whence`, `len` bytes
/// (0: to the end of the file and beyond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: i64,
    pub(crate) len: i64,
    pub(crate) whence: Whence,
}

impl Span {
    /// The whole file: from byte 0 to the end and beyond.
    pub(crate) const WHOLE: Span = Span {
        start: 0,
        len: 0,
        whence: Whence::Set,
    };

    pub(crate) fn new(start: i64, len: i64, whence: Whence) -> Span {
        Span { start, len, whence }
    }
}

/// The request for a lock/unlock step on descriptor `fd` (opened from `path`),
/// and its wait signature if it can wait.
pub(crate) fn lock_request(
    mech: Mechanism,
    fd: i32,
    path: &Beneath,
    kind: LockKind,
    wait: bool,
    span: Span,
) -> (Request, Option<WaitSignature>) {
    let Span { start, len, whence } = span;
    match mech {
        Mechanism::Flock => {
            let mut op = match kind {
                LockKind::Exclusive => libc::LOCK_EX,
                LockKind::Shared => libc::LOCK_SH,
                LockKind::Unlock => libc::LOCK_UN,
            };
            if !wait && kind != LockKind::Unlock {
                op |= libc::LOCK_NB;
            }
            let sig = wait.then_some(WaitSignature {
                nr: libc::SYS_flock,
                args: [Some(fd), Some(op)],
                confirm: Confirm::Waiter("FLOCK"),
                fallback: true,
            });
            (Request::Flock { fd, operation: op }, sig)
        }
        Mechanism::Posix | Mechanism::Ofd => {
            let cmd = match (mech, wait) {
                (Mechanism::Ofd, true) => libc::F_OFD_SETLKW,
                (Mechanism::Ofd, false) => libc::F_OFD_SETLK,
                (_, true) => libc::F_SETLKW,
                (_, false) => libc::F_SETLK,
            };
            let l_type = match kind {
                LockKind::Exclusive => libc::F_WRLCK,
                LockKind::Shared => libc::F_RDLCK,
                LockKind::Unlock => libc::F_UNLCK,
            } as i16;
            let sig = wait.then_some(WaitSignature {
                nr: libc::SYS_fcntl,
                args: [Some(fd), Some(cmd)],
                confirm: Confirm::Waiter(if mech == Mechanism::Ofd {
                    "OFDLCK"
                } else {
                    "POSIX"
                }),
                fallback: true,
            });
            (
                Request::Fcntl {
                    fd,
                    cmd,
                    l_type,
                    start,
                    len,
                    whence: whence.l_whence(),
                },
                sig,
            )
        }
        Mechanism::Lease => {
            let arg = match kind {
                LockKind::Exclusive => libc::F_WRLCK,
                LockKind::Shared => libc::F_RDLCK,
                LockKind::Unlock => libc::F_UNLCK,
            };
            (
                Request::FcntlInt {
                    fd,
                    cmd: libc::F_SETLEASE,
                    arg: i64::from(arg),
                },
                None,
            )
        }
        Mechanism::Pidfile | Mechanism::Lockfile => {
            let path = pidfile_path(path);
            let req = match kind {
                LockKind::Unlock => Request::LockFileRemove { path },
                _ => Request::LockFileCreate {
                    path,
                    pid: mech == Mechanism::Pidfile,
                },
            };
            (req, None)
        }
    }
}

/// The request for a test step (F_GETLK / F_OFD_GETLK / F_GETLEASE).
pub(crate) fn test_request(
    mech: Mechanism,
    fd: i32,
    mode: LockMode,
    start: i64,
    len: i64,
    whence: Whence,
) -> Request {
    if mech == Mechanism::Lease {
        return Request::FcntlInt {
            fd,
            cmd: libc::F_GETLEASE,
            arg: 0,
        };
    }
    let cmd = if mech == Mechanism::Ofd {
        libc::F_OFD_GETLK
    } else {
        libc::F_GETLK
    };
    let l_type = match mode {
        LockMode::Exclusive => libc::F_WRLCK,
        LockMode::Shared => libc::F_RDLCK,
    } as i16;
    Request::Fcntl {
        fd,
        cmd,
        l_type,
        start,
        len,
        whence: whence.l_whence(),
    }
}

pub(crate) fn l_type_name(t: i16) -> &'static str {
    match i32::from(t) {
        libc::F_WRLCK => "F_WRLCK",
        libc::F_RDLCK => "F_RDLCK",
        libc::F_UNLCK => "F_UNLCK",
        _ => "?",
    }
}

fn flock_op_name(op: i32) -> String {
    let base = match op & !libc::LOCK_NB {
        libc::LOCK_EX => "LOCK_EX",
        libc::LOCK_SH => "LOCK_SH",
        libc::LOCK_UN => "LOCK_UN",
        _ => "?",
    };
    if op & libc::LOCK_NB != 0 {
        format!("{base}|LOCK_NB")
    } else {
        base.to_string()
    }
}

/// The last component of a path: scratch directories are long and say nothing.
fn base(path: &Beneath) -> String {
    std::path::Path::new(&path.rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn range_text(start: i64, len: i64, whence: i16) -> String {
    let origin = match i32::from(whence) {
        libc::SEEK_SET => "",
        libc::SEEK_CUR => "SEEK_CUR ",
        libc::SEEK_END => "SEEK_END ",
        _ => "l_whence ? ",
    };
    if len == 0 {
        format!("{origin}{start}..EOF")
    } else {
        format!("{origin}{start}+{len}")
    }
}

/// The call as C would write it, for evidence in reports.
pub(crate) fn describe_request(req: &Request) -> String {
    match req {
        Request::Open { path, flags } => {
            let acc = match flags & libc::O_ACCMODE {
                libc::O_RDONLY => "O_RDONLY",
                libc::O_WRONLY => "O_WRONLY",
                _ => "O_RDWR",
            };
            let mut f = vec![acc];
            if flags & libc::O_CREAT != 0 {
                f.push("O_CREAT");
            }
            if flags & libc::O_EXCL != 0 {
                f.push("O_EXCL");
            }
            if flags & libc::O_TRUNC != 0 {
                f.push("O_TRUNC");
            }
            if flags & libc::O_DIRECTORY != 0 {
                f.push("O_DIRECTORY");
            }
            if flags & libc::O_CLOEXEC != 0 {
                f.push("O_CLOEXEC");
            }
            format!("open(\"{}\", {})", base(path), f.join("|"))
        }
        Request::Close { fd } => format!("close({fd})"),
        Request::Dup { fd } => format!("dup({fd})"),
        Request::Flock { fd, operation } => format!("flock({fd}, {})", flock_op_name(*operation)),
        Request::Fcntl {
            fd,
            cmd,
            l_type,
            start,
            len,
            whence,
        } => format!(
            "fcntl({fd}, {}, {{{} {}}})",
            fcntl_cmd_name(*cmd),
            l_type_name(*l_type),
            range_text(*start, *len, *whence)
        ),
        Request::Write {
            fd,
            data,
            offset,
            sync,
        } => {
            let w = match offset {
                Some(o) => format!("pwrite({fd}, {} bytes, {o})", data.len()),
                None => format!("write({fd}, {} bytes)", data.len()),
            };
            if *sync {
                format!("{w}; fsync({fd})")
            } else {
                w
            }
        }
        Request::Read { fd, len, offset } => match offset {
            Some(o) => format!("pread({fd}, {len}, {o})"),
            None => format!("read({fd}, {len})"),
        },
        Request::FcntlInt { fd, cmd, arg } => {
            let arg = match *cmd {
                libc::F_SETLEASE => l_type_name(*arg as i16).to_string(),
                _ => arg.to_string(),
            };
            format!("fcntl({fd}, {}, {arg})", fcntl_cmd_name(*cmd))
        }
        Request::Fork { .. } => "fork()".into(),
        Request::Thread { .. } => "pthread_create()".into(),
        Request::Exit { code } => format!("_exit({code})"),
        Request::Exec => "execve(lockcheck actor)".into(),
        Request::Handle { signal, restart } => format!(
            "sigaction({}, {{handler{}}})",
            nix::sys::signal::Signal::try_from(*signal)
                .map(|s| s.as_str())
                .unwrap_or("?"),
            if *restart { ", SA_RESTART" } else { "" }
        ),
        Request::Unlink { path } => format!("unlink(\"{}\")", base(path)),
        Request::Rename { from, to } => format!("rename(\"{}\", \"{}\")", base(from), base(to)),
        Request::Mkdir { path } => format!("mkdir(\"{}\")", base(path)),
        Request::MappedWrite {
            fd,
            data,
            offset,
            sync,
        } => format!(
            "mmap({fd}, MAP_SHARED); write {} bytes at {offset}{}; munmap",
            data.len(),
            if *sync { "; msync(MS_SYNC)" } else { "" }
        ),
        Request::MappedRead { fd, len, offset } => {
            format!("mmap({fd}, MAP_SHARED); read {len} bytes at {offset}; munmap")
        }
        Request::Mkfifo { path } => format!("mknod(\"{}\", S_IFIFO|0644)", base(path)),
        Request::Truncate { path, len } => format!("truncate(\"{}\", {len})", base(path)),
        Request::Symlink { target, path } => {
            format!("symlink(\"{target}\", \"{}\")", base(path))
        }
        Request::Counter {
            fd,
            lock,
            times,
            offset,
            ..
        } => format!(
            "{times} × [{}; pread({fd}, {offset}); pwrite({fd}, {offset}); unlock]",
            describe_request(lock)
        ),
        Request::Caught { signal, timeout_ms } => {
            format!("wait up to {timeout_ms} ms for signal {signal}")
        }
        Request::FcntlNull { fd, cmd } => {
            format!("fcntl({fd}, {}, NULL)", fcntl_cmd_name(*cmd))
        }
        Request::InPidNamespace { request } => {
            format!("in a new PID namespace: {}", describe_request(request))
        }
        Request::ByteLocks { lock, count } => {
            format!("{count} × [{} at byte 0, 2, 4, ...]", describe_request(lock))
        }
        Request::Hold {
            lock,
            unlock,
            hold_ms,
        } => format!(
            "{}; hold {hold_ms} ms; {}",
            describe_request(lock),
            describe_request(unlock)
        ),
        Request::Records {
            fd,
            lock,
            count,
            size,
            writer,
            writers,
            ..
        } => format!(
            "records {writer}, {writer}+{writers}, ... below {count}, each: [{} at record × {size}; pwrite({fd}, {size} bytes); unlock]",
            describe_request(lock)
        ),
        Request::IoLoop {
            fd,
            chunk,
            lock,
            ..
        } => format!(
            "{}pwrite({fd}, {chunk} bytes) × N; fsync({fd}); pread × N",
            lock.as_ref()
                .map(|l| format!("{}; ", describe_request(l)))
                .unwrap_or_default()
        ),
        Request::LockLoop {
            lock,
            unlock,
            times,
        } => format!(
            "{times} × [{}; {}]",
            describe_request(lock),
            describe_request(unlock)
        ),
        Request::LockFileCreate { path, pid: true } => format!(
            "open(\"{}\", O_CREAT|O_EXCL|O_WRONLY) + write(pid) (stale if kill(pid, 0) fails)",
            base(path)
        ),
        Request::LockFileCreate { path, pid: false } => {
            format!("open(\"{}\", O_CREAT|O_EXCL|O_WRONLY)", base(path))
        }
        Request::LockFileRemove { path } => format!("unlink(\"{}\")", base(path)),
        Request::PidAlive { path } => format!("kill(pid in \"{}\", 0)", base(path)),
        Request::Spawn {
            set_tid: Some(t), ..
        } => format!("clone3(set_tid=[{t}]) + execve(lockcheck actor)"),
        Request::Spawn { set_tid: None, .. } => "clone3() + execve(lockcheck actor)".into(),
        Request::ReadProc { tid } => format!("read /proc/{tid}"),
        Request::SignalPid { pid, tid, signal } => match tid {
            Some(t) => format!("tgkill({pid}, {t}, {signal})"),
            None => format!("kill({pid}, {signal})"),
        },
        Request::WaitGone { pid, .. } => format!("wait for {pid} to end"),
    }
}

/// An F_GETLK answer, readably.
pub(crate) fn describe_lock(l: &LockDesc) -> String {
    if i32::from(l.l_type) == libc::F_UNLCK {
        return "F_UNLCK (no conflicting lock)".into();
    }
    format!(
        "{} {} pid {}",
        l_type_name(l.l_type),
        range_text(l.start, l.len, l.l_whence),
        l.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x_lock() -> Beneath {
        Beneath::new(std::path::Path::new("/x"), "lock")
    }

    #[test]
    fn maps_steps_to_calls() {
        let (r, s) = lock_request(
            Mechanism::Flock,
            3,
            &x_lock(),
            LockKind::Exclusive,
            false,
            Span::WHOLE,
        );
        assert_eq!(
            r,
            Request::Flock {
                fd: 3,
                operation: libc::LOCK_EX | libc::LOCK_NB
            }
        );
        assert!(s.is_none());
        let (r, s) = lock_request(
            Mechanism::Ofd,
            4,
            &x_lock(),
            LockKind::Shared,
            true,
            Span::new(10, 5, Whence::Set),
        );
        assert_eq!(
            r,
            Request::Fcntl {
                fd: 4,
                cmd: libc::F_OFD_SETLKW,
                l_type: libc::F_RDLCK as i16,
                start: 10,
                len: 5,
                whence: 0
            }
        );
        assert_eq!(
            s,
            Some(WaitSignature {
                nr: libc::SYS_fcntl,
                args: [Some(4), Some(libc::F_OFD_SETLKW)],
                confirm: Confirm::Waiter("OFDLCK"),
                fallback: true,
            })
        );
        assert_eq!(
            describe_request(&r),
            "fcntl(4, F_OFD_SETLKW, {F_RDLCK 10+5})"
        );
        let (r, _) = lock_request(
            Mechanism::Flock,
            3,
            &x_lock(),
            LockKind::Unlock,
            false,
            Span::WHOLE,
        );
        assert_eq!(describe_request(&r), "flock(3, LOCK_UN)");
        let (r, s) = lock_request(
            Mechanism::Pidfile,
            3,
            &x_lock(),
            LockKind::Exclusive,
            false,
            Span::WHOLE,
        );
        assert_eq!(
            r,
            Request::LockFileCreate {
                path: Beneath::new(std::path::Path::new("/x"), "lock.lock"),
                pid: true
            }
        );
        assert!(s.is_none());
        let (r, _) = lock_request(
            Mechanism::Lease,
            3,
            &x_lock(),
            LockKind::Shared,
            false,
            Span::WHOLE,
        );
        assert_eq!(describe_request(&r), "fcntl(3, F_SETLEASE, F_RDLCK)");
    }
}
