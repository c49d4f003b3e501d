//! The stress agent: the harness binary re-executed as `lockcheck
//! __lockcheck_stress`, one per host. It reads its configuration (one JSON
//! line) from stdin, forks its worker processes (it is single-threaded, so
//! it may), says it is ready, and on the harness's `go` lets them hammer a
//! few small files with lock requests for the given time. Then it writes
//! what they saw (one JSON line) and exits.
//!
//! Every grant is checked by oracles that do not trust the storage:
//!
//! - **holdings** (this host): each worker publishes what it holds in a
//!   table in memory shared by the workers (one 64-bit word each, stored
//!   and then every other word loaded, all sequentially consistent: of two
//!   workers registering at once, at least one sees the other). A holding
//!   that overlaps an incompatible one is a finding, with both holders;
//! - **cells** (every host, through the storage): the locked bytes are
//!   eight 8-byte cells of (sequence, writer). An exclusive holder reads
//!   each cell it covers and writes it back with the sequence plus one and
//!   itself as the writer; before unlocking it reads them again and they
//!   must be as it left them. A shared holder's cells must not change while
//!   it holds them. The harness then compares each cell's final sequence
//!   with the number of writes all hosts made to it: a lost update (two
//!   exclusive holders at once, or data the lock did not make coherent)
//!   shows there even when no holder saw it happen.
//!
//! Each worker holds at most one lock at a time, so blocking requests can
//! never deadlock; a blocking request still waiting after the wait bound is
//! interrupted (SIGALRM) and reported.

use std::io::{BufRead, Read as _, Write as _};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::spec::scenario::Mechanism;

/// The argument that makes the binary a stress agent.
pub const STRESS_ARG: &str = "__lockcheck_stress";
/// Most worker processes on one host.
pub const MAX_PROCESSES: u32 = 64;
/// Bytes of each file that locks cover (a range may also run to the end of the file).
pub const REGION: u64 = 64;
/// Bytes in one cell of the data oracle.
pub const CELL: u64 = 8;
/// Cells per file.
pub const CELLS: usize = (REGION / CELL) as usize;
/// Files per lock family (flock; record locks, POSIX and OFD together).
pub const FILES: u32 = 2;
/// Findings a worker keeps (more are counted).
const KEEP_FINDINGS: usize = 20;
/// Buckets of the wait histogram: bucket `b` holds waits below 2^b µs.
pub const BUCKETS: usize = 40;

/// Whether this process was started as a stress agent.
pub fn is_stress_invocation() -> bool {
    std::env::args_os().nth(1).is_some_and(|a| a == STRESS_ARG)
}

/// The name of stress file `i` of a family.
pub fn file_name(record: bool, i: u32) -> String {
    if record {
        format!("stress-record-{i}")
    } else {
        format!("stress-flock-{i}")
    }
}

/// What an agent is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentConfig {
    /// The host's name (`a` is the harness's).
    pub host: String,
    /// Its number, part of every writer id in the cells.
    pub host_index: u32,
    /// The directory holding the stress files, as this host names it.
    pub dir: PathBuf,
    /// Worker processes.
    pub processes: u32,
    /// The mechanisms requests use (flock, posix, ofd).
    pub mechanisms: Vec<Mechanism>,
    /// How long the workers run, from `go`.
    pub duration_ms: u64,
    /// Seed of the workers' choices (each worker's own is derived from it).
    pub seed: u64,
    /// A blocking request still waiting after this long is interrupted and reported.
    pub wait_bound_ms: u64,
}

/// The agent's first line: ready for `go`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentReady {
    /// The agent's pid as its host sees it.
    pub pid: i32,
    /// Its kernel's boot id (tells hosts that are one machine apart).
    pub boot_id: String,
}

/// The agent's last line: what its workers saw.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct AgentResult {
    /// The host.
    pub host: String,
    /// Each worker's counts and findings.
    pub workers: Vec<WorkerResult>,
    /// What went wrong with the agent or a worker (not the storage).
    pub problems: Vec<String>,
}

