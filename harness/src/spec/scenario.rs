//! The scenario language: the types a YAML file in `scenarios/` is read into.
//!
//! A scenario describes one behaviour. Its steps are written once in terms of
//! "lock exclusive / shared / unlock / try / wait / test" and are run for every
//! lock mechanism the scenario applies to; `plan` maps them onto flock(2),
//! POSIX record locks or OFD locks. The format is documented, with examples,
//! in `scenarios/README.md`; the JSON Schema editors use is generated from
//! these types (`lockcheck schema`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::spec::loc::Located;

/// A lock mechanism a scenario can run with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// flock(2): whole-file locks owned by the open file description.
    Flock,
    /// POSIX record locks: fcntl(2) F_SETLK / F_SETLKW / F_GETLK, owned by the process.
    Posix,
    /// Open file description locks: fcntl(2) F_OFD_SETLK / F_OFD_SETLKW / F_OFD_GETLK.
    Ofd,
    /// File leases: fcntl(2) F_SETLEASE / F_GETLEASE (opt-in: only scenarios that list it).
    Lease,
    /// The lock-file-with-PID pattern: create `PATH.lock` with O_CREAT|O_EXCL, write the
    /// PID, treat it as stale when kill(PID, 0) fails; unlock removes it (opt-in).
    Pidfile,
    /// A plain lock file (Git's `index.lock`): create `PATH.lock` with O_CREAT|O_EXCL;
    /// unlock removes it; nothing ever detects a stale one (opt-in).
    Lockfile,
}

/// A family of filesystems whose locking legally differs from local Linux in
/// documented ways (`divergent-on`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FsFamily {
    /// SMB2/3 (the kernel's `cifs`/`smb3` client): byte-range locks belong to
    /// the file handle and follow Windows semantics (no conversion, no split,
    /// unlock must match a locked range exactly, a handle's own locks conflict).
    Smb,
    /// NFS, any version (`nfs`, `nfs4`).
    Nfs,
    /// FUSE filesystems (`fuse`, `fuse.*`, `fuseblk`).
    Fuse,
}

impl FsFamily {
    /// The family of a mountinfo filesystem type, if it has one.
    pub fn of_fs_type(fs_type: &str) -> Option<FsFamily> {
        match fs_type {
            "cifs" | "smb3" => Some(FsFamily::Smb),
            t if t.starts_with("nfs") => Some(FsFamily::Nfs),
            t if t == "fuseblk" || t == "fuse" || t.starts_with("fuse.") => Some(FsFamily::Fuse),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            FsFamily::Smb => "smb",
            FsFamily::Nfs => "nfs",
            FsFamily::Fuse => "fuse",
        }
    }
}

impl Mechanism {
    /// Every mechanism.
    pub(crate) const ALL: [Mechanism; 6] = [
        Mechanism::Flock,
        Mechanism::Posix,
        Mechanism::Ofd,
        Mechanism::Lease,
        Mechanism::Pidfile,
        Mechanism::Lockfile,
    ];
    /// The kernel lock mechanisms a scenario runs with unless it says otherwise.
    pub const DEFAULT: [Mechanism; 3] = [Mechanism::Flock, Mechanism::Posix, Mechanism::Ofd];

    /// Its name in scenario files, reports and on the command line: `flock`,
    /// `posix`, `ofd`, `lease`, `pidfile` or `lockfile`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Flock => "flock",
            Mechanism::Posix => "posix",
            Mechanism::Ofd => "ofd",
            Mechanism::Lease => "lease",
            Mechanism::Pidfile => "pidfile",
            Mechanism::Lockfile => "lockfile",
        }
    }

    /// Whether a scenario runs with it without listing it.
    pub fn is_default(self) -> bool {
        Mechanism::DEFAULT.contains(&self)
    }

    /// Whether the mechanism locks byte ranges (the others lock whole files).
    pub(crate) fn has_ranges(self) -> bool {
        matches!(self, Mechanism::Posix | Mechanism::Ofd)
    }

    /// Whether the mechanism can be asked about a lock (F_GETLK, F_GETLEASE).
    pub(crate) fn has_test(self) -> bool {
        matches!(self, Mechanism::Posix | Mechanism::Ofd | Mechanism::Lease)
    }

    /// Whether a lock request can wait for the lock.
    pub(crate) fn can_wait(self) -> bool {
        matches!(self, Mechanism::Flock | Mechanism::Posix | Mechanism::Ofd)
    }

    /// Whether it has shared locks.
    pub(crate) fn has_shared(self) -> bool {
        !matches!(self, Mechanism::Pidfile | Mechanism::Lockfile)
    }

    /// Whether the kernel keeps the lock (and releases it when its holder dies).
    pub(crate) fn is_kernel_lock(self) -> bool {
        !matches!(self, Mechanism::Pidfile | Mechanism::Lockfile)
    }

    /// The errno values that mean "someone else holds a conflicting lock".
    pub(crate) fn conflict_errnos(self) -> &'static [i32] {
        match self {
            Mechanism::Flock | Mechanism::Posix | Mechanism::Ofd => &[libc::EAGAIN, libc::EACCES],
            Mechanism::Lease => &[libc::EAGAIN],
            Mechanism::Pidfile | Mechanism::Lockfile => &[libc::EEXIST],
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown mechanism `{s}`; expected one of flock, posix, ofd, lease, pidfile, lockfile"
                )
            })
    }
}

/// How bad it is when a scenario fails on a target.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Mutual exclusion or data can be lost: applications relying on this are unsafe.
    #[default]
    Unsafe,
    /// Legal, but differs from local Linux semantics (for example NFS emulating flock with POSIX locks).
    Divergent,
    /// Worth knowing; no application is expected to break.
    Info,
}

impl Severity {
    /// Its name in scenario files and reports: `unsafe`, `divergent` or `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unsafe => "unsafe",
            Severity::Divergent => "divergent",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The family a scenario belongs to; reports group results by family.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Who may hold a lock at the same time as whom.
    Exclusion,
    /// Byte-range arithmetic of record locks.
    ByteRanges,
    /// Which open modes allow which lock types.
    OpenMode,
    /// Waiting for a lock and being woken.
    Blocking,
    /// Deadlock detection.
    Deadlock,
    /// What closing a descriptor releases.
    ReleaseOnClose,
    /// Locks across fork, exec and threads.
    Inheritance,
    /// Open file description lock semantics.
    Ofd,
    /// flock and fcntl locks on the same file.
    Interplay,
    /// What F_GETLK and /proc/locks report.
    Reporting,
    /// Data written under a lock.
    Integrity,
    /// Lock files as applications use them.
    LockFiles,
    /// File leases.
    Leases,
    /// Crashed, hung and signalled lock holders.
    Faults,
    /// Lock calls with invalid arguments, refused with the documented errors.
    Arguments,
    /// Found by differential fuzzing (`lockcheck fuzz`).
    Fuzz,
}

