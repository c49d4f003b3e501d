//! Lowering a planned operation to the request an actor sends to the
//! kernel: which system call, with which descriptor and flags, how it looks
//! while it waits, and the inode of the file it concerns. A pure function of
//! the operation and what the actor holds (`ActorView`); the driver
//! supplies the view.

use crate::actor::protocol::{Beneath, Request};
use crate::actor::signature::{open_signature, truncate_signature, WaitSignature};
use crate::plan::mech::Span;
use crate::plan::resolve::{LockKind, Op};
use crate::spec::scenario::{Access, InvalidCall, Mechanism, Via, Whence};

/// A descriptor an actor holds, as lowering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdView {
    /// Its number in the actor.
    pub(crate) n: i32,
    /// The file it was opened from.
    pub(crate) path: Beneath,
    pub(crate) ino: u64,
}

/// What lowering needs to know of the acting actor.
pub(crate) trait ActorView {
    /// The descriptor the scenario names `name`, if the actor holds it.
    fn fd(&self, name: &str) -> Option<FdView>;
    /// The actor's name, for errors.
    fn name(&self) -> &str;
    /// A scenario path, beneath the actor's trial directory.
    fn path(&self, rel: &str) -> Beneath;
    /// Where an `open` of `rel` goes: the trial directory, or another view
    /// of it (`via`); `None` where this target has none.
    fn open_path(&self, rel: &str, via: Option<Via>) -> Option<Beneath>;
    /// The inode of `path` if some actor has it open.
    fn open_ino(&self, path: &Beneath) -> Option<u64>;
}

/// A lowered operation.
#[derive(Debug, Clone)]
pub(crate) struct Lowered {
    pub(crate) request: Request,
    /// How the call looks in `/proc` while it waits, if it can wait.
    pub(crate) waits_as: Option<WaitSignature>,
    /// The inode of the file it concerns, where known.
    pub(crate) ino: Option<u64>,
}

/// An operation that cannot be lowered here (the plan was checked, so this
/// is lockcheck's own error, or a target without a place `via` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LowerError(pub String);

/// open(2) flags: the access mode, then O_CREAT, O_EXCL, O_TRUNC,
/// O_DIRECTORY and O_CLOEXEC where asked for.
fn open_flags(access: Access, on: [bool; 5]) -> i32 {
    let mut flags = match access {
        Access::Read => libc::O_RDONLY,
        Access::Write => libc::O_WRONLY,
        Access::ReadWrite => libc::O_RDWR,
    };
    let named = [
        libc::O_CREAT,
        libc::O_EXCL,
        libc::O_TRUNC,
        libc::O_DIRECTORY,
        libc::O_CLOEXEC,
    ];
    for (on, flag) in on.into_iter().zip(named) {
        if on {
            flags |= flag;
        }
    }
    flags
}

/// A command number fcntl(2) does not have.
const NO_SUCH_FCNTL: i32 = 9999;

/// A good lock request, made wrong as `call` says.
fn invalid_request(good: Request, call: InvalidCall) -> Request {
    match (good, call) {
        (Request::Flock { operation, .. }, InvalidCall::ClosedDescriptor) => {
            Request::Flock { fd: -1, operation }
        }
        (Request::Flock { fd, .. }, InvalidCall::NonblockAlone) => Request::Flock {
            fd,
            operation: libc::LOCK_NB,
        },
        (Request::Flock { fd, .. }, _) => Request::Flock {
            fd,
            operation: libc::LOCK_SH | libc::LOCK_EX,
        },
        (Request::Fcntl { fd, cmd, .. }, InvalidCall::NullPointer) => {
            Request::FcntlNull { fd, cmd }
        }
        (mut r @ Request::Fcntl { .. }, call) => {
            if let Request::Fcntl {
                fd, cmd, l_type, ..
            } = &mut r
            {
                match call {
                    InvalidCall::ClosedDescriptor => *fd = -1,
                    InvalidCall::BadCommand => *cmd = NO_SUCH_FCNTL,
                    InvalidCall::BadType => *l_type = 99,
                    InvalidCall::NullPointer | InvalidCall::NonblockAlone => {}
                }
            }
            r
        }
        (other, _) => other,
    }
}