/// One worker's counts and findings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct WorkerResult {
    /// The worker's number on its host.
    pub worker: u32,
    /// Its pid.
    pub pid: i32,
    /// From `go` to its last operation, in milliseconds.
    pub elapsed_ms: f64,
    /// Per mechanism.
    pub mechanisms: Vec<MechCounts>,
    /// Writes it made to each cell: flock files first, then record files,
    /// `CELLS` per file.
    pub cell_writes: Vec<u64>,
    /// What the oracles caught (the first [`KEEP_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// Findings beyond those kept.
    pub findings_dropped: u64,
}

/// Requests of one mechanism and what became of them.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MechCounts {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Lock requests made.
    pub requests: u64,
    /// Of which exclusive.
    pub exclusive: u64,
    /// Requests granted.
    pub granted: u64,
    /// Non-blocking requests refused for a conflict.
    pub refused: u64,
    /// Of which exclusive (what a storage that wrongly grants would turn into grants).
    pub refused_exclusive: u64,
    /// Blocking requests made.
    pub blocking: u64,
    /// Requests and unlocks that failed otherwise (counted; each is a finding).
    pub errors: u64,
    /// How long blocking requests took: `wait_histogram[b]` counts those
    /// below 2^b µs (and at least 2^(b-1)).
    pub wait_histogram: Vec<u64>,
    /// The longest blocking request, in µs.
    pub wait_max_us: u64,
}

impl MechCounts {
    /// Zero counts for `mechanism`.
    pub fn new(mechanism: Mechanism) -> Self {
        MechCounts {
            mechanism,
            requests: 0,
            exclusive: 0,
            granted: 0,
            refused: 0,
            refused_exclusive: 0,
            blocking: 0,
            errors: 0,
            wait_histogram: vec![0; BUCKETS],
            wait_max_us: 0,
        }
    }

    /// Add `o`'s counts to these.
    pub fn add(&mut self, o: &MechCounts) {
        self.requests += o.requests;
        self.exclusive += o.exclusive;
        self.granted += o.granted;
        self.refused += o.refused;
        self.refused_exclusive += o.refused_exclusive;
        self.blocking += o.blocking;
        self.errors += o.errors;
        for (a, b) in self.wait_histogram.iter_mut().zip(&o.wait_histogram) {
            *a += b;
        }
        self.wait_max_us = self.wait_max_us.max(o.wait_max_us);
    }

    fn record_wait(&mut self, us: u64) {
        let b = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.wait_histogram[b] += 1;
        self.wait_max_us = self.wait_max_us.max(us);
    }
}

/// A lock a worker held or asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Holding {
    /// The host.
    pub host: String,
    /// The worker's number on its host.
    pub worker: u32,
    /// Its pid there.
    pub pid: i32,
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Exclusive (write) or shared (read).
    pub exclusive: bool,
    /// Whether the request was a blocking one.
    pub blocking: bool,
    /// The file (in the stress directory).
    pub file: String,
    /// The first byte.
    pub start: u64,
    /// One past the last byte; none: to the end of the file (`l_len` 0; flock: the whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    /// When it was granted (CLOCK_REALTIME of its host, ns since the epoch).
    pub since_ns: u64,
}

impl Holding {
    /// `[start, end)` in bytes, `end` none: to the end of the file.
    pub fn range_text(&self) -> String {
        if self.mechanism == Mechanism::Flock {
            return "whole file".into();
        }
        match self.end {
            Some(e) => format!("bytes [{}, {e})", self.start),
            None => format!("bytes [{}, end of file)", self.start),
        }
    }

    /// One line: `worker 3 (pid 1234) on host a: posix exclusive bytes [8, 24) of stress-record-0`.
    pub fn describe(&self) -> String {
        format!(
            "worker {} (pid {}) on host {}: {} {} {}{} of {}",
            self.worker,
            self.pid,
            self.host,
            self.mechanism_name(),
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.range_text(),
            if self.blocking { " (waited)" } else { "" },
            self.file
        )
    }

    fn mechanism_name(&self) -> &'static str {
        match self.mechanism {
            Mechanism::Flock => "flock",
            Mechanism::Posix => "posix",
            Mechanism::Ofd => "ofd",
            _ => "other",
        }
    }
}