impl Family {
    /// Its name in scenario files and reports (`byte-ranges`, `release-on-close`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Exclusion => "exclusion",
            Family::ByteRanges => "byte-ranges",
            Family::OpenMode => "open-mode",
            Family::Blocking => "blocking",
            Family::Deadlock => "deadlock",
            Family::ReleaseOnClose => "release-on-close",
            Family::Inheritance => "inheritance",
            Family::Ofd => "ofd",
            Family::Interplay => "interplay",
            Family::Reporting => "reporting",
            Family::Integrity => "integrity",
            Family::LockFiles => "lock-files",
            Family::Leases => "leases",
            Family::Faults => "faults",
            Family::Arguments => "arguments",
            Family::Fuzz => "fuzz",
        }
    }

    /// A heading for reports.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Family::Exclusion => "Exclusion",
            Family::ByteRanges => "Byte ranges",
            Family::OpenMode => "Open mode",
            Family::Blocking => "Blocking",
            Family::Deadlock => "Deadlock",
            Family::ReleaseOnClose => "Release on close",
            Family::Inheritance => "Inheritance",
            Family::Ofd => "OFD semantics",
            Family::Interplay => "flock and fcntl interplay",
            Family::Reporting => "Reporting",
            Family::Integrity => "Data integrity",
            Family::LockFiles => "Lock files",
            Family::Leases => "Leases",
            Family::Faults => "Faults",
            Family::Arguments => "Argument errors",
            Family::Fuzz => "Found by fuzzing",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access mode an `open` step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Access {
    /// O_RDONLY
    #[serde(alias = "r")]
    Read,
    /// O_WRONLY
    #[serde(alias = "w")]
    Write,
    /// O_RDWR (the default)
    #[default]
    #[serde(alias = "rw")]
    ReadWrite,
}

impl Access {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
        }
    }
}

/// The kind of lock a step takes or asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LockMode {
    /// LOCK_EX / F_WRLCK
    #[serde(alias = "ex", alias = "write")]
    Exclusive,
    /// LOCK_SH / F_RDLCK
    #[serde(alias = "sh", alias = "read")]
    Shared,
}

impl LockMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LockMode::Exclusive => "exclusive",
            LockMode::Shared => "shared",
        }
    }
}

/// Where a record lock's `start` counts from (`l_whence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Whence {
    /// SEEK_SET: from the beginning of the file (the default).
    #[default]
    Set,
    /// SEEK_CUR: from the descriptor's current offset (moved by `read` and
    /// `write` steps without an `offset`).
    Cur,
    /// SEEK_END: from the end of the file, as the calling client sees its size.
    End,
    /// A value that is none of the three (99): fcntl(2) must refuse it with EINVAL.
    Invalid,
}

impl Whence {
    /// The `l_whence` value.
    pub(crate) fn l_whence(self) -> i16 {
        (match self {
            Whence::Set => libc::SEEK_SET,
            Whence::Cur => libc::SEEK_CUR,
            Whence::End => libc::SEEK_END,
            Whence::Invalid => 99,
        }) as i16
    }
}

/// A lock call made wrong on purpose, for an `invalid` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum InvalidCall {
    /// The mechanism's lock call on descriptor -1 (EBADF).
    ClosedDescriptor,
    /// fcntl(2) lock commands with a NULL `struct flock *` (EFAULT); record locks only.
    NullPointer,
    /// An fcntl(2) command that does not exist, or a flock(2) operation that
    /// is not LOCK_SH, LOCK_EX or LOCK_UN (LOCK_SH|LOCK_EX) (EINVAL).
    BadCommand,
    /// A `struct flock` whose `l_type` is none of F_RDLCK, F_WRLCK, F_UNLCK (EINVAL); record locks only.
    BadType,
    /// flock(2) with LOCK_NB and no operation (EINVAL); flock only.
    NonblockAlone,
}

/// A lease as F_GETLEASE reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LeaseMode {
    /// F_UNLCK: no lease (or a lease being broken to nothing).
    None,
    /// F_RDLCK
    Read,
    /// F_WRLCK
    Write,
}

impl LeaseMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeaseMode::None => "none",
            LeaseMode::Read => "read",
            LeaseMode::Write => "write",
        }
    }

    pub(crate) fn l_type(self) -> i64 {
        i64::from(match self {
            LeaseMode::None => libc::F_UNLCK,
            LeaseMode::Read => libc::F_RDLCK,
            LeaseMode::Write => libc::F_WRLCK,
        })
    }
}

/// A second way into the same filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Via {
    /// A bind mount of the trial's directory: another mount of the same filesystem
    /// (needs privileges; the trial is skipped with the reason otherwise).
    SecondMount,
    /// The same directory in the storage behind the target (a FUSE
    /// filesystem's source directory); skipped on targets without one.
    BackingStore,
}

/// What a scenario needs from its target besides a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Hash)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Requirement {
    /// A file named `lower-file` in the trial directory that is in an
    /// overlay's lower layer when the trial starts (lockcheck's overlay target).
    LowerFile,
}

/// A duration written as `500ms`, `2s`, `1m 30s` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Dur(pub Duration);

/// A whole number of seconds as a duration (scenario files may write one).
fn secs_u64<E: de::Error>(v: u64) -> Result<Duration, E> {
    Ok(Duration::from_secs(v))
}

fn secs_i64<E: de::Error>(v: i64) -> Result<Duration, E> {
    u64::try_from(v)
        .map(Duration::from_secs)
        .map_err(|_| E::custom("a duration cannot be negative"))
}

fn secs_f64<E: de::Error>(v: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| E::custom("a duration must be a non-negative number of seconds"))
}

fn duration_text<E: de::Error>(v: &str, example: &str) -> Result<Duration, E> {
    humantime::parse_duration(v.trim()).map_err(|e| {
        E::custom(format!(
            "`{v}` is not a duration ({e}); write for example {example}"
        ))
    })
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `500ms` or `2s`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                secs_u64(v).map(Dur)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                secs_i64(v).map(Dur)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                secs_f64(v).map(Dur)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                duration_text(v, "`500ms` or `2s`").map(Dur)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: `500ms`, `2s`, `1m 30s`, or a number of seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

/// How long a call may take to complete: a duration, or a number of the
/// target's leases (`3 leases`) for what a file server only does when a
/// client's lease runs out (lockcheck's `--lease`, 90 s by default: the
/// Linux NFS server's lease and grace period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    Fixed(Duration),
    Leases(f64),
}