/// A counter: `times` increments of the number at `offset`, each under a
/// whole-file exclusive lock of the mechanism, waited for.
fn counter(f: &FdView, mech: Mechanism, times: u32, offset: u64) -> Request {
    let (lock, _) =
        crate::plan::mech::lock_request(mech, f.n, &f.path, LockKind::Exclusive, true, Span::WHOLE);
    let (unlock, _) =
        crate::plan::mech::lock_request(mech, f.n, &f.path, LockKind::Unlock, false, Span::WHOLE);
    Request::Counter {
        fd: f.n,
        lock: Box::new(lock),
        unlock: Box::new(unlock),
        times,
        offset,
    }
}

fn fd_of(actor: &dyn ActorView, name: &str) -> Result<FdView, LowerError> {
    actor
        .fd(name)
        .ok_or_else(|| LowerError(format!("actor {} has no descriptor {name}", actor.name())))
}

/// The request an actor makes for a step's operation, how the call looks
/// while it waits, and the inode of the file it concerns. Operations that
/// are not one plain request (fork, await, signals, lab faults, ...) are
/// the driver's own.
pub(crate) fn lower(op: &Op, actor: &dyn ActorView) -> Result<Lowered, LowerError> {
    let (request, waits_as, ino) = match op {
        Op::Open {
            path,
            access,
            create,
            excl,
            trunc,
            directory,
            cloexec,
            via,
            ..
        } => {
            let flags = open_flags(*access, [*create, *excl, *trunc, *directory, *cloexec]);
            let full = actor.open_path(path, *via).ok_or_else(|| {
                let v = via.map(|v| format!("{v:?}")).unwrap_or_default();
                LowerError(format!("no directory for `via: {v}`"))
            })?;
            // A lease break makes open wait: watch for that on the file's
            // inode, known if an actor has it open (a lease needs one).
            let ino = actor.open_ino(&full);
            (
                Request::Open { path: full, flags },
                Some(open_signature()),
                ino,
            )
        }
        Op::Close { fd } => (
            Request::Close {
                fd: fd_of(actor, fd)?.n,
            },
            None,
            None,
        ),
        Op::Dup { fd, .. } => (
            Request::Dup {
                fd: fd_of(actor, fd)?.n,
            },
            None,
            None,
        ),
        Op::Lock {
            fd,
            mech,
            kind,
            wait,
            start,
            len,
            whence,
        } => {
            let f = fd_of(actor, fd)?;
            let (req, sig) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                *kind,
                *wait,
                Span::new(*start, *len, *whence),
            );
            (req, sig, Some(f.ino))
        }
        Op::Test {
            fd,
            mech,
            mode,
            start,
            len,
            whence,
            pidns,
        } => {
            let req = crate::plan::mech::test_request(
                *mech,
                fd_of(actor, fd)?.n,
                *mode,
                *start,
                *len,
                *whence,
            );
            let req = if *pidns {
                Request::InPidNamespace {
                    request: Box::new(req),
                }
            } else {
                req
            };
            (req, None, None)
        }
        Op::Write {
            fd,
            data,
            offset,
            sync,
            mapped,
        } => {
            let fd = fd_of(actor, fd)?.n;
            let request = match (mapped, offset) {
                (true, Some(o)) => Request::MappedWrite {
                    fd,
                    data: data.clone(),
                    offset: *o,
                    sync: *sync,
                },
                _ => Request::Write {
                    fd,
                    data: data.clone(),
                    offset: *offset,
                    sync: *sync,
                },
            };
            (request, None, None)
        }
        Op::Read {
            fd,
            len,
            offset,
            mapped,
        } => {
            let fd = fd_of(actor, fd)?.n;
            let request = match (mapped, offset) {
                (true, Some(o)) => Request::MappedRead {
                    fd,
                    len: *len,
                    offset: *o,
                },
                _ => Request::Read {
                    fd,
                    len: *len,
                    offset: *offset,
                },
            };
            (request, None, None)
        }
        Op::Exit { code } => (Request::Exit { code: *code }, None, None),
        Op::Handle { signal, restart } => (
            Request::Handle {
                signal: *signal as i32,
                restart: *restart,
            },
            None,
            None,
        ),
        Op::Unlink { path } => (
            Request::Unlink {
                path: actor.path(path),
            },
            None,
            None,
        ),
        Op::Mkdir { path } => (
            Request::Mkdir {
                path: actor.path(path),
            },
            None,
            None,
        ),
        Op::Mkfifo { path } => (
            Request::Mkfifo {
                path: actor.path(path),
            },
            None,
            None,
        ),
        Op::Truncate { path, len } => {
            // A lease break makes truncate wait, as it does open.
            let full = actor.path(path);
            let ino = actor.open_ino(&full);
            (
                Request::Truncate {
                    path: full,
                    len: *len,
                },
                Some(truncate_signature()),
                ino,
            )
        }
        Op::Symlink { target, path } => (
            Request::Symlink {
                target: target.clone(),
                path: actor.path(path),
            },
            None,
            None,
        ),
        Op::Rename { from, to } => (
            Request::Rename {
                from: actor.path(from),
                to: actor.path(to),
            },
            None,
            None,
        ),
        Op::Counter {
            fd,
            mech,
            times,
            offset,
        } => (
            counter(&fd_of(actor, fd)?, *mech, *times, *offset),
            None,
            None,
        ),
        Op::Caught { signal, within } => (
            Request::Caught {
                signal: *signal as i32,
                timeout_ms: within.as_millis() as u64,
            },
            None,
            None,
        ),
        Op::Invalid { fd, mech, call } => {
            let f = fd_of(actor, fd)?;
            let (good, _) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                LockKind::Exclusive,
                false,
                Span::WHOLE,
            );
            (invalid_request(good, *call), None, None)
        }
        Op::ByteLocks {
            fd,
            mech,
            kind,
            count,
        } => {
            let f = fd_of(actor, fd)?;
            let (lock, _) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                *kind,
                false,
                Span::new(0, 1, Whence::Set),
            );
            (
                Request::ByteLocks {
                    lock: Box::new(lock),
                    count: *count,
                },
                None,
                Some(f.ino),
            )
        }
        Op::Hold { fd, mech, hold } => {
            let f = fd_of(actor, fd)?;
            let (lock, sig) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                LockKind::Exclusive,
                true,
                Span::WHOLE,
            );
            let (unlock, _) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                LockKind::Unlock,
                false,
                Span::WHOLE,
            );
            (
                Request::Hold {
                    lock: Box::new(lock),
                    unlock: Box::new(unlock),
                    hold_ms: hold.as_millis() as u64,
                },
                sig,
                Some(f.ino),
            )
        }
        Op::Records {
            fd,
            mech,
            count,
            size,
            writers,
        } => {
            let f = fd_of(actor, fd)?;
            let writer = writers
                .iter()
                .position(|w| w == actor.name())
                .ok_or_else(|| LowerError(format!("{} is not one of the writers", actor.name())))?;
            let (lock, _) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                LockKind::Exclusive,
                true,
                Span::new(0, i64::from(*size), Whence::Set),
            );
            let (unlock, _) = crate::plan::mech::lock_request(
                *mech,
                f.n,
                &f.path,
                LockKind::Unlock,
                false,
                Span::new(0, i64::from(*size), Whence::Set),
            );
            (
                Request::Records {
                    fd: f.n,
                    lock: Box::new(lock),
                    unlock: Box::new(unlock),
                    count: *count,
                    size: *size,
                    writer: writer as u32,
                    writers: writers.len() as u32,
                },
                None,
                None,
            )
        }
        Op::Exec => (Request::Exec, None, None),
        Op::PidAlive { path } => (
            Request::PidAlive {
                path: actor.path(path),
            },
            None,
            None,
        ),
        Op::Fork { .. }
        | Op::Thread { .. }
        | Op::Spawn { .. }
        | Op::Await { .. }
        | Op::Signal { .. }
        | Op::Stop
        | Op::Continue
        | Op::CloseAll
        | Op::Lab { .. }
        | Op::Listed { .. } => return Err(LowerError("not a plain request".into())),
    };
    Ok(Lowered {
        request,
        waits_as,
        ino,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::actor::signature::Confirm;

    /// An actor `a` holding descriptor `f` (number 7, inode 42) on `file`,
    /// with no second mount.
    struct Fake;

    impl ActorView for Fake {
        fn fd(&self, name: &str) -> Option<FdView> {
            (name == "f").then(|| FdView {
                n: 7,
                path: self.path("file"),
                ino: 42,
            })
        }
        fn name(&self) -> &str {
            "a"
        }
        fn path(&self, rel: &str) -> Beneath {
            Beneath::new(Path::new("/trial"), rel)
        }
        fn open_path(&self, rel: &str, via: Option<Via>) -> Option<Beneath> {
            via.is_none().then(|| self.path(rel))
        }
        fn open_ino(&self, path: &Beneath) -> Option<u64> {
            (path.rel == "file").then_some(42)
        }
    }

    fn lock(mech: Mechanism, kind: LockKind, wait: bool) -> Op {
        Op::Lock {
            fd: "f".into(),
            mech,
            kind,
            wait,
            start: 10,
            len: 5,
            whence: Whence::Set,
        }
    }

    #[test]
    fn a_waiting_flock_is_lock_ex_and_waits_as_flock() {
        let l = lower(&lock(Mechanism::Flock, LockKind::Exclusive, true), &Fake).expect("lowers");
        assert_eq!(
            l.request,
            Request::Flock {
                fd: 7,
                operation: libc::LOCK_EX
            }
        );
        let sig = l.waits_as.expect("a waiting lock has a signature");
        assert_eq!(sig.nr, libc::SYS_flock);
        assert_eq!(sig.confirm, Confirm::Waiter("FLOCK"));
        assert_eq!(l.ino, Some(42));
        // Tried, not waited for: LOCK_NB, nothing to wait for.
        let l = lower(&lock(Mechanism::Flock, LockKind::Shared, false), &Fake).expect("lowers");
        assert_eq!(
            l.request,
            Request::Flock {
                fd: 7,
                operation: libc::LOCK_SH | libc::LOCK_NB
            }
        );
        assert!(l.waits_as.is_none());
    }

    #[test]
    fn record_locks_carry_their_command_type_and_range() {
        for (mech, wait, cmd) in [
            (Mechanism::Posix, false, libc::F_SETLK),
            (Mechanism::Posix, true, libc::F_SETLKW),
            (Mechanism::Ofd, false, libc::F_OFD_SETLK),
            (Mechanism::Ofd, true, libc::F_OFD_SETLKW),
        ] {
            let l = lower(&lock(mech, LockKind::Shared, wait), &Fake).expect("lowers");
            assert_eq!(
                l.request,
                Request::Fcntl {
                    fd: 7,
                    cmd,
                    l_type: libc::F_RDLCK as i16,
                    start: 10,
                    len: 5,
                    whence: 0
                },
                "{mech} wait {wait}"
            );
            assert_eq!(l.waits_as.is_some(), wait, "{mech} wait {wait}");
        }
    }

    #[test]
    fn an_open_has_its_flags_and_waits_as_a_lease_break() {
        let op = Op::Open {
            path: "file".into(),
            access: Access::ReadWrite,
            create: true,
            excl: true,
            trunc: false,
            directory: false,
            cloexec: true,
            via: None,
            fd: "g".into(),
        };
        let l = lower(&op, &Fake).expect("lowers");
        assert_eq!(
            l.request,
            Request::Open {
                path: Fake.path("file"),
                flags: libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC
            }
        );
        assert_eq!(l.waits_as, Some(open_signature()));
        assert_eq!(l.ino, Some(42), "the inode of a file an actor has open");
        // Through a view this target does not have.
        let Op::Open { path, access, .. } = op else {
            unreachable!()
        };
        let via = Op::Open {
            path,
            access,
            create: false,
            excl: false,
            trunc: false,
            directory: false,
            cloexec: false,
            via: Some(Via::SecondMount),
            fd: "g".into(),
        };
        assert_eq!(
            lower(&via, &Fake).map(|l| l.request),
            Err(LowerError("no directory for `via: SecondMount`".into()))
        );
    }

    #[test]
    fn a_counter_carries_its_lock_and_unlock() {
        let op = Op::Counter {
            fd: "f".into(),
            mech: Mechanism::Posix,
            times: 100,
            offset: 8,
        };
        let whole = |l_type: i32, cmd: i32| Request::Fcntl {
            fd: 7,
            cmd,
            l_type: l_type as i16,
            start: 0,
            len: 0,
            whence: 0,
        };
        assert_eq!(
            lower(&op, &Fake).expect("lowers").request,
            Request::Counter {
                fd: 7,
                lock: Box::new(whole(libc::F_WRLCK, libc::F_SETLKW)),
                unlock: Box::new(whole(libc::F_UNLCK, libc::F_SETLK)),
                times: 100,
                offset: 8
            }
        );
    }

    #[test]
    fn what_cannot_be_lowered_says_why() {
        assert_eq!(
            lower(&Op::Close { fd: "nope".into() }, &Fake).map(|l| l.request),
            Err(LowerError("actor a has no descriptor nope".into()))
        );
        assert_eq!(
            lower(&Op::Fork { child: 1 }, &Fake).map(|l| l.request),
            Err(LowerError("not a plain request".into()))
        );
        assert_eq!(
            lower(&Op::Unlink { path: "x".into() }, &Fake).map(|l| l.request),
            Ok(Request::Unlink {
                path: Fake.path("x")
            })
        );
    }
}
