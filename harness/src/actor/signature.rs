//! What a call that waits looks like from outside: its system call number
//! and arguments in `/proc/PID/syscall`, and the `/proc/locks` evidence that
//! confirms the wait. The planner chooses a step's signature; the `/proc`
//! readers ([`crate::actor::observe`]) match it.

/// A call the kernel may make wait, as `/proc/PID/syscall` shows it:
/// the syscall number and its first two (int) arguments where known, and
/// what in `/proc/locks` confirms the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WaitSignature {
    pub(crate) nr: i64,
    pub(crate) args: [Option<i32>; 2],
    pub(crate) confirm: Confirm,
    /// Whether a long, unchanged wait in the call counts as blocked without
    /// /proc/locks evidence (lock calls: yes; open: no, it may be slow I/O).
    pub(crate) fallback: bool,
}

/// The `/proc/locks` evidence of a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirm {
    /// A `->` line of this lock kind (FLOCK, POSIX, OFDLCK) for the waiter.
    Waiter(&'static str),
    /// A lease on the file being broken (the opener waits for the holder).
    LeaseBreaking,
}

impl WaitSignature {
    pub(crate) fn describe(&self) -> String {
        match (self.nr, self.args[1]) {
            (n, Some(op)) if n == libc::SYS_flock => format!("flock op {op}"),
            (n, Some(cmd)) if n == libc::SYS_fcntl => format!("fcntl {}", fcntl_cmd_name(cmd)),
            (n, _) if n == libc::SYS_openat2 => "openat2".to_string(),
            (n, _) if n == libc::SYS_truncate => "truncate".to_string(),
            (n, _) => format!("syscall {n}"),
        }
    }
}

/// A blocking open (a lease break makes open wait): actors open with
/// openat2 beneath the trial directory's descriptor ([`crate::actor::beneath`]).
pub(crate) fn open_signature() -> WaitSignature {
    WaitSignature {
        nr: libc::SYS_openat2,
        args: [None, None],
        confirm: Confirm::LeaseBreaking,
        fallback: false,
    }
}

/// A truncate(2) held up by a lease break.
pub(crate) fn truncate_signature() -> WaitSignature {
    WaitSignature {
        nr: libc::SYS_truncate,
        args: [None, None],
        confirm: Confirm::LeaseBreaking,
        fallback: false,
    }
}

/// The name of an fcntl(2) command, for evidence (`F_OFD_SETLKW`).
pub(crate) fn fcntl_cmd_name(cmd: i32) -> String {
    match cmd {
        libc::F_SETLK => "F_SETLK".into(),
        libc::F_SETLKW => "F_SETLKW".into(),
        libc::F_GETLK => "F_GETLK".into(),
        libc::F_OFD_SETLK => "F_OFD_SETLK".into(),
        libc::F_OFD_SETLKW => "F_OFD_SETLKW".into(),
        libc::F_OFD_GETLK => "F_OFD_GETLK".into(),
        libc::F_SETLEASE => "F_SETLEASE".into(),
        libc::F_GETLEASE => "F_GETLEASE".into(),
        other => format!("cmd {other}"),
    }
}