impl<'de> Deserialize<'de> for Bound {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bound;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `2s`, or a number of leases such as `3 leases`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
                secs_u64(v).map(Bound::Fixed)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
                secs_i64(v).map(Bound::Fixed)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bound, E> {
                secs_f64(v).map(Bound::Fixed)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bound, E> {
                let t = v.trim();
                if let Some(n) = t.strip_suffix("leases").or_else(|| t.strip_suffix("lease")) {
                    return match n.trim().parse::<f64>() {
                        Ok(x) if x > 0.0 && x <= 20.0 => Ok(Bound::Leases(x)),
                        _ => Err(E::custom(format!(
                            "`{v}`: the number of leases must be above 0 and at most 20"
                        ))),
                    };
                }
                duration_text(v, "`2s` or `3 leases`").map(Bound::Fixed)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Bound {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Bound".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration (`500ms`, `2s`, a number of seconds) or a number of the target's leases (`3 leases`; lockcheck --lease, 90 s by default).",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]"},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

/// One scenario file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(title = "lockcheck scenario")]
pub struct Scenario {
    /// Unique kebab-case name; must equal the file name without `.yaml`.
    pub name: Located<String>,
    /// What the scenario checks and which applications rely on it.
    pub(crate) summary: String,
    /// The man page section, POSIX clause or reference-suite case the expected behaviour rests on.
    pub(crate) reference: String,
    /// The family the scenario belongs to; reports group results by family.
    pub family: Located<Family>,
    /// How bad a failure is (default `unsafe`).
    #[serde(default)]
    pub severity: Severity,
    /// The mechanisms the scenario runs with (default: flock, posix, ofd; lease and
    /// pidfile run only where listed).
    #[serde(default)]
    pub(crate) mechanisms: Option<Located<Vec<Located<Mechanism>>>>,
    /// Why the scenario does not apply to a mechanism left out of `mechanisms`
    /// (a default reason is derived from the steps when not given).
    #[serde(default)]
    pub(crate) not_applicable: BTreeMap<Mechanism, String>,
    /// Mechanisms that cannot meet this expectation by design (a PID file cannot
    /// tell a reused PID from its holder): their failure is reported as an
    /// expected failure of the method, with this reason, not as a failure of the target.
    #[serde(default)]
    pub(crate) known_failures: BTreeMap<Mechanism, String>,
    /// Filesystem families where the expectation legally differs, each with why
    /// and the reference it rests on: `{smb: "..."}`. There a failure that only
    /// refused, delayed or over-reported a lock is reported **divergent** with
    /// this reason; a lock granted that should have been refused, or lost data,
    /// keeps the scenario's severity.
    #[serde(default)]
    pub(crate) divergent_on: BTreeMap<FsFamily, String>,
    /// What the target must provide; elsewhere the scenario is skipped with
    /// the reason.
    #[serde(default)]
    pub(crate) requires: Vec<Requirement>,
    /// The actors: each is its own process. `name`, `{name: n, host: h}`, or `w[1..16]` for w1 … w16.
    pub(crate) actors: Located<Vec<Located<ActorDecl>>>,
    /// Default timeout of every step (default 5s).
    #[serde(default)]
    pub(crate) timeout: Option<Located<Dur>>,
    /// The steps, run in order.
    pub(crate) steps: Located<Vec<Located<Step>>>,
    /// Run the steps this many times in a row (default 1, at most 1000), for a
    /// race that shows only once in many tries. `{round}` in a path of
    /// `open`, `unlink` or `mkdir` is the round's number (from 1), so each
    /// round can have files of its own; each round must close what it opened.
    /// Reports number the steps through all rounds.
    #[serde(default)]
    pub(crate) rounds: Option<Located<u32>>,
}

/// The most rounds a scenario may ask for.
pub(crate) const MAX_ROUNDS: u32 = 1000;

/// In a path, the number of the round.
const ROUND: &str = "{round}";

impl Scenario {
    /// The steps of every round, one after the other (a scenario without
    /// `rounds` is one round). Positions stay those of the file.
    pub(crate) fn expand_rounds(&mut self) {
        let n = self.rounds.as_ref().map_or(1, |r| r.value).max(1);
        let one = std::mem::take(&mut self.steps.value);
        self.steps.value = (1..=n)
            .flat_map(|r| {
                one.iter()
                    .map(move |st| Located::new(st.value.clone().in_round(r), st.pos))
            })
            .collect();
    }
}

impl Step {
    /// The step as round `r` runs it: `{round}` in its path replaced.
    fn in_round(mut self, r: u32) -> Step {
        let path = match &mut self {
            Step::Open(o) => &mut o.path,
            Step::Unlink(u) => &mut u.path,
            Step::Mkdir(m) => &mut m.path,
            Step::Truncate(t) => &mut t.path,
            Step::Mkfifo(m) => &mut m.path,
            _ => return self,
        };
        if path.value.contains(ROUND) {
            path.value = path.value.replace(ROUND, &r.to_string());
        }
        self
    }
}

/// An actor declaration.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub(crate) enum ActorDecl {
    /// `name`, or `prefix[1..N]` for N actors prefix1 … prefixN.
    Name(String),
    /// An actor placed on a named host (multi-client targets).
    Placed {
        name: String,
        /// The host the actor runs on; a target with only one host skips the scenario.
        host: String,
    },
}

impl ActorDecl {
    pub(crate) fn name(&self) -> &str {
        match self {
            ActorDecl::Name(n) | ActorDecl::Placed { name: n, .. } => n,
        }
    }

    pub(crate) fn host(&self) -> Option<&str> {
        match self {
            ActorDecl::Name(_) => None,
            ActorDecl::Placed { host, .. } => Some(host),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlacedActor {
    name: String,
    host: String,
}

impl<'de> Deserialize<'de> for ActorDecl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActorDecl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an actor name or {name: NAME, host: HOST}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ActorDecl, E> {
                Ok(ActorDecl::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ActorDecl, A::Error> {
                let p = PlacedActor::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ActorDecl::Placed {
                    name: p.name,
                    host: p.host,
                })
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Several actors at once: a list of names (ranges such as `w[1..4]` allowed) or `all`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub(crate) enum ActorSet {
    /// `all`: every actor declared in `actors`.
    All(AllKeyword),
    /// Actor names.
    List(Vec<Located<String>>),
}

/// The keyword `all`.
#[derive(Debug, Clone, Copy, JsonSchema)]
pub(crate) enum AllKeyword {
    #[serde(rename = "all")]
    All,
}

impl<'de> Deserialize<'de> for ActorSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActorSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a list of actor names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ActorSet, E> {
                if v == "all" {
                    Ok(ActorSet::All(AllKeyword::All))
                } else {
                    Err(E::custom(format!(
                        "`actors` takes a list such as [{v}] or the word `all`; for one actor write `actor: {v}`"
                    )))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ActorSet, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<Located<String>>()? {
                    names.push(n);
                }
                Ok(ActorSet::List(names))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Declares a step struct with the fields every actor step shares.
macro_rules! step_struct {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub(crate) struct $name {
            /// The actor that performs the step.
            #[serde(default)]
            pub(crate) actor: Option<Located<String>>,
            /// Several actors perform the step at the same moment (a race): a list or `all`.
            #[serde(default)]
            pub(crate) actors: Option<Located<ActorSet>>,
            /// What must be observed (default `ok`).
            #[serde(default)]
            pub(crate) expect: Option<Located<Expect>>,
            /// How long the step may take before it fails (default: the scenario's `timeout`).
            #[serde(default)]
            pub(crate) timeout: Option<Located<Dur>>,
            /// Why this step matters; shown in reports when it fails.
            #[serde(default)]
            pub(crate) note: Option<String>,
            /// Errno values meaning "the target does not support this": the trial is
            /// then skipped with that reason instead of failing.
            #[serde(default)]
            pub(crate) unsupported: Vec<Located<String>>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl StepCommon for $name {
            fn common(&self) -> Common<'_> {
                Common {
                    actor: self.actor.as_ref(),
                    actors: self.actors.as_ref(),
                    expect: self.expect.as_ref(),
                    timeout: self.timeout.as_ref(),
                    note: self.note.as_deref(),
                    unsupported: &self.unsupported,
                }
            }
        }
    };
}

/// The fields every step has, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Common<'a> {
    pub(crate) actor: Option<&'a Located<String>>,
    pub(crate) actors: Option<&'a Located<ActorSet>>,
    pub(crate) expect: Option<&'a Located<Expect>>,
    pub(crate) timeout: Option<&'a Located<Dur>>,
    pub(crate) note: Option<&'a str>,
    pub(crate) unsupported: &'a [Located<String>],
}

pub(crate) trait StepCommon {
    fn common(&self) -> Common<'_>;
}

step_struct!(
    /// Open a file (path relative to the trial's scratch directory).
    OpenStep {
        /// The file, relative to the trial's scratch directory.
        path: Located<String>,
        /// `read`, `write` or `read-write` (default).
        #[serde(default)]
        mode: Access,
        /// O_CREAT
        #[serde(default)]
        create: bool,
        /// O_EXCL (with `create`)
        #[serde(default)]
        excl: bool,
        /// O_TRUNC
        #[serde(default)]
        trunc: bool,
        /// O_DIRECTORY: open a directory (with mode `read`).
        #[serde(default)]
        directory: bool,
        /// Close the descriptor on exec (default true); false keeps it across an `exec` step.
        #[serde(default = "yes")]
        cloexec: bool,
        /// Open through another way into the same filesystem.
        #[serde(default)]
        via: Option<Located<Via>>,
        /// The name later steps use for the descriptor (default: the path).
        #[serde(default, rename = "as")]
        as_name: Option<Located<String>>,
    }
);

fn yes() -> bool {
    true
}

step_struct!(
    /// Close a descriptor.
    CloseStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
    }
);

step_struct!(
    /// Duplicate a descriptor with dup(2): the copy shares the open file description.
    DupStep {
        /// The descriptor to duplicate (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// The name of the copy.
        #[serde(rename = "as")]
        as_name: Located<String>,
    }
);

step_struct!(
    /// Take a lock: exclusive or shared; try (default) or wait; optionally a byte range.
    LockStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// `exclusive` or `shared`.
        mode: Located<LockMode>,
        /// Wait for the lock (F_SETLKW, flock without LOCK_NB) instead of trying (the default).
        #[serde(default)]
        wait: bool,
        /// With `wait`: the call may wait, but must be granted (or fail as
        /// expected) within this time — for a lock that only comes free
        /// when something outside the scenario happens (a lease running out):
        /// a duration, or a number of leases (`3 leases`).
        #[serde(default)]
        within: Option<Located<Bound>>,
        /// First byte of the range (record locks; default 0).
        #[serde(default)]
        start: Option<Located<i64>>,
        /// Length of the range; 0 (the default) means to end of file and beyond.
        #[serde(default)]
        len: Option<Located<i64>>,
        /// Where `start` counts from: `set` (the default, the beginning of
        /// the file), `cur` (the descriptor's offset), `end` (the end of the
        /// file), or `invalid` (must fail with EINVAL).
        #[serde(default)]
        whence: Option<Located<Whence>>,
        /// Use this mechanism for this step instead of the trial's.
        #[serde(default)]
        mechanism: Option<Located<Mechanism>>,
    }
);

step_struct!(
    /// Release a lock (LOCK_UN, F_UNLCK), optionally of a byte range.
    UnlockStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// First byte of the range (record locks; default 0).
        #[serde(default)]
        start: Option<Located<i64>>,
        /// Length of the range; 0 (the default) means to end of file and beyond.
        #[serde(default)]
        len: Option<Located<i64>>,
        /// Where `start` counts from: `set` (the default, the beginning of
        /// the file), `cur` (the descriptor's offset), `end` (the end of the
        /// file), or `invalid` (must fail with EINVAL).
        #[serde(default)]
        whence: Option<Located<Whence>>,
        /// Use this mechanism for this step instead of the trial's.
        #[serde(default)]
        mechanism: Option<Located<Mechanism>>,
    }
);

step_struct!(
    /// Ask whether a lock could be placed (F_GETLK / F_OFD_GETLK) and who holds a conflicting one.
    TestStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// The lock to test for (default `exclusive`).
        #[serde(default)]
        mode: Option<Located<LockMode>>,
        /// First byte of the range (default 0).
        #[serde(default)]
        start: Option<Located<i64>>,
        /// Length of the range; 0 (the default) means to end of file and beyond.
        #[serde(default)]
        len: Option<Located<i64>>,
        /// Where `start` counts from: `set` (the default, the beginning of
        /// the file), `cur` (the descriptor's offset), `end` (the end of the
        /// file), or `invalid` (must fail with EINVAL).
        #[serde(default)]
        whence: Option<Located<Whence>>,
        /// Use this mechanism for this step instead of the trial's.
        #[serde(default)]
        mechanism: Option<Located<Mechanism>>,
        /// Ask from a new PID namespace: a child of the actor, PID 1 of a
        /// namespace of its own, makes the call on the inherited
        /// descriptor (xfstests generic/504). A holder it cannot see is
        /// reported with pid 0.
        #[serde(default)]
        pid_namespace: Option<Located<bool>>,
    }
);

step_struct!(
    /// Write bytes (at the current offset, or at `offset` with pwrite).
    WriteStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// The text to write.
        data: String,
        /// Write at this offset (pwrite) instead of the current position.
        #[serde(default)]
        offset: Option<Located<u64>>,
        /// Then fsync(2): the data must reach the storage (on NFS, the
        /// server); errors of write-back, such as a lost lock's EIO, show here.
        #[serde(default)]
        sync: bool,
        /// Write through a shared mmap(2) of the file instead (needs
        /// `offset`; the file must already reach past the bytes written);
        /// with `sync`, msync(2) then.
        #[serde(default)]
        mapped: bool,
    }
);

step_struct!(
    /// Read bytes (at the current offset, or at `offset` with pread); expect `{data: "..."}`.
    ReadStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// How many bytes to read at most.
        len: Located<u64>,
        /// Read at this offset (pread) instead of the current position.
        #[serde(default)]
        offset: Option<Located<u64>>,
        /// Read through a shared mmap(2) of the file instead (needs `offset`).
        #[serde(default)]
        mapped: bool,
    }
);

step_struct!(
    /// fork(2) inside the actor: a new actor that inherits the parent's descriptors (and flock/OFD locks).
    ForkStep {
        /// The name of the new actor.
        #[serde(rename = "as")]
        as_name: Located<String>,
    }
);

step_struct!(
    /// The actor exits normally, closing all its descriptors.
    ExitStep {
        /// Exit status (default 0).
        #[serde(default)]
        code: i32,
    }
);

step_struct!(
    /// Wait for an actor's blocked call (a `lock` with `expect: blocks`) to return, or check it still waits.
    AwaitStep {
        /// The call must complete within this time (default: the step
        /// timeout): a duration, or a number of leases (`3 leases`).
        #[serde(default)]
        within: Option<Located<Bound>>,
        /// With `expect: blocks`: the call must keep waiting for this long
        /// (a contender with a lock timeout behind a hung holder).
        #[serde(default, rename = "for")]
        for_: Option<Located<Dur>>,
    }
);

step_struct!(
    /// Fault: send a signal to an actor (default SIGKILL) and, for a fatal one, wait until it is gone.
    KillStep {
        /// The signal: `KILL` (default), `TERM`, `SIGINT`, ...
        #[serde(default)]
        signal: Option<Located<String>>,
    }
);

step_struct!(
    /// Remove a file (unlink(2)), path relative to the scratch directory.
    UnlinkStep {
        path: Located<String>,
    }
);

step_struct!(
    /// Rename a file (rename(2)), paths relative to the scratch directory.
    RenameStep {
        from: Located<String>,
        to: Located<String>,
    }
);

step_struct!(
    /// Create a symbolic link (symlink(2)) at `path`, relative to the scratch
    /// directory, holding `target` as written: lockcheck itself never
    /// follows one out of the trial directory (a later step through it is
    /// refused).
    SymlinkStep {
        target: Located<String>,
        path: Located<String>,
    }
);

step_struct!(
    /// Set a file's length by its path (truncate(2)), relative to the
    /// scratch directory: like an open for writing, it waits while a lease
    /// on the file is broken.
    TruncateStep {
        path: Located<String>,
        /// The new length in bytes (default 0).
        #[serde(default)]
        len: u64,
    }
);

step_struct!(
    /// Create a FIFO (mkfifo(3), mknod(2) with S_IFIFO), path relative to the scratch directory.
    MkfifoStep {
        path: Located<String>,
    }
);

step_struct!(
    /// Create a directory (mkdir(2)), path relative to the scratch directory.
    MkdirStep {
        path: Located<String>,
    }
);

step_struct!(
    /// Send a signal that does not end the actor (one it handles, or STOP/CONT);
    /// the actor stays, and a blocked call of it may be interrupted.
    SignalStep {
        /// The signal: `USR1`, `SIGALRM`, `STOP`, `CONT`, ...
        signal: Located<String>,
    }
);

step_struct!(
    /// Install a handler for a signal in the actor (sigaction), with or without SA_RESTART.
    HandleStep {
        /// The signal to catch.
        signal: Located<String>,
        /// SA_RESTART: interrupted calls are restarted instead of failing with EINTR.
        #[serde(default)]
        restart: bool,
    }
);

step_struct!(
    /// The actor replaces itself with execve(2) of a fresh actor: descriptors opened
    /// with `cloexec: false` (and dups) survive, the others are closed.
    ExecStep {}
);

step_struct!(
    /// A new thread in the actor's process, acting as a new actor that shares the
    /// process's descriptors and POSIX locks.
    ThreadStep {
        /// The name of the new actor.
        #[serde(rename = "as")]
        as_name: Located<String>,
    }
);

step_struct!(
    /// Check /proc/locks for the lock the actor holds on a descriptor's file
    /// (`expect: ok`: listed with the actor's pid, type and range; `unlocked`: not listed).
    ListedStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// The lock's type (default `exclusive`).
        #[serde(default)]
        mode: Option<Located<LockMode>>,
        /// First byte of the range (record locks; default 0).
        #[serde(default)]
        start: Option<Located<i64>>,
        /// Length of the range; 0 (the default) means to end of file.
        #[serde(default)]
        len: Option<Located<i64>>,
        /// Look for this mechanism's lock instead of the trial's.
        #[serde(default)]
        mechanism: Option<Located<Mechanism>>,
    }
);

