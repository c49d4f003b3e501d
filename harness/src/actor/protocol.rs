//! The actor protocol: one JSON object per line over the actor's stdin and
//! stdout. The harness sends `Envelope`s; the actor answers each with a
//! `Reply` carrying the same sequence number. The first line an actor writes
//! is a `Hello`.
//!
//! Requests name concrete system calls (the harness maps the scenario's
//! mechanism-neutral steps onto them, see `mech`), so the actor stays small:
//! it performs the call and reports exactly what the kernel returned.

use serde::{Deserialize, Serialize};

/// Bumped when a message changes shape.
pub(crate) const VERSION: u32 = 2;

/// The first argument that turns the binary into an actor.
pub(crate) const ACTOR_ARG: &str = "__lockcheck_actor";

/// The longest line either side accepts, its newline included.
pub const MAX_LINE: usize = 4 << 20;

impl Outcome {
    /// The call did not do what was asked: it failed, was refused, or was
    /// not understood.
    pub(crate) fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Failed { .. } | Outcome::BadRequest { .. } | Outcome::Refused { .. }
        )
    }
}

/// A message from an actor: a greeting (after start or exec) or a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FromActor {
    /// The greeting, the first line of a new actor or a new image.
    Hello {
        /// Who the actor is and where it runs.
        hello: HelloBody,
    },
    /// The answer to a request.
    Reply(Reply),
}

/// The greeting an actor writes as its first line: `{"hello": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub(crate) hello: HelloBody,
}

/// What an actor tells of itself in its greeting: its ids, the protocol
/// version, and the kernel and pid namespace it runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloBody {
    /// The process id (thread group id).
    pub(crate) pid: i32,
    /// The thread id of the thread serving this channel (equals `pid` for the main thread).
    #[serde(default)]
    pub(crate) tid: i32,
    pub(crate) version: u32,
    /// /proc/sys/kernel/random/boot_id: the same kernel (and monotonic clock) as the harness?
    #[serde(default)]
    pub(crate) boot_id: String,
    /// The inode of /proc/self/ns/pid: the same view of pids as the harness?
    #[serde(default)]
    pub(crate) pidns: u64,
}

impl HelloBody {
    /// The identity of the kernel and pid namespace this process runs in.
    pub(crate) fn here(pid: i32, tid: i32) -> HelloBody {
        HelloBody {
            pid,
            tid,
            version: VERSION,
            boot_id: boot_id(),
            pidns: pid_namespace(),
        }
    }
}

/// This kernel's boot id.
pub(crate) fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The inode of this process's pid namespace.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// A path inside a trial directory: the actor resolves `rel` beneath `dir`
/// ([`crate::actor::beneath`]) and refuses one that leads out of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneath {
    /// The trial directory (absolute, as the actor's host names it).
    pub(crate) dir: String,
    /// The scenario's path, relative to `dir`.
    pub(crate) rel: String,
}

impl Beneath {
    pub(crate) fn new(dir: &std::path::Path, rel: &str) -> Beneath {
        Beneath {
            dir: dir.to_string_lossy().into_owned(),
            rel: rel.to_string(),
        }
    }

    /// The same directory, another name in it.
    pub(crate) fn with_rel(&self, rel: String) -> Beneath {
        Beneath {
            dir: self.dir.clone(),
            rel,
        }
    }
}

impl std::fmt::Display for Beneath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.dir.trim_end_matches('/'), self.rel)
    }
}

/// A request from the harness, with the sequence number its reply carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub(crate) seq: u64,
    pub(crate) req: Request,
}

