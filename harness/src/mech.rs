//! How each mechanism's "lock exclusive / shared / unlock / try / wait /
//! test" becomes a system call, and what that call looks like from
//! `/proc/PID/syscall` while it waits.

use crate::plan::LockKind;
use crate::protocol::{LockDesc, Request};
use crate::scenario::{LockMode, Mechanism};

/// A call the kernel may make wait, as `/proc/PID/syscall` shows it:
/// syscall number and its first two arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitSignature {
    pub nr: i64,
    pub fd: i32,
    pub arg1: u64,
}

/// The request for a lock/unlock step, and its wait signature if it can wait.
pub fn lock_request(
    mech: Mechanism,
    fd: i32,
    kind: LockKind,
    wait: bool,
    start: i64,
    len: i64,
) -> (Request, Option<WaitSignature>) {
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
                fd,
                arg1: op as u64,
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
                fd,
                arg1: cmd as u64,
            });
            (
                Request::Fcntl {
                    fd,
                    cmd,
                    l_type,
                    start,
                    len,
                },
                sig,
            )
        }
    }
}

/// The request for a test step (F_GETLK / F_OFD_GETLK).
pub fn test_request(mech: Mechanism, fd: i32, mode: LockMode, start: i64, len: i64) -> Request {
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
    }
}

pub fn fcntl_cmd_name(cmd: i32) -> String {
    match cmd {
        libc::F_SETLK => "F_SETLK".into(),
        libc::F_SETLKW => "F_SETLKW".into(),
        libc::F_GETLK => "F_GETLK".into(),
        libc::F_OFD_SETLK => "F_OFD_SETLK".into(),
        libc::F_OFD_SETLKW => "F_OFD_SETLKW".into(),
        libc::F_OFD_GETLK => "F_OFD_GETLK".into(),
        other => format!("cmd {other}"),
    }
}

pub fn l_type_name(t: i16) -> &'static str {
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

fn range_text(start: i64, len: i64) -> String {
    if len == 0 {
        format!("{start}..EOF")
    } else {
        format!("{start}+{len}")
    }
}

/// The call as C would write it, for evidence in reports.
pub fn describe_request(req: &Request) -> String {
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
            let name = std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("open(\"{name}\", {})", f.join("|"))
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
        } => format!(
            "fcntl({fd}, {}, {{{} {}}})",
            fcntl_cmd_name(*cmd),
            l_type_name(*l_type),
            range_text(*start, *len)
        ),
        Request::Write { fd, data, offset } => match offset {
            Some(o) => format!("pwrite({fd}, {} bytes, {o})", data.len()),
            None => format!("write({fd}, {} bytes)", data.len()),
        },
        Request::Read { fd, len, offset } => match offset {
            Some(o) => format!("pread({fd}, {len}, {o})"),
            None => format!("read({fd}, {len})"),
        },
        Request::Fork { .. } => "fork()".into(),
        Request::Exit { code } => format!("_exit({code})"),
    }
}

/// An F_GETLK answer, readably.
pub fn describe_lock(l: &LockDesc) -> String {
    if i32::from(l.l_type) == libc::F_UNLCK {
        return "F_UNLCK (no conflicting lock)".into();
    }
    format!(
        "{} {} pid {}",
        l_type_name(l.l_type),
        range_text(l.start, l.len),
        l.pid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_steps_to_calls() {
        let (r, s) = lock_request(Mechanism::Flock, 3, LockKind::Exclusive, false, 0, 0);
        assert_eq!(
            r,
            Request::Flock {
                fd: 3,
                operation: libc::LOCK_EX | libc::LOCK_NB
            }
        );
        assert!(s.is_none());
        let (r, s) = lock_request(Mechanism::Ofd, 4, LockKind::Shared, true, 10, 5);
        assert_eq!(
            r,
            Request::Fcntl {
                fd: 4,
                cmd: libc::F_OFD_SETLKW,
                l_type: libc::F_RDLCK as i16,
                start: 10,
                len: 5
            }
        );
        assert_eq!(
            s,
            Some(WaitSignature {
                nr: libc::SYS_fcntl,
                fd: 4,
                arg1: libc::F_OFD_SETLKW as u64
            })
        );
        assert_eq!(
            describe_request(&r),
            "fcntl(4, F_OFD_SETLKW, {F_RDLCK 10+5})"
        );
        let (r, _) = lock_request(Mechanism::Flock, 3, LockKind::Unlock, false, 0, 0);
        assert_eq!(describe_request(&r), "flock(3, LOCK_UN)");
    }
}