step_struct!(
    /// Fault: stop the actor (SIGSTOP) and wait until the kernel shows it stopped: a hung holder.
    StopStep {}
);

step_struct!(
    /// Resume a stopped actor (SIGCONT) and wait until it runs again.
    ContinueStep {}
);

step_struct!(
    /// Fault: the actor closes every descriptor it has open.
    CloseAllStep {}
);

step_struct!(
    /// The actor starts a brand-new actor process (clone + exec, no inherited descriptors);
    /// with `pid-of`, the new process gets the PID of that dead actor (forced PID reuse).
    SpawnStep {
        /// The name of the new actor.
        #[serde(rename = "as")]
        as_name: Located<String>,
        /// A dead actor whose PID the new process must get.
        #[serde(default)]
        pid_of: Option<Located<String>>,
    }
);

step_struct!(
    /// The stale check of the pid-file pattern: read the PID in `path` and probe it with
    /// kill(PID, 0): ok if that process exists, ESRCH if not, ENOENT if there is no file.
    PidAliveStep {
        path: Located<String>,
    }
);

/// A share of packets, `5%` (or a number of percent), 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        fn check<E: de::Error>(x: f64, v: &dyn fmt::Display) -> Result<Percent, E> {
            if (0.0..=100.0).contains(&x) {
                Ok(Percent(x))
            } else {
                Err(E::custom(format!("`{v}`: a share must be from 0% to 100%")))
            }
        }
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a share of packets such as `5%`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
                check(v as f64, &v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
                check(v as f64, &v)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
                check(v, &v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                let t = v.trim();
                match t.strip_suffix('%').unwrap_or(t).trim().parse::<f64>() {
                    Ok(x) => check(x, &v),
                    Err(_) => Err(E::custom(format!(
                        "`{v}` is not a share of packets; write for example `5%`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A share of packets: `5%`, `0.5%`, or a number of percent (0 to 100).",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9.]+ *%?$"},
                {"type": "number", "minimum": 0, "maximum": 100}
            ]
        })
    }
}