/// What an oracle caught.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Two incompatible locks were held at once (the holdings oracle).
    Overlap,
    /// Data under a lock changed while it was held (the cells oracle).
    ChangedUnderLock,
    /// Fewer writes survived in a cell than were made to it: an update was
    /// lost (the cells oracle, after the run).
    LostUpdate,
    /// A blocking request was not granted within the wait bound.
    WaitBound,
    /// A host's workers did not finish long after the run's end: one is
    /// stuck in a call the wait bound cannot interrupt (an open, a write,
    /// an unlock on a server that does not answer).
    Stuck,
    /// A lock or unlock call failed with an unexpected error.
    Error,
}

/// One finding, with the processes, ranges and times involved.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Finding {
    /// What was caught.
    pub kind: FindingKind,
    /// When (CLOCK_REALTIME of the host that saw it, ns since the epoch).
    pub at_ns: u64,
    /// The lock of the worker that saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holding>,
    /// The other lock, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<Holding>,
    /// What exactly was seen.
    pub detail: String,
    /// When, counted from the start of the run, in milliseconds.
    pub after_ms: f64,
    /// Lock requests the host's workers had made by then (all hosts' for a
    /// lost update, counted after the run).
    pub operations_before: u64,
}

impl Finding {
    /// A finding seen now (the worker fills in when, in the run, and after
    /// how many requests).
    fn new(kind: FindingKind, holder: Holding, other: Option<Holding>, detail: String) -> Finding {
        Finding {
            kind,
            at_ns: realtime_ns(),
            holder: Some(holder),
            other,
            detail,
            after_ms: 0.0,
            operations_before: 0,
        }
    }
}

fn realtime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn die(msg: &str) -> ! {
    let line = format!("lockcheck stress agent {}: {msg}\n", std::process::id());
    // SAFETY: writing a valid buffer to stderr, then ending the process.
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(3)
    }
}

// ---------------------------------------------------------------------------
// The holdings table

/// One worker's published holding (`word` is 0 when it holds nothing) and
/// its operation count; one cache line each.
#[repr(C, align(64))]
struct Slot {
    word: AtomicU64,
    since_ns: AtomicU64,
    pid: AtomicU64,
    ops: AtomicU64,
}

/// `end` when a range runs to the end of the file.
const END_OF_FILE: u64 = REGION + 1;

/// A holding packed into one word (the op number keeps each one distinct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed {
    exclusive: bool,
    record: bool,
    file: u32,
    start: u64,
    /// `END_OF_FILE`: to the end of the file.
    end: u64,
    mech: u8,
    blocking: bool,
    op: u32,
}

impl Packed {
    fn pack(&self) -> u64 {
        (if self.exclusive { 2 } else { 1 })
            | (self.record as u64) << 2
            | (self.file as u64 & 0x1f) << 3
            | (self.start & 0xff) << 8
            | (self.end & 0xff) << 16
            | (self.mech as u64 & 3) << 24
            | (self.blocking as u64) << 26
            | (self.op as u64) << 32
    }

    fn unpack(w: u64) -> Option<Packed> {
        let kind = w & 3;
        if kind == 0 {
            return None;
        }
        Some(Packed {
            exclusive: kind == 2,
            record: w >> 2 & 1 == 1,
            file: (w >> 3 & 0x1f) as u32,
            start: w >> 8 & 0xff,
            end: w >> 16 & 0xff,
            mech: (w >> 24 & 3) as u8,
            blocking: w >> 26 & 1 == 1,
            op: (w >> 32) as u32,
        })
    }

    /// Whether the two cannot both be held.
    fn conflicts(&self, o: &Packed) -> bool {
        self.record == o.record
            && self.file == o.file
            && (self.exclusive || o.exclusive)
            && self.start < o.end
            && o.start < self.end
    }

    fn holding(&self, host: &str, worker: u32, pid: i32, since_ns: u64) -> Holding {
        Holding {
            host: host.to_string(),
            worker,
            pid,
            mechanism: mech_of(self.mech),
            exclusive: self.exclusive,
            blocking: self.blocking,
            file: file_name(self.record, self.file),
            start: self.start,
            end: (self.end != END_OF_FILE).then_some(self.end),
            since_ns,
        }
    }

    /// The cells `[first, last)` wholly inside the range.
    fn cells(&self) -> (usize, usize) {
        let first = self.start.div_ceil(CELL) as usize;
        let last = (self.end.min(REGION) / CELL) as usize;
        (first.min(CELLS), last.max(first.min(CELLS)))
    }
}