/// A system call for the actor to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// open(2) with these flags (O_CLOEXEC is added), mode 0644.
    Open {
        /// The file to open.
        path: Beneath,
        /// open(2)'s flags (`O_RDWR`, `O_CREAT`, ...).
        flags: i32,
    },
    /// close(2)
    Close {
        /// The descriptor's number in the actor.
        fd: i32,
    },
    /// dup(2)
    Dup {
        /// The descriptor's number in the actor.
        fd: i32,
    },
    /// flock(2)
    Flock {
        /// The descriptor's number in the actor.
        fd: i32,
        /// `LOCK_SH`, `LOCK_EX` or `LOCK_UN`, with or without `LOCK_NB`.
        operation: i32,
    },
    /// fcntl(2) with a `struct flock`: F_SETLK, F_SETLKW, F_GETLK and the F_OFD_* forms.
    Fcntl {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The command: `F_SETLK`, `F_SETLKW`, `F_GETLK` or an `F_OFD_*` one.
        cmd: i32,
        /// The lock type: `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
        l_type: i16,
        /// The first byte of the range, counted from `whence`.
        start: i64,
        /// Bytes in the range; 0 reaches to the end of the file, however far it grows.
        len: i64,
        /// Where `start` counts from: `SEEK_SET` (0, the default), `SEEK_CUR`, `SEEK_END`.
        #[serde(default)]
        whence: i16,
    },
    /// write(2), or pwrite(2) with an offset.
    Write {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The bytes to write, as UTF-8 text.
        data: String,
        /// Where to write with pwrite(2); `None` writes at the file offset with write(2).
        offset: Option<u64>,
        /// fsync(2) after writing.
        #[serde(default)]
        sync: bool,
    },
    /// read(2), or pread(2) with an offset.
    Read {
        /// The descriptor's number in the actor.
        fd: i32,
        /// Bytes to read at most (the actor reads 1 MiB at most).
        len: u64,
        /// Where to read with pread(2); `None` reads at the file offset with read(2).
        offset: Option<u64>,
    },
    /// fcntl(2) with an integer argument (F_SETLEASE, F_GETLEASE).
    FcntlInt {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The command: `F_SETLEASE` or `F_GETLEASE`.
        cmd: i32,
        /// The integer argument: for `F_SETLEASE`, the lease type (`F_RDLCK`,
        /// `F_WRLCK` or `F_UNLCK`).
        arg: i64,
    },
    /// fork(2); the child connects to this abstract Unix socket and becomes an actor.
    Fork {
        /// The socket's abstract name, or its path if it starts with `/`.
        socket: String,
    },
    /// A new thread that connects to this abstract Unix socket and serves as an actor.
    Thread {
        /// The socket's abstract name, or its path if it starts with `/`.
        socket: String,
    },
    /// _exit(2) with this status; no reply.
    Exit {
        /// The exit status.
        code: i32,
    },
    /// execve(2) of this actor binary; the new image greets with a `Hello` instead of a reply.
    Exec,
    /// sigaction(2): a handler that does nothing, with or without SA_RESTART.
    Handle {
        /// The signal's number.
        signal: i32,
        /// Whether the handler is installed with `SA_RESTART`.
        restart: bool,
    },
    /// unlink(2)
    Unlink {
        /// The name to remove.
        path: Beneath,
    },
    /// rename(2)
    Rename {
        /// The name to rename.
        from: Beneath,
        /// The new name.
        to: Beneath,
    },
    /// symlink(2): `path` (beneath its directory) made a link to `target`.
    Symlink {
        /// What the link points to, as given (it is not resolved).
        target: String,
        /// The link to create.
        path: Beneath,
    },
    /// truncate(2) of the file by its path (opened O_PATH beneath its
    /// directory, then truncated through /proc/self/fd), to `len` bytes.
    Truncate {
        /// The file.
        path: Beneath,
        /// Its new length.
        len: u64,
    },
    /// Write through a shared mmap(2) of the file (the file must already
    /// reach past the bytes written); with `sync`, msync(2) after.
    MappedWrite {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The bytes to write, as UTF-8 text.
        data: String,
        /// Where, in bytes from the start of the file.
        offset: u64,
        /// msync(MS_SYNC) after writing.
        sync: bool,
    },
    /// Read through a shared mmap(2) of the file.
    MappedRead {
        /// The descriptor's number in the actor.
        fd: i32,
        /// Bytes to read at most (not past the end of the file).
        len: u64,
        /// Where, in bytes from the start of the file.
        offset: u64,
    },
    /// mknod(2) of a FIFO, mode 0644.
    Mkfifo {
        /// The FIFO to create.
        path: Beneath,
    },
    /// mkdir(2), mode 0755.
    Mkdir {
        /// The directory to create.
        path: Beneath,
    },
    /// `times` rounds of: `lock` (must succeed, may wait), pread the decimal
    /// counter at `offset`, pwrite it plus one, `unlock`.
    Counter {
        /// The descriptor's number in the actor: the file that holds the counter.
        fd: i32,
        /// The request that takes the lock.
        lock: Box<Request>,
        /// The request that releases it.
        unlock: Box<Request>,
        /// How many rounds.
        times: u32,
        /// Where the counter is in the file, in bytes from its start.
        offset: u64,
    },
    /// Whether `signal` arrived since the last ask: waits up to
    /// `timeout_ms` for one; `Done` with how many, or ETIMEDOUT.
    Caught {
        /// The signal's number.
        signal: i32,
        /// How long to wait for it, in milliseconds.
        timeout_ms: u64,
    },
    /// `request` (F_GETLK or F_OFD_GETLK only) made by a child of the actor
    /// that is PID 1 of a new PID namespace, on the inherited descriptor.
    InPidNamespace {
        /// The request.
        request: Box<Request>,
    },
    /// fcntl(2) with a NULL `struct flock *` (EFAULT expected).
    FcntlNull {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The command.
        cmd: i32,
    },
    /// `count` one-byte locks: `lock` with its range moved to bytes 0, 2, 4, ...
    ByteLocks {
        /// The request that takes one lock (range 0, 1).
        lock: Box<Request>,
        /// How many.
        count: u32,
    },
    /// `lock` (waiting), hold it `hold_ms` milliseconds, `unlock`.
    Hold {
        /// The request that takes the lock.
        lock: Box<Request>,
        /// The request that releases it.
        unlock: Box<Request>,
        /// How long to hold it, in milliseconds.
        hold_ms: u64,
    },
    /// Interleaved records: for j = `writer`, `writer` + `writers`, ... below
    /// `count`, `lock` (its range moved to record j's bytes), pwrite record
    /// j ([`record_text`]) at j × `size`, `unlock`.
    Records {
        /// The descriptor's number in the actor.
        fd: i32,
        /// The request that takes a record's lock (range 0, `size` for record locks).
        lock: Box<Request>,
        /// The request that releases it.
        unlock: Box<Request>,
        /// How many records in all.
        count: u32,
        /// Bytes per record.
        size: u32,
        /// This actor's place among the writers (0-based).
        writer: u32,
        /// How many writers share the records.
        writers: u32,
    },
    /// A lock file: create `path` with O_CREAT|O_EXCL. With `pid`, write our pid,
    /// and if the file exists but kill(its pid, 0) says that process is gone,
    /// remove it and try once more (the daemon pid-file pattern).
    LockFileCreate {
        /// The lock file.
        path: Beneath,
        /// Whether it is a pid file: written with our pid, and taken over when stale.
        pid: bool,
    },
    /// Remove a lock file.
    LockFileRemove {
        /// The lock file.
        path: Beneath,
    },
    /// Read the pid in `path` and probe it with kill(pid, 0).
    PidAlive {
        /// The file that holds the pid.
        path: Beneath,
    },
    /// Start a new actor process (clone3 + exec of this binary) that connects to
    /// this abstract socket; with `set_tid`, it must get exactly that pid.
    Spawn {
        /// The socket's abstract name, or its path if it starts with `/`.
        socket: String,
        /// The pid the new process must get (clone3's `set_tid`), if any.
        set_tid: Option<i32>,
    },
    /// Benchmarks: `times` rounds of `lock` (must succeed, may wait) then
    /// `unlock`; answers the nanoseconds each round took.
    LockLoop {
        /// The request that takes the lock.
        lock: Box<Request>,
        /// The request that releases it.
        unlock: Box<Request>,
        /// How many rounds.
        times: u32,
    },
    /// Benchmarks: optionally take `lock`; write `chunk`-byte blocks from
    /// the start of the file until `budget_ms` has passed (at least
    /// `min_chunks`, at most 64 MiB), fsync, read them back, then `unlock`.
    IoLoop {
        /// The descriptor's number in the actor.
        fd: i32,
        /// Bytes per write and read.
        chunk: u32,
        /// Time to spend writing, in milliseconds.
        budget_ms: u64,
        /// Blocks written at least.
        min_chunks: u32,
        /// The lock to hold meanwhile, if any.
        lock: Option<Box<Request>>,
        /// Its release.
        unlock: Option<Box<Request>>,
    },
    /// Host agent: what the kernel shows of task `tid` (and /proc/locks), for
    /// deciding "blocked" on a host whose /proc the harness cannot read.
    ReadProc {
        /// The task's id (a thread id, or the pid for a main thread).
        tid: i32,
    },
    /// Host agent: send a signal to a process (or one thread of it).
    SignalPid {
        /// The process.
        pid: i32,
        /// One thread of it to signal (tgkill(2)); `None` signals the process (kill(2)).
        tid: Option<i32>,
        /// The signal's number.
        signal: i32,
    },
    /// Host agent: wait up to `timeout_ms` for a process to end (1 if it has).
    WaitGone {
        /// The process.
        pid: i32,
        /// How long to wait, in milliseconds.
        timeout_ms: u64,
    },
}