/// A fault only a lab target can inject (the NFS lab): skipped with the reason elsewhere.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct LabFaultStep {
    /// The host it concerns (for `disconnect`, `reconnect`, `crash`, `net`).
    #[serde(default)]
    pub(crate) host: Option<Located<String>>,
    /// `net`: how long the impairment lasts (a duration or a number of
    /// leases); the steps after it run meanwhile.
    #[serde(default, rename = "for")]
    pub(crate) for_: Option<Located<Bound>>,
    /// `net`: each packet between the host and the server is delayed this long.
    #[serde(default)]
    pub(crate) delay: Option<Located<Dur>>,
    /// `net`: the delay varies by up to this much (needs `delay`).
    #[serde(default)]
    pub(crate) jitter: Option<Located<Dur>>,
    /// `net`: this share of packets is dropped (`100%`: a blackout).
    #[serde(default)]
    pub(crate) loss: Option<Located<Percent>>,
    /// `net`: this share of packets is sent twice.
    #[serde(default)]
    pub(crate) duplicate: Option<Located<Percent>>,
    /// `net`: this share of packets goes out at once, ahead of the delayed
    /// ones (needs `delay`).
    #[serde(default)]
    pub(crate) reorder: Option<Located<Percent>>,
    /// What must be observed (default `ok`).
    #[serde(default)]
    pub(crate) expect: Option<Located<Expect>>,
    /// How long the step may take before it fails.
    #[serde(default)]
    pub(crate) timeout: Option<Located<Dur>>,
    /// Why this step matters; shown in reports when it fails.
    #[serde(default)]
    pub(crate) note: Option<String>,
}