fn mech_code(m: Mechanism) -> u8 {
    match m {
        Mechanism::Flock => 0,
        Mechanism::Posix => 1,
        _ => 2,
    }
}

fn mech_of(c: u8) -> Mechanism {
    match c {
        0 => Mechanism::Flock,
        1 => Mechanism::Posix,
        _ => Mechanism::Ofd,
    }
}

/// The table in shared memory: one slot per worker.
struct Table {
    base: *mut Slot,
    len: usize,
}

impl Table {
    fn map(len: usize) -> Table {
        let size = len.max(1) * std::mem::size_of::<Slot>();
        // SAFETY: an anonymous shared mapping, zero-filled by the kernel;
        // zero is a valid AtomicU64. It is inherited by the forked workers.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            die(&format!(
                "mmap of the holdings table: {}",
                std::io::Error::last_os_error()
            ));
        }
        Table {
            base: p.cast(),
            len,
        }
    }

    fn slot(&self, i: usize) -> &Slot {
        assert!(i < self.len);
        // SAFETY: i is within the mapping, which lives as long as the process.
        unsafe { &*self.base.add(i) }
    }
}

// ---------------------------------------------------------------------------
// Lock calls

static ALARMED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    ALARMED.store(1, SeqCst);
}

/// SIGALRM interrupts a blocking lock call (no SA_RESTART).
fn install_alarm() {
    // SAFETY: a handler that only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = 0;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
}

fn set_timer(ms: u64) {
    let it = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
        },
    };
    // SAFETY: a valid itimerval.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
}

/// A lock (or unlock, `exclusive` none) call; Err(errno).
fn lock_call(fd: RawFd, p: &Packed, exclusive: Option<bool>, blocking: bool) -> Result<(), i32> {
    let r = match mech_of(p.mech) {
        Mechanism::Flock => {
            let op = match exclusive {
                Some(true) => libc::LOCK_EX,
                Some(false) => libc::LOCK_SH,
                None => libc::LOCK_UN,
            } | if blocking { 0 } else { libc::LOCK_NB };
            // SAFETY: flock on a descriptor this worker owns.
            unsafe { libc::flock(fd, op) }
        }
        m => {
            // SAFETY: an all-zero flock struct is valid; its fields are set below.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = match exclusive {
                Some(true) => libc::F_WRLCK,
                Some(false) => libc::F_RDLCK,
                None => libc::F_UNLCK,
            } as libc::c_short;
            fl.l_whence = libc::SEEK_SET as libc::c_short;
            fl.l_start = p.start as libc::off_t;
            fl.l_len = if p.end == END_OF_FILE {
                0
            } else {
                (p.end - p.start) as libc::off_t
            };
            let cmd = match (m, blocking) {
                (Mechanism::Posix, false) => libc::F_SETLK,
                (Mechanism::Posix, true) => libc::F_SETLKW,
                (_, false) => libc::F_OFD_SETLK,
                (_, true) => libc::F_OFD_SETLKW,
            };
            // SAFETY: fcntl with a valid struct flock.
            unsafe { libc::fcntl(fd, cmd, &mut fl) }
        }
    };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

fn errno_name(e: i32) -> String {
    crate::spec::errno::name(e)
}

// ---------------------------------------------------------------------------
// The worker

struct Worker<'a> {
    cfg: &'a AgentConfig,
    idx: u32,
    pid: i32,
    table: &'a Table,
    /// Descriptors of the flock files, then the record files.
    fds: Vec<RawFd>,
    rng: ChaCha8Rng,
    out: WorkerResult,
    op: u32,
    /// When the run started (CLOCK_MONOTONIC, ns).
    start: u64,
    /// The cells the current holding covers, as it found (shared) or left (exclusive) them.
    seen: Vec<(u32, u32)>,
}