/// What the kernel shows of a task, read on its own host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProcSnapshot {
    /// The state letter from /proc/TID/stat, if the task exists.
    pub(crate) state: Option<char>,
    /// /proc/TID/syscall as text; `None` if it could not be read (no access).
    pub(crate) syscall: Option<String>,
    pub(crate) wchan: Option<String>,
    /// /proc/locks as text.
    pub(crate) locks: String,
    /// /proc/TID/stack, if readable.
    #[serde(default)]
    pub(crate) stack: Option<String>,
}

/// The kernel's `struct flock` as F_GETLK returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockDesc {
    pub(crate) l_type: i16,
    pub(crate) l_whence: i16,
    pub(crate) start: i64,
    pub(crate) len: i64,
    pub(crate) pid: i32,
}

/// An actor's answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The sequence number of the request it answers.
    pub seq: u64,
    /// CLOCK_MONOTONIC (ns) when the call returned, taken by the actor: tells
    /// when a blocked call really completed, whenever the harness reads it.
    #[serde(default)]
    pub(crate) t_ns: u64,
    /// CLOCK_MONOTONIC (ns) just before the call was made (0: not known).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) start_ns: u64,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// CLOCK_MONOTONIC in nanoseconds: one clock for the harness and its actors.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Record `j` of a `records` step, written by writer `writer`: `size` bytes,