step_struct!(
    /// Read-increment-write a decimal counter at `offset`, `times` times, each under an
    /// exclusive waiting lock of the trial's mechanism. Run it with several actors at
    /// once and read the file: anything but actors × times means lost updates.
    CounterStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// How many increments.
        times: Located<u32>,
        /// Where the counter is (default 0).
        #[serde(default)]
        offset: Option<Located<u64>>,
    }
);

step_struct!(
    /// Interleaved record writers: the step's actors (at once) write `count`
    /// records of `size` bytes, actor k of n the records k, k + n, k + 2n,
    /// ..., each with pwrite(2) under an exclusive waiting lock of its own
    /// byte range (a whole-file lock for flock). Check the file with a
    /// `read` expecting `{records: {count, size, writers}}`.
    RecordsStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// How many records in all.
        count: Located<u32>,
        /// Bytes per record (16 to 4096).
        size: Located<u32>,
    }
);

step_struct!(
    /// Wait for an exclusive lock, hold it for `for`, release it: with
    /// several actors queued behind a holder, each must get its turn
    /// (`expect: blocks`, then `await` them all).
    HoldStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// How long to hold the lock once granted (default 100ms).
        #[serde(default, rename = "for")]
        for_: Option<Located<Dur>>,
    }
);

step_struct!(
    /// Many one-byte record locks: `count` of them, on bytes 0, 2, 4, ...
    /// (apart, so that they cannot merge), each tried, not waited for.
    ByteLocksStep {
        /// The descriptor (default: the actor's only one).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// How many locks (1 to 100000).
        count: Located<u32>,
        /// `exclusive` (default) or `shared`.
        #[serde(default)]
        mode: Option<Located<LockMode>>,
    }
);

step_struct!(
    /// A lock call made wrong on purpose (`call`), which must be refused
    /// with the error its man page documents (give it in `expect`).
    InvalidStep {
        /// The descriptor (default: the actor's only one; unused by `closed-descriptor`).
        #[serde(default)]
        fd: Option<Located<String>>,
        /// What is wrong with the call.
        call: Located<InvalidCall>,
    }
);

step_struct!(
    /// Whether the actor's process received a signal (SIGIO, which a lease
    /// break sends the lease holder, or one it has a `handle` for) since it
    /// last asked: `ok` once one has arrived (waiting up to `within` for it),
    /// ETIMEDOUT if none came.
    CaughtStep {
        /// The signal: `IO` (SIGIO), or one the actor handles.
        signal: Located<String>,
        /// How long to wait for it (default 2s).
        #[serde(default)]
        within: Option<Located<Dur>>,
    }
);

/// One step: exactly one operation, its fields nested under it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Step {
    Open(OpenStep),
    Close(CloseStep),
    Dup(DupStep),
    Lock(LockStep),
    Unlock(UnlockStep),
    Test(TestStep),
    Write(WriteStep),
    Read(ReadStep),
    Fork(ForkStep),
    Exit(ExitStep),
    Await(AwaitStep),
    Kill(KillStep),
    Unlink(UnlinkStep),
    Rename(RenameStep),
    Mkdir(MkdirStep),
    Truncate(TruncateStep),
    Mkfifo(MkfifoStep),
    Symlink(SymlinkStep),
    Signal(SignalStep),
    Handle(HandleStep),
    Exec(ExecStep),
    Thread(ThreadStep),
    Listed(ListedStep),
    Counter(CounterStep),
    Records(RecordsStep),
    Hold(HoldStep),
    ByteLocks(ByteLocksStep),
    Invalid(InvalidStep),
    Caught(CaughtStep),
    Stop(StopStep),
    Continue(ContinueStep),
    CloseAll(CloseAllStep),
    Spawn(SpawnStep),
    PidAlive(PidAliveStep),
    /// Lab fault: cut a host off the network (its processes live on, its locks are not released).
    Disconnect(LabFaultStep),
    /// Lab fault: restore a disconnected host's network.
    Reconnect(LabFaultStep),
    /// Lab fault: the host vanishes (network cut and every process on it killed).
    Crash(LabFaultStep),
    /// Lab fault: restart the file server (its lock state is lost; clients reclaim in the grace period).
    RestartServer(LabFaultStep),
    /// Lab fault: a host's link to the server gets slow or lossy (tc netem)
    /// for a while (`for`), both ways, while the next steps run.
    Net(LabFaultStep),
}

impl Step {
    pub(crate) fn op_name(&self) -> &'static str {
        match self {
            Step::Open(_) => "open",
            Step::Close(_) => "close",
            Step::Dup(_) => "dup",
            Step::Lock(_) => "lock",
            Step::Unlock(_) => "unlock",
            Step::Test(_) => "test",
            Step::Write(_) => "write",
            Step::Read(_) => "read",
            Step::Fork(_) => "fork",
            Step::Exit(_) => "exit",
            Step::Await(_) => "await",
            Step::Kill(_) => "kill",
            Step::Unlink(_) => "unlink",
            Step::Rename(_) => "rename",
            Step::Mkdir(_) => "mkdir",
            Step::Truncate(_) => "truncate",
            Step::Mkfifo(_) => "mkfifo",
            Step::Symlink(_) => "symlink",
            Step::Signal(_) => "signal",
            Step::Handle(_) => "handle",
            Step::Exec(_) => "exec",
            Step::Thread(_) => "thread",
            Step::Listed(_) => "listed",
            Step::Counter(_) => "counter",
            Step::Records(_) => "records",
            Step::Hold(_) => "hold",
            Step::ByteLocks(_) => "byte-locks",
            Step::Invalid(_) => "invalid",
            Step::Caught(_) => "caught",
            Step::Stop(_) => "stop",
            Step::Continue(_) => "continue",
            Step::CloseAll(_) => "close-all",
            Step::Spawn(_) => "spawn",
            Step::PidAlive(_) => "pid-alive",
            Step::Disconnect(_) => "disconnect",
            Step::Reconnect(_) => "reconnect",
            Step::Crash(_) => "crash",
            Step::RestartServer(_) => "restart-server",
            Step::Net(_) => "net",
        }
    }

    pub(crate) fn common(&self) -> Common<'_> {
        match self {
            Step::Open(s) => s.common(),
            Step::Close(s) => s.common(),
            Step::Dup(s) => s.common(),
            Step::Lock(s) => s.common(),
            Step::Unlock(s) => s.common(),
            Step::Test(s) => s.common(),
            Step::Write(s) => s.common(),
            Step::Read(s) => s.common(),
            Step::Fork(s) => s.common(),
            Step::Exit(s) => s.common(),
            Step::Await(s) => s.common(),
            Step::Kill(s) => s.common(),
            Step::Unlink(s) => s.common(),
            Step::Rename(s) => s.common(),
            Step::Mkdir(s) => s.common(),
            Step::Truncate(s) => s.common(),
            Step::Mkfifo(s) => s.common(),
            Step::Symlink(s) => s.common(),
            Step::Signal(s) => s.common(),
            Step::Handle(s) => s.common(),
            Step::Exec(s) => s.common(),
            Step::Thread(s) => s.common(),
            Step::Listed(s) => s.common(),
            Step::Counter(s) => s.common(),
            Step::Records(s) => s.common(),
            Step::Hold(s) => s.common(),
            Step::ByteLocks(s) => s.common(),
            Step::Invalid(s) => s.common(),
            Step::Caught(s) => s.common(),
            Step::Stop(s) => s.common(),
            Step::Continue(s) => s.common(),
            Step::CloseAll(s) => s.common(),
            Step::Spawn(s) => s.common(),
            Step::PidAlive(s) => s.common(),
            Step::Disconnect(s)
            | Step::Reconnect(s)
            | Step::Crash(s)
            | Step::RestartServer(s)
            | Step::Net(s) => Common {
                actor: None,
                actors: None,
                expect: s.expect.as_ref(),
                timeout: s.timeout.as_ref(),
                note: s.note.as_deref(),
                unsupported: &[],
            },
        }
    }
}