impl Worker<'_> {
    fn writer_id(&self) -> u32 {
        (self.cfg.host_index + 1) << 16 | (self.idx + 1)
    }

    fn find(&mut self, mut f: Finding) {
        f.after_ms =
            (crate::actor::protocol::monotonic_ns().saturating_sub(self.start)) as f64 / 1e6;
        f.operations_before = (0..self.table.len)
            .map(|j| self.table.slot(j).ops.load(SeqCst))
            .sum();
        if self.out.findings.len() < KEEP_FINDINGS {
            self.out.findings.push(f);
        } else {
            self.out.findings_dropped += 1;
        }
    }

    fn counts(&mut self, m: Mechanism) -> &mut MechCounts {
        let i = self
            .out
            .mechanisms
            .iter()
            .position(|c| c.mechanism == m)
            .unwrap_or(0);
        &mut self.out.mechanisms[i]
    }

    /// A random request.
    fn choose(&mut self) -> Packed {
        let mechs = &self.cfg.mechanisms;
        let m = mechs[self.rng.random_range(0..mechs.len())];
        let record = m != Mechanism::Flock;
        let file = self.rng.random_range(0..FILES);
        let exclusive = self.rng.random_range(0..10) < 6;
        let blocking = self.rng.random_range(0..2) == 0;
        let (start, end) = if !record {
            (0, END_OF_FILE)
        } else {
            // Cell-aligned ranges (adjacent ones share a boundary), some to
            // the end of the file, some one byte off (overlapping or not
            // by one byte).
            let k = self.rng.random_range(0..CELLS as u64);
            let n = self.rng.random_range(1..=3u64);
            let mut start = k * CELL;
            let mut end = if self.rng.random_range(0..10) == 0 {
                END_OF_FILE
            } else {
                (start + n * CELL).min(REGION)
            };
            match self.rng.random_range(0..10) {
                0 if start > 0 => start -= 1,
                1 => start += 1,
                2 if end < REGION => end += 1,
                3 if end != END_OF_FILE => end -= 1,
                _ => {}
            }
            (start, end)
        };
        self.op = self.op.wrapping_add(1);
        Packed {
            exclusive,
            record,
            file,
            start,
            end,
            mech: mech_code(m),
            blocking,
            op: self.op,
        }
    }

    fn fd_of(&self, p: &Packed) -> RawFd {
        self.fds[(p.record as usize) * FILES as usize + p.file as usize]
    }

    fn me(&self, p: &Packed, since: u64) -> Holding {
        p.holding(&self.cfg.host, self.idx, self.pid, since)
    }

    /// One request, and if granted: register, check, touch the cells, unregister, unlock.
    fn op(&mut self) {
        self.table
            .slot(self.idx as usize)
            .ops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.choose();
        let mech = mech_of(p.mech);
        let fd = self.fd_of(&p);
        {
            let c = self.counts(mech);
            c.requests += 1;
            c.exclusive += p.exclusive as u64;
            c.blocking += p.blocking as u64;
        }
        let t0 = crate::actor::protocol::monotonic_ns();
        if p.blocking {
            ALARMED.store(0, SeqCst);
            set_timer(self.cfg.wait_bound_ms);
        }
        let r = lock_call(fd, &p, Some(p.exclusive), p.blocking);
        if p.blocking {
            set_timer(0);
            let us = (crate::actor::protocol::monotonic_ns() - t0) / 1000;
            self.counts(mech).record_wait(us);
        }
        match r {
            Ok(()) => self.counts(mech).granted += 1,
            Err(e) if !p.blocking && (e == libc::EAGAIN || e == libc::EACCES) => {
                let c = self.counts(mech);
                c.refused += 1;
                c.refused_exclusive += p.exclusive as u64;
                return;
            }
            Err(libc::EINTR) if p.blocking && ALARMED.load(SeqCst) == 1 => {
                let detail = format!(
                    "a blocking request was still waiting after {} ms",
                    self.cfg.wait_bound_ms
                );
                let me = self.me(&p, realtime_ns());
                self.find(Finding::new(FindingKind::WaitBound, me, None, detail));
                return;
            }
            Err(e) => {
                let detail = format!("the lock request failed with {}", errno_name(e));
                return self.error(&p, realtime_ns(), detail);
            }
        }
        // Granted: publish, then look at everyone else's.
        let since = realtime_ns();
        let word = p.pack();
        let mine = self.table.slot(self.idx as usize);
        mine.since_ns.store(since, SeqCst);
        mine.word.store(word, SeqCst);
        for j in 0..self.table.len {
            if j == self.idx as usize {
                continue;
            }
            let s = self.table.slot(j);
            let w = s.word.load(SeqCst);
            if let Some(o) = Packed::unpack(w) {
                if o.conflicts(&p) {
                    let other = o.holding(
                        &self.cfg.host,
                        j as u32,
                        s.pid.load(SeqCst) as i32,
                        s.since_ns.load(SeqCst),
                    );
                    let me = self.me(&p, since);
                    let detail = format!(
                        "granted while another worker held an incompatible lock: {} and {}",
                        me.describe(),
                        other.describe()
                    );
                    self.find(Finding::new(FindingKind::Overlap, me, Some(other), detail));
                }
            }
        }
        self.touch_cells(fd, &p, since);
        if self.rng.random_range(0..8) == 0 {
            // SAFETY: plain system call.
            unsafe { libc::sched_yield() };
        }
        self.check_cells(fd, &p, since);
        mine.word.store(0, SeqCst);
        if let Err(e) = lock_call(fd, &p, None, false) {
            self.error(
                &p,
                since,
                format!("unlocking failed with {}", errno_name(e)),
            );
        }
    }

    fn cell_base(&self, p: &Packed) -> usize {
        ((p.record as usize) * FILES as usize + p.file as usize) * CELLS
    }

    /// The cells `[first, last)` of `fd`, as (sequence, writer) pairs.
    fn read_cells(&mut self, fd: RawFd, first: usize, last: usize) -> Result<Vec<(u32, u32)>, i32> {
        let mut buf = vec![0u8; (last - first) * CELL as usize];
        // SAFETY: reading into a buffer of buf.len() bytes.
        let n = unsafe {
            libc::pread(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                (first as u64 * CELL) as libc::off_t,
            )
        };
        if n < 0 {
            return Err(errno());
        }
        // A short read (a file shorter than the region) reads as zeros.
        Ok(buf
            .chunks_exact(CELL as usize)
            .map(|c| {
                (
                    u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect())
    }

    /// What a holder saw in its cells when it took them, per op.
    fn touch_cells(&mut self, fd: RawFd, p: &Packed, since: u64) {
        let (first, last) = p.cells();
        self.seen.clear();
        if first >= last {
            return;
        }
        let cells = match self.read_cells(fd, first, last) {
            Ok(c) => c,
            Err(e) => return self.io_error(p, since, "reading the cells", e),
        };
        if !p.exclusive {
            self.seen = cells;
            return;
        }
        let me = self.writer_id();
        let new: Vec<(u32, u32)> = cells.iter().map(|(s, _)| (s.wrapping_add(1), me)).collect();
        let mut buf = Vec::with_capacity(new.len() * CELL as usize);
        for (s, w) in &new {
            buf.extend_from_slice(&s.to_le_bytes());
            buf.extend_from_slice(&w.to_le_bytes());
        }
        // SAFETY: writing buf.len() bytes from buf.
        let n = unsafe {
            libc::pwrite(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                (first as u64 * CELL) as libc::off_t,
            )
        };
        if n != buf.len() as isize {
            let e = if n < 0 { errno() } else { libc::EIO };
            return self.io_error(p, since, "writing the cells", e);
        }
        let base = self.cell_base(p);
        for c in first..last {
            self.out.cell_writes[base + c] += 1;
        }
        self.seen = new;
    }

    /// The cells must be as the holder left them (exclusive) or found them (shared).
    fn check_cells(&mut self, fd: RawFd, p: &Packed, since: u64) {
        let (first, last) = p.cells();
        if first >= last || self.seen.len() != last - first {
            return;
        }
        let now = match self.read_cells(fd, first, last) {
            Ok(c) => c,
            Err(e) => return self.io_error(p, since, "reading the cells again", e),
        };
        for (i, (was, is)) in self.seen.clone().iter().zip(&now).enumerate() {
            if was != is {
                let me = self.me(p, since);
                let detail = format!(
                        "cell {} (bytes [{}, {})) of {} changed while {} held it: it was write {} by {}, it is write {} by {}",
                        first + i,
                        (first + i) as u64 * CELL,
                        (first + i + 1) as u64 * CELL,
                        me.file,
                        me.describe(),
                        was.0,
                        writer_text(was.1),
                        is.0,
                        writer_text(is.1)
                    );
                self.find(Finding::new(
                    FindingKind::ChangedUnderLock,
                    me,
                    None,
                    detail,
                ));
                return;
            }
        }
    }

    fn io_error(&mut self, p: &Packed, since: u64, what: &str, e: i32) {
        self.error(
            p,
            since,
            format!("{what} under the lock failed with {}", errno_name(e)),
        );
    }

    /// An unexpected error: counted, and a finding.
    fn error(&mut self, p: &Packed, since: u64, detail: String) {
        self.counts(mech_of(p.mech)).errors += 1;
        let me = self.me(p, since);
        self.find(Finding::new(FindingKind::Error, me, None, detail));
    }
}

/// `host #0 worker 3`, from a writer id.
pub fn writer_text(w: u32) -> String {
    let (host, worker) = (w >> 16, w & 0xffff);
    if host == 0 {
        "nobody".into()
    } else {
        format!("host #{} worker {}", host - 1, worker.saturating_sub(1))
    }
}

/// The worker process: waits for `go` (end of file on `go`), runs, writes
/// its result to `out`, exits.
fn worker_main(cfg: &AgentConfig, idx: u32, table: &Table, go: RawFd, out: RawFd) -> ! {
    // SAFETY: plain system calls in the forked child.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    install_alarm();
    let pid = std::process::id() as i32;
    table.slot(idx as usize).pid.store(pid as u64, SeqCst);
    let mut fds = Vec::new();
    for record in [false, true] {
        for i in 0..FILES {
            let path = cfg.dir.join(file_name(record, i));
            let c = match std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
                Ok(c) => c,
                Err(_) => die("a stress file path holds a NUL byte"),
            };
            // SAFETY: open with a valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                die(&format!(
                    "opening {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            fds.push(fd);
        }
    }
    let mut w = Worker {
        cfg,
        idx,
        pid,
        table,
        fds,
        rng: ChaCha8Rng::seed_from_u64(
            cfg.seed ^ (u64::from(cfg.host_index) << 40) ^ (u64::from(idx) << 20) ^ 0x5eed,
        ),
        out: WorkerResult {
            worker: idx,
            pid,
            mechanisms: cfg.mechanisms.iter().map(|m| MechCounts::new(*m)).collect(),
            cell_writes: vec![0; 2 * FILES as usize * CELLS],
            ..WorkerResult::default()
        },
        op: 0,
        start: 0,
        seen: Vec::new(),
    };
    // Wait for go: the agent closes the pipe's write end.
    let mut b = [0u8; 1];
    // SAFETY: reading one byte into b.
    while unsafe { libc::read(go, b.as_mut_ptr().cast(), 1) } != 0 {
        if errno() != libc::EINTR {
            break;
        }
    }
    let start = crate::actor::protocol::monotonic_ns();
    w.start = start;
    let deadline = start + cfg.duration_ms * 1_000_000;
    while crate::actor::protocol::monotonic_ns() < deadline {
        w.op();
    }
    w.out.elapsed_ms = (crate::actor::protocol::monotonic_ns() - start) as f64 / 1e6;
    let text = serde_json::to_vec(&w.out).unwrap_or_default();
    // SAFETY: the pipe's write end, owned by this process from here on.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(out) });
    let _ = f.write_all(&text);
    drop(f);
    // SAFETY: ending the forked child without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

// ---------------------------------------------------------------------------
// The agent

/// The agent process (never returns).
pub fn main() -> ! {
    // SAFETY: plain system call.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    if input.by_ref().take(1 << 16).read_line(&mut line).is_err() || line.is_empty() {
        die("no configuration on stdin");
    }
    let cfg: AgentConfig = match serde_json::from_str(&line) {
        Ok(c) => c,
        Err(e) => die(&format!("bad configuration: {e}")),
    };
    if cfg.processes == 0 || cfg.processes > MAX_PROCESSES || cfg.mechanisms.is_empty() {
        die("bad configuration: processes or mechanisms out of range");
    }
    let table = Table::map(cfg.processes as usize);
    let mut go = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        die("pipe");
    }
    let mut children = Vec::new();
    for idx in 0..cfg.processes {
        let mut out = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(out.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            die("pipe");
        }
        // SAFETY: this process is single-threaded (the agent never starts a
        // thread), so the child may run anything.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            die(&format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: closing descriptors the worker must not hold.
            unsafe {
                libc::close(go[1]);
                libc::close(out[0]);
                libc::close(0);
                libc::close(1);
            }
            for (_, r) in &children {
                // SAFETY: the other workers' read ends.
                unsafe { libc::close(*r) };
            }
            worker_main(&cfg, idx, &table, go[0], out[1]);
        }
        // SAFETY: the parent does not write to the worker's pipe.
        unsafe { libc::close(out[1]) };
        children.push((pid, out[0]));
    }
    // SAFETY: the parent does not read `go`.
    unsafe { libc::close(go[0]) };
    let ready = AgentReady {
        pid: std::process::id() as i32,
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    };
    let mut stdout = std::io::stdout().lock();
    let said = serde_json::to_string(&ready).unwrap_or_default();
    if writeln!(stdout, "{said}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        die("the harness went away");
    }
    line.clear();
    let went = input.read_line(&mut line).is_ok()
        && serde_json::from_str::<String>(line.trim()).is_ok_and(|g| g == "go");
    if !went {
        // The harness gave up: the workers must not start.
        for (pid, _) in &children {
            // SAFETY: killing our own children.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
    // SAFETY: closing the write end of `go` starts the workers.
    unsafe { libc::close(go[1]) };
    let mut result = AgentResult {
        host: cfg.host.clone(),
        ..AgentResult::default()
    };
    for (idx, (pid, r)) in children.iter().enumerate() {
        let mut text = Vec::new();
        // SAFETY: the read end of this worker's pipe, owned here.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(*r) });
        let _ = f.read_to_end(&mut text);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(*pid, &mut status, 0) };
        match serde_json::from_slice::<WorkerResult>(&text) {
            Ok(w) => result.workers.push(w),
            Err(_) if !went => {}
            Err(_) => result.problems.push(format!(
                "worker {idx} (pid {pid}) on host {} ended without a result ({})",
                cfg.host,
                describe_status(status)
            )),
        }
    }
    if !went {
        result.problems.push("the harness did not say go".into());
    }
    let said = serde_json::to_string(&result).unwrap_or_default();
    let _ = writeln!(stdout, "{said}").and_then(|()| stdout.flush());
    std::process::exit(0)
}