/// the writer and record number first, the writer's letter after, a newline
/// last; `size` is at least 16.
pub(crate) fn record_text(j: u32, writer: u32, size: u32) -> String {
    let mut s = format!("{writer}:{j:06} ");
    let fill = char::from(b'a' + (writer % 26) as u8);
    let size = size as usize;
    while s.len() + 1 < size {
        s.push(fill);
    }
    s.truncate(size.saturating_sub(1));
    s.push('\n');
    s
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// The call failed with this errno.
    Failed { errno: i32 },
    /// Success with a return value.
    Done { ret: i64 },
    /// open/dup: the new descriptor and the identity of its file.
    Opened { fd: i32, dev: u64, ino: u64 },
    /// F_GETLK and friends: the `struct flock` as the kernel left it, and
    /// as it was passed in (for a range with no conflict, the kernel sets
    /// `l_type` to F_UNLCK and must leave the other fields as they were).
    Lock {
        lock: LockDesc,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asked: Option<LockDesc>,
    },
    /// read: the bytes (lossy UTF-8).
    Data { data: String },
    /// fork: the child's pid.
    Forked { pid: i32 },
    /// thread: the new thread's id.
    Threaded { tid: i32 },
    /// F_GETLEASE: the lease type (F_RDLCK, F_WRLCK or F_UNLCK).
    Leased { l_type: i64 },
    /// spawn: the new process's pid.
    Spawned { pid: i32 },
    /// read-proc: the snapshot.
    Proc { snapshot: ProcSnapshot },
    /// lock-loop: nanoseconds per round.
    Samples { ns: Vec<u64> },
    /// io-loop: bytes written (then read back), and the nanoseconds the
    /// writes with their fsync took, and the reads.
    Io {
        bytes: u64,
        write_ns: u64,
        read_ns: u64,
    },
    /// The request could not be understood.
    BadRequest { message: String },
    /// The path leads out of the trial directory: not followed.
    Refused { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_survive_their_json_line() {
        let req = Request::Fcntl {
            fd: 4,
            cmd: libc::F_OFD_SETLKW,
            l_type: libc::F_RDLCK as i16,
            start: 10,
            len: 5,
            whence: libc::SEEK_END as i16,
        };
        let line = serde_json::to_string(&Envelope {
            seq: 9,
            req: req.clone(),
        })
        .expect("json");
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains("\"op\":\"fcntl\""), "tagged by op: {line}");
        let back: Envelope = serde_json::from_str(&line).expect("parses");
        assert_eq!((back.seq, back.req), (9, req));
    }

    #[test]
    fn a_path_beneath_keeps_its_directory() {
        let b = Beneath::new(std::path::Path::new("/trial"), "a/f");
        let lock = b.with_rel(format!("{}.lock", b.rel));
        assert_eq!(
            (lock.dir.as_str(), lock.rel.as_str()),
            ("/trial", "a/f.lock")
        );
    }
}