/// The process that F_GETLK must report as holding a conflicting lock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PidSpec {
    /// An actor's real process id.
    Actor(String),
    /// A literal value (F_OFD_GETLK reports -1).
    Raw(i64),
    /// Not checked.
    Any,
}

impl<'de> Deserialize<'de> for PidSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PidSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an actor name, a number such as -1, or `any`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PidSpec, E> {
                Ok(if v == "any" {
                    PidSpec::Any
                } else {
                    PidSpec::Actor(v.to_string())
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PidSpec, E> {
                Ok(PidSpec::Raw(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PidSpec, E> {
                i64::try_from(v)
                    .map(PidSpec::Raw)
                    .map_err(|_| E::custom("pid out of range"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for PidSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Pid".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An actor name (its real pid), a number such as -1 (F_OFD_GETLK), or `any`.",
            "anyOf": [{"type": "string"}, {"type": "integer"}]
        })
    }
}

/// The conflicting lock F_GETLK must report.
#[derive(Debug, Clone, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct HolderSpec {
    /// The conflicting lock's type.
    #[serde(default)]
    pub(crate) mode: Option<LockMode>,
    /// The conflicting lock's first byte.
    #[serde(default)]
    pub(crate) start: Option<i64>,
    /// The conflicting lock's length (0 = to end of file).
    #[serde(default)]
    pub(crate) len: Option<i64>,
    /// The process holding it.
    #[serde(default)]
    pub(crate) pid: Option<PidSpec>,
}

/// The file a `records` step leaves behind: `count` records of `size`
/// bytes, record j written by writer j mod `writers`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RecordsSpec {
    /// How many records.
    pub(crate) count: u32,
    /// Bytes per record.
    pub(crate) size: u32,
    /// How many actors wrote them (the `records` step's actors).
    pub(crate) writers: u32,
}

/// What a step must observe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// The call succeeded.
    Ok,
    /// The call was refused because someone else holds a conflicting lock: EAGAIN or EACCES.
    Conflict,
    /// The call failed with this errno (value, name as written).
    Errno(i32, String),
    /// The call is waiting in the kernel (observed, not guessed).
    Blocks,
    /// `test`: no conflicting lock.
    Unlocked,
    /// `test`: this conflicting lock.
    Holder(HolderSpec),
    /// `read`: these bytes.
    Data(String),
    /// `read`: every record a `records` step wrote, intact.
    Records(RecordsSpec),
    /// `test` with mechanism lease: F_GETLEASE reports this lease.
    Lease(LeaseMode),
    /// Anything; the outcome is recorded, not judged.
    Any,
    /// Any one of these.
    OneOf(Vec<Located<Expect>>),
    /// With several actors: exactly `count` succeed, the others observe `others`.
    Winners {
        count: u32,
        others: Box<Located<Expect>>,
    },
    /// A different expectation per mechanism.
    PerMechanism(BTreeMap<Mechanism, Located<Expect>>),
}

const EXPECT_KEYS: &str =
    "holder, data, records, leased, one-of, winners, others, flock, posix, ofd, lease, pidfile, lockfile";

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Expect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an expectation: ok, conflict, blocks, unlocked, any, an errno name such as EBADF, or a map")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expect, E> {
                match v {
                    "ok" => Ok(Expect::Ok),
                    "conflict" => Ok(Expect::Conflict),
                    "blocks" => Ok(Expect::Blocks),
                    "unlocked" => Ok(Expect::Unlocked),
                    "any" => Ok(Expect::Any),
                    _ => match crate::spec::errno::by_name(v) {
                        Some(n) => Ok(Expect::Errno(n, v.to_string())),
                        None => Err(E::custom(format!(
                            "unknown expectation `{v}`; expected ok, conflict, blocks, unlocked, any, or an errno name such as EBADF"
                        ))),
                    },
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expect, A::Error> {
                let mut holder = None;
                let mut data = None;
                let mut records = None;
                let mut lease_mode = None;
                let mut one_of = None;
                let mut winners = None;
                let mut others = None;
                let mut per_mech = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "holder" => holder = Some(map.next_value::<HolderSpec>()?),
                        "data" => data = Some(map.next_value::<String>()?),
                        "records" => records = Some(map.next_value::<RecordsSpec>()?),
                        "leased" => lease_mode = Some(map.next_value::<LeaseMode>()?),
                        "one-of" => one_of = Some(map.next_value::<Vec<Located<Expect>>>()?),
                        "winners" => winners = Some(map.next_value::<u32>()?),
                        "others" => others = Some(map.next_value::<Located<Expect>>()?),
                        k => match Mechanism::from_str(k) {
                            Ok(m) => {
                                per_mech.insert(m, map.next_value::<Located<Expect>>()?);
                            }
                            Err(_) => {
                                return Err(de::Error::custom(format!(
                                    "unknown expectation key `{k}`; expected one of {EXPECT_KEYS}"
                                )))
                            }
                        },
                    }
                }
                let forms = [
                    holder.is_some(),
                    data.is_some(),
                    records.is_some(),
                    lease_mode.is_some(),
                    one_of.is_some(),
                    winners.is_some() || others.is_some(),
                    !per_mech.is_empty(),
                ];
                if forms.iter().filter(|f| **f).count() != 1 {
                    return Err(de::Error::custom(format!(
                        "an expectation map has exactly one form: holder, data, records, leased, one-of, winners+others, or per-mechanism keys; keys were mixed or missing (expected one of {EXPECT_KEYS})"
                    )));
                }
                if let Some(h) = holder {
                    return Ok(Expect::Holder(h));
                }
                if let Some(d) = data {
                    return Ok(Expect::Data(d));
                }
                if let Some(r) = records {
                    return Ok(Expect::Records(r));
                }
                if let Some(l) = lease_mode {
                    return Ok(Expect::Lease(l));
                }
                if let Some(list) = one_of {
                    if list.is_empty() {
                        return Err(de::Error::custom("`one-of` needs at least one expectation"));
                    }
                    return Ok(Expect::OneOf(list));
                }
                if !per_mech.is_empty() {
                    return Ok(Expect::PerMechanism(per_mech));
                }
                match (winners, others) {
                    (Some(count), Some(others)) => Ok(Expect::Winners {
                        count,
                        others: Box::new(others),
                    }),
                    _ => Err(de::Error::custom(
                        "`winners: N` and `others: EXPECTATION` go together",
                    )),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for Expect {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expect".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let holder = generator.subschema_for::<HolderSpec>();
        let records = generator.subschema_for::<RecordsSpec>();
        let me = generator.subschema_for::<Expect>();
        let errnos = crate::spec::errno::known_names();
        json_schema!({
            "description": "What a step must observe.",
            "anyOf": [
                {"type": "string", "enum": ["ok", "conflict", "blocks", "unlocked", "any"]},
                {"type": "string", "enum": errnos, "description": "This errno."},
                {"type": "object", "properties": {"holder": holder}, "required": ["holder"], "additionalProperties": false},
                {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"], "additionalProperties": false},
                {"type": "object", "properties": {"records": records}, "required": ["records"], "additionalProperties": false},
                {"type": "object", "properties": {"leased": {"type": "string", "enum": ["none", "read", "write"]}}, "required": ["leased"], "additionalProperties": false},
                {"type": "object", "properties": {"one-of": {"type": "array", "items": me, "minItems": 1}}, "required": ["one-of"], "additionalProperties": false},
                {"type": "object", "properties": {"winners": {"type": "integer", "minimum": 0}, "others": me}, "required": ["winners", "others"], "additionalProperties": false},
                {"type": "object", "properties": {"flock": me, "posix": me, "ofd": me, "lease": me, "pidfile": me, "lockfile": me}, "minProperties": 1, "additionalProperties": false}
            ]
        })
    }
}

/// The JSON Schema (draft-07) of scenario files.
pub fn json_schema() -> Schema {
    schemars::generate::SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Scenario>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Scenario, serde_saphyr::Error> {
        serde_saphyr::from_str(y)
    }

    const BASE: &str =
        "name: x\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a, b]\nsteps:\n";

    #[test]
    fn parses_steps_with_positions() {
        let s = parse(&format!(
            "{BASE}  - open: {{actor: a, path: f, create: true}}\n  - lock:\n      actor: b\n      mode: exclusive\n      expect: conflict\n"
        ))
        .expect("parses");
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[1].pos.line, 8);
        match &s.steps[1].value {
            Step::Lock(l) => {
                assert_eq!(l.mode.value, LockMode::Exclusive);
                let e = l.expect.as_ref().expect("expect");
                assert_eq!(e.value, Expect::Conflict);
                assert_eq!(e.pos.line, 11);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expectation_forms() {
        let s = parse(&format!(
            "{BASE}  - test: {{actor: a, expect: {{holder: {{mode: exclusive, pid: b}}}}}}\n  - lock: {{actors: all, mode: exclusive, expect: {{winners: 1, others: conflict}}}}\n  - lock: {{actor: a, mode: shared, expect: {{posix: ok, flock: EWOULDBLOCK}}}}\n  - read: {{actor: a, len: 3, expect: {{data: abc}}}}\n  - lock: {{actor: a, mode: sh, expect: {{one-of: [ok, conflict]}}}}\n"
        ))
        .expect("parses");
        let exps: Vec<Expect> = s
            .steps
            .iter()
            .map(|st| st.common().expect.expect("expect").value.clone())
            .collect();
        assert!(matches!(&exps[0], Expect::Holder(h) if h.pid == Some(PidSpec::Actor("b".into()))));
        assert!(matches!(&exps[1], Expect::Winners { count: 1, .. }));
        assert!(
            matches!(&exps[2], Expect::PerMechanism(m) if m[&Mechanism::Flock].value == Expect::Errno(libc::EAGAIN, "EWOULDBLOCK".into()))
        );
        assert_eq!(exps[3], Expect::Data("abc".into()));
        assert!(matches!(&exps[4], Expect::OneOf(v) if v.len() == 2));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse(&format!(
            "{BASE}  - lock: {{actor: a, mode: exclusive, expect: okk}}\n"
        ))
        .expect_err("bad expectation");
        let loc = e.location().expect("location");
        assert_eq!((loc.line(), loc.column()), (7, 47));
        let e = parse(&format!("{BASE}  - lokc: {{actor: a}}\n")).expect_err("bad op");
        assert_eq!(e.location().map(|l| l.line()), Some(7));
        let e = parse(&format!(
            "{BASE}  - lock: {{actor: a, mode: exclusive, bogus: 1}}\n"
        ))
        .expect_err("unknown key");
        assert_eq!(e.location().map(|l| l.line()), Some(7));
        let e = parse(&format!(
            "{BASE}  - lock: {{actor: a, mode: exclusive, expect: {{holder: {{}}, data: x}}}}\n"
        ))
        .expect_err("mixed expectation");
        assert!(e.to_string().contains("exactly one form"));
    }

    #[test]
    fn durations_and_actors() {
        let s = parse("name: x\nsummary: s\nreference: r\nfamily: blocking\ntimeout: 250ms\nactors: [a, {name: b, host: two}, 'w[1..3]']\nsteps:\n  - await: {actor: a, within: 2s}\n").expect("parses");
        assert_eq!(
            s.timeout.as_ref().map(|t| t.value.0),
            Some(Duration::from_millis(250))
        );
        assert_eq!(s.actors[1].host(), Some("two"));
        assert_eq!(s.actors[2].name(), "w[1..3]");
    }

    #[test]
    fn bounds_are_durations_or_leases() {
        let b = |t: &str| serde_saphyr::from_str::<Bound>(t);
        assert_eq!(b("2s").ok(), Some(Bound::Fixed(Duration::from_secs(2))));
        assert_eq!(b("5").ok(), Some(Bound::Fixed(Duration::from_secs(5))));
        assert_eq!(b("3 leases").ok(), Some(Bound::Leases(3.0)));
        assert_eq!(b("1 lease").ok(), Some(Bound::Leases(1.0)));
        assert_eq!(b("1.5leases").ok(), Some(Bound::Leases(1.5)));
        for bad in ["0 leases", "99 leases", "many leases", "soon"] {
            assert!(b(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn schema_is_draft07() {
        let schema = serde_json::to_value(json_schema()).expect("json");
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert!(schema["definitions"]["Step"].is_object());
    }
}