fn describe_status(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(exclusive: bool, start: u64, end: u64) -> Packed {
        Packed {
            exclusive,
            record: true,
            file: 1,
            start,
            end,
            mech: 1,
            blocking: false,
            op: 7,
        }
    }

    #[test]
    fn packing_round_trips() {
        for x in [p(true, 0, END_OF_FILE), p(false, 63, 64), p(true, 9, 17)] {
            assert_eq!(Packed::unpack(x.pack()), Some(x));
        }
        assert_eq!(Packed::unpack(0), None);
    }

    #[test]
    fn conflicts_need_overlap_and_a_writer() {
        assert!(p(true, 0, 8).conflicts(&p(false, 7, 9)));
        assert!(!p(true, 0, 8).conflicts(&p(true, 8, 16)), "adjacent");
        assert!(!p(false, 0, 8).conflicts(&p(false, 0, 8)), "both shared");
        assert!(p(true, 60, END_OF_FILE).conflicts(&p(true, 63, 64)));
        assert!(!p(true, 0, 64).conflicts(&p(true, 64, END_OF_FILE)));
        let mut f = p(true, 0, 8);
        f.record = false;
        assert!(
            !f.conflicts(&p(true, 0, 8)),
            "flock and record locks are apart"
        );
    }

    #[test]
    fn cells_are_the_whole_ones_inside() {
        assert_eq!(p(true, 0, 8).cells(), (0, 1));
        assert_eq!(p(true, 7, 17).cells(), (1, 2));
        assert_eq!(p(true, 9, 15).cells(), (2, 2));
        assert_eq!(p(true, 56, END_OF_FILE).cells(), (7, 8));
    }

    #[test]
    fn waits_fall_into_power_of_two_buckets() {
        let mut c = MechCounts::new(Mechanism::Posix);
        c.record_wait(0);
        c.record_wait(1);
        c.record_wait(1000);
        assert_eq!(c.wait_histogram[0], 1);
        assert_eq!(c.wait_histogram[1], 1);
        assert_eq!(c.wait_histogram[10], 1);
        assert_eq!(c.wait_max_us, 1000);
    }
}
