//! Targets: the directories under test. lockcheck works only inside a fresh
//! scratch directory it creates under each target (removed at the end) and
//! records what the target is: filesystem type, mount source and options,
//! kernel.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use crate::spec::error::{Error, Result};

/// Marker file that identifies a scratch directory as lockcheck's own.
pub(crate) const SCRATCH_MARKER: &str = ".lockcheck-scratch";
/// Prefix of scratch directory names.
pub(crate) const SCRATCH_PREFIX: &str = ".lockcheck-";

/// A target as requested: a label and a directory.
#[derive(Debug, Clone, Default)]
pub struct TargetSpec {
    /// The target's name in reports and trial ids.
    pub label: String,
    /// The directory to test.
    pub dir: PathBuf,
    /// How the directory was chosen, for the report.
    pub provision: String,
    /// The same directory as other hosts name it (host, path), when it differs.
    pub host_dirs: Vec<(String, PathBuf)>,
    /// An overlay's lower layer, as this directory there (provisioned
    /// overlays): trial directories are made there first, with a file in them.
    pub lower: Option<PathBuf>,
    /// The storage behind the target, as this directory there (a FUSE
    /// filesystem's source directory): `via: backing-store` opens through it.
    pub backing: Option<PathBuf>,
}

/// A host actors can run on, as one trial sees it.
#[derive(Debug, Clone)]
pub(crate) struct HostEnv {
    pub(crate) name: String,
    /// The command prefix that starts a process there (`None`: this host).
    pub(crate) launcher: Option<Vec<String>>,
    /// The lockcheck binary as that host names it.
    pub(crate) exe: PathBuf,
    /// The trial's directory as that host names it.
    pub(crate) dir: PathBuf,
}

impl HostEnv {
    /// This host, with the trial directory `dir`.
    pub(crate) fn local(exe: &Path, dir: &Path) -> HostEnv {
        HostEnv {
            name: crate::plan::resolve::DEFAULT_HOST.to_string(),
            launcher: None,
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
        }
    }
}

/// Another host actors can run on: started through a command prefix.
#[derive(Debug, Clone)]
pub(crate) struct HostDef {
    pub(crate) name: String,
    /// The command prefix (`ip netns exec c2`, `ssh box`, `kubectl exec -i pod --`).
    pub(crate) launcher: Vec<String>,
    /// The lockcheck binary as that host names it.
    pub(crate) exe: Option<PathBuf>,
}

/// Parse `NAME=COMMAND PREFIX` (shell quoting allowed).
pub(crate) fn parse_host_arg(s: &str) -> Result<HostDef> {
    let hint = Some("for example --host b='ip netns exec c2' or --host b='ssh box'");
    let Some((name, cmd)) = s.split_once('=') else {
        return Err(Error::usage(
            format!("--host {s:?}: expected NAME=COMMAND"),
            hint,
        ));
    };
    check_label(name)?;
    if name == crate::plan::resolve::DEFAULT_HOST {
        return Err(Error::usage(
            format!("--host {name}: `{name}` is this host"),
            Some("name other hosts b, c, ..."),
        ));
    }
    let launcher =
        shell_words::split(cmd).map_err(|e| Error::usage(format!("--host {s:?}: {e}"), hint))?;
    if launcher.is_empty() {
        return Err(Error::usage(
            format!("--host {s:?}: the command is empty"),
            hint,
        ));
    }
    Ok(HostDef {
        name: name.to_string(),
        launcher,
        exe: None,
    })
}

/// Parse `KIND=COMMAND` for a lab fault (`{host}` in the command is replaced).
pub(crate) fn parse_fault_arg(s: &str) -> Result<(crate::plan::resolve::LabFault, String)> {
    use crate::plan::resolve::LabFault;
    let hint = Some("kinds: disconnect, reconnect, crash, restart-server, net; for example --fault crash='lab-fault crash {host}'");
    let Some((kind, cmd)) = s.split_once('=') else {
        return Err(Error::usage(
            format!("--fault {s:?}: expected KIND=COMMAND"),
            hint,
        ));
    };
    let fault = match kind {
        "disconnect" => LabFault::Disconnect,
        "reconnect" => LabFault::Reconnect,
        "crash" => LabFault::Crash,
        "restart-server" => LabFault::RestartServer,
        "net" => LabFault::Net,
        _ => {
            return Err(Error::usage(
                format!("--fault: unknown fault kind {kind:?}"),
                hint,
            ))
        }
    };
    if cmd.trim().is_empty() {
        return Err(Error::usage(
            format!("--fault {s:?}: the command is empty"),
            hint,
        ));
    }
    Ok((fault, cmd.to_string()))
}

/// Parse all `--fault KIND=COMMAND` arguments: each kind once, and a way
/// back for every way of cutting a host off.
pub(crate) fn parse_fault_args(
    args: &[String],
) -> Result<std::collections::BTreeMap<crate::plan::resolve::LabFault, String>> {
    use crate::plan::resolve::LabFault;
    let mut out = std::collections::BTreeMap::new();
    for a in args {
        let (kind, cmd) = parse_fault_arg(a)?;
        if out.insert(kind, cmd).is_some() {
            return Err(Error::usage(
                format!("--fault {} is given twice", kind.as_str()),
                Some("give each fault kind one command"),
            ));
        }
    }
    for cut in [LabFault::Disconnect, LabFault::Crash] {
        if out.contains_key(&cut) && !out.contains_key(&LabFault::Reconnect) {
            return Err(Error::usage(
                format!(
                    "--fault {} needs --fault reconnect=COMMAND too",
                    cut.as_str()
                ),
                Some("lockcheck reconnects a host it cut off before it cleans up the trial"),
            ));
        }
    }
    Ok(out)
}

/// Parse `LABEL=DIR[,HOST:DIR]...`, or `DIR[,HOST:DIR]...` whose label is
/// derived from the directory ([`label_from_dir`]).
pub fn parse_target_arg(s: &str) -> Result<TargetSpec> {
    let (label, dirs) = match s.split_once('=') {
        Some((label, dirs)) => (label.to_string(), dirs),
        None => {
            let dir = s.split(',').next().unwrap_or("");
            (label_from_dir(Path::new(dir)), s)
        }
    };
    let label = label.as_str();
    check_label(label)?;
    let mut parts = dirs.split(',');
    let dir = parts.next().unwrap_or("");
    if dir.is_empty() {
        return Err(Error::usage(
            format!("--target {s:?}: the directory is empty"),
            Some("for example --target nfs4=/mnt/nfs"),
        ));
    }
    let mut host_dirs = Vec::new();
    for p in parts {
        let Some((host, path)) = p.split_once(':') else {
            return Err(Error::usage(
                format!("--target {s:?}: `{p}` is not HOST:DIR"),
                Some("for example --target nfs4=/mnt/a,b:/mnt/b (the same export as host b mounts it)"),
            ));
        };
        check_label(host)?;
        if path.is_empty() {
            return Err(Error::usage(
                format!("--target {s:?}: `{p}` names no directory (expected HOST:DIR)"),
                Some("for example --target nfs4=/mnt/a,b:/mnt/b (the same export as host b mounts it)"),
            ));
        }
        host_dirs.push((host.to_string(), PathBuf::from(path)));
    }
    Ok(TargetSpec {
        label: label.to_string(),
        dir: PathBuf::from(dir),
        provision: "directory given with --target".into(),
        host_dirs,
        lower: None,
        backing: None,
    })
}

/// The label of a target given as a bare directory: its last component
/// (`/mnt/nfs` gives `nfs`; `.` the current directory's name; `/` gives
/// `root`), with characters a label cannot have turned into `-`, a leading
/// `.` dropped, and at most 64 characters. Two targets that get the same
/// label are refused (`target label ... is given twice`); give them
/// `LABEL=DIR`.
pub fn label_from_dir(dir: &Path) -> String {
    let named = match dir.file_name() {
        Some(n) => Some(n.to_os_string()),
        // `.`, `..`, `/`: the directory's own name, if it has one.
        None => std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_os_string())),
    };
    let raw = named
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut label: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    label = label.trim_start_matches('.').chars().take(64).collect();
    if label.is_empty() {
        "root".to_string()
    } else {
        label
    }
}

pub(crate) fn check_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !label.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(
            format!("target label {label:?} is not usable"),
            Some("labels are 1-64 characters: letters, digits, `-`, `_`, `.` (they name report files)"),
        ))
    }
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub(crate) struct MountEntry {
    pub(crate) mount_point: String,
    pub(crate) source: String,
    pub(crate) fs_type: String,
    /// FUSE subtype (`bindfs` of `fuse.bindfs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subtype: Option<String>,
    pub(crate) mount_options: String,
    pub(crate) super_options: String,
    /// NFS details from the super options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) nfs: Option<NfsInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub(crate) struct NfsInfo {
    pub(crate) vers: Option<String>,
    pub(crate) local_lock: Option<String>,
    pub(crate) nolock: bool,
    pub(crate) proto: Option<String>,
}

fn unescape_mount(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    if l.len() < 6 || r.len() < 3 {
        return None;
    }
    let fs_full = r[0];
    let (fs_type, subtype) = match fs_full.split_once('.') {
        Some((t, s)) => (t.to_string(), Some(s.to_string())),
        None => (fs_full.to_string(), None),
    };
    let super_options = r[2].to_string();
    let nfs = fs_type.starts_with("nfs").then(|| {
        let opt = |k: &str| {
            super_options
                .split(',')
                .find_map(|o| o.strip_prefix(&format!("{k}=")).map(str::to_string))
        };
        NfsInfo {
            vers: opt("vers"),
            local_lock: opt("local_lock"),
            nolock: super_options.split(',').any(|o| o == "nolock"),
            proto: opt("proto"),
        }
    });
    Some(MountEntry {
        mount_point: unescape_mount(l[4]),
        source: unescape_mount(r[1]),
        fs_type,
        subtype,
        mount_options: l[5].to_string(),
        super_options,
        nfs,
    })
}

/// The mount a path lives on: the last mountinfo entry whose mount point is
/// the longest prefix of the (canonical) path.
pub(crate) fn find_mount(path: &Path) -> Option<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<MountEntry> = None;
    for e in text.lines().filter_map(parse_mountinfo_line) {
        let mp = Path::new(&e.mount_point);
        if path.starts_with(mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() >= b.mount_point.len())
        {
            best = Some(e);
        }
    }
    best
}

/// statfs(2) f_type names for the filesystems people put locks on.
pub(crate) fn fs_magic_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "ext2/3/4",
        0x0102_1994 => "tmpfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x794C_7630 => "overlay",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x2FC1_2FC1 => "zfs",
        0x00C3_6400 => "ceph",
        0x0102_1997 => "9p",
        0xF2F5_2010 => "f2fs",
        0x8584_58F6 => "ramfs",
        0x0116_1970 => "gfs2",
        0x7461_636F => "ocfs2",
        0x0BD0_0BD0 => "lustre",
        0x4D44 => "vfat",
        0x2011_BAB0 => "exfat",
        0x5346_544E => "ntfs",
        0x0027_E0EB => "cgroup",
        0x9FA0 => "proc",
        0x6265_6572 => "sysfs",
        0x1CD1 => "devpts",
        0x00C0_FFEE => "hostfs",
        _ => "unknown",
    }
}

/// statfs(2) f_type of the filesystem a path is on.
#[allow(clippy::unnecessary_cast)] // f_type is i64 on x86-64 but narrower elsewhere
pub(crate) fn statfs_magic(path: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|s| s.filesystem_type().0 as i64)
}

/// The file a trial directory on an overlay target has in the lower layer.
pub(crate) const LOWER_FILE: &str = "lower-file";

/// Filesystems whose waiters the local kernel does not list in /proc/locks.
fn keeps_own_waiters(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "nfs"
            | "nfs4"
            | "cifs"
            | "smb3"
            | "smb2"
            | "ceph"
            | "gfs2"
            | "ocfs2"
            | "9p"
            | "fuse"
            | "fuseblk"
            | "lustre"
            | "afs"
            | "glusterfs"
            | "unknown"
    )
}

/// What a report says about its target.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TargetIdentity {
    /// The target's label (`--target LABEL=DIR`; `local` and `tmpfs` by default).
    pub label: String,
    pub(crate) path: String,
    /// How lockcheck came to test this directory.
    pub(crate) provision: String,
    /// The filesystem type (mountinfo's name; statfs's when mountinfo has none).
    pub fs_type: String,
    /// statfs f_type in hex, with its name.
    pub(crate) statfs_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mount: Option<MountEntry>,
    pub(crate) kernel: String,
    pub(crate) arch: String,
    pub(crate) lockcheck_version: String,
    /// Whether blocked waiters show in /proc/locks here.
    pub(crate) lock_lists: bool,
    /// How lockcheck forces PID reuse here (or why it cannot).
    pub(crate) pid_reuse: String,
    /// The hosts actors can be placed on (`a` is the one lockcheck runs on).
    pub(crate) hosts: Vec<String>,
    /// Lab faults it can inject.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) lab_faults: Vec<String>,
    /// The file server's lease (and grace period) in seconds, that bounds
    /// written in leases (recovery after a crash, a partition, a restart)
    /// are reckoned with: `--lease`, 90 s by default.
    pub(crate) lease_s: f64,
    /// The device as /proc/locks names it for this filesystem (found by taking
    /// a flock on the scratch marker), used to tell its lines from others'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locks_dev: Option<String>,
}

/// An open target: its identity and the run's scratch directory.
pub struct Target {
    /// The target's name in reports and trial ids.
    pub label: String,
    /// The directory tested, canonical.
    pub root: PathBuf,
    /// What its report says about it.
    pub identity: TargetIdentity,
    /// Hosts actors can be placed on.
    pub(crate) hosts: Vec<String>,
    /// Lab faults this target can inject, with their commands (none, except in a lab).
    pub(crate) lab_faults: std::collections::BTreeMap<crate::plan::resolve::LabFault, String>,
    /// Lab faults whose command names this target (`{target}`): they touch
    /// only this target's hosts, so they may run while other targets' trials do.
    pub(crate) confined_faults: std::collections::BTreeSet<crate::plan::resolve::LabFault>,
    /// The lease bounds in leases are reckoned with (`--lease`).
    pub(crate) lease: std::time::Duration,
    /// The other hosts (launchers) and this directory as each names it.
    pub(crate) remote_hosts: Vec<(HostDef, PathBuf)>,
    /// The directories other hosts should use, from `--target` (host, path).
    pub(crate) host_dirs: Vec<(String, PathBuf)>,
    /// Where the scratch directory was made (the lower layer of an overlay).
    scratch: tempfile::TempDir,
    /// Set when one of the harness's own filesystem calls on the target
    /// did not return within [`FS_TIMEOUT`]: what did not return.
    stalled: std::sync::OnceLock<String>,
    /// The scratch directory through the overlay, when it was made below it.
    view: Option<PathBuf>,
    /// The scratch directory in the lower layer (overlay targets).
    lower_scratch: Option<PathBuf>,
    /// The storage behind the target, as its root there (FUSE targets).
    backing: Option<PathBuf>,
    counter: AtomicUsize,
}

/// How long one filesystem call of the harness's own on a target (making
/// or removing a directory, a first look) may take before the target counts
/// as not answering: far beyond any healthy filesystem, NFS over a slow,
/// lossy link included (20 s was not: there one call now and then took
/// longer, and a live server was declared gone).
pub(crate) const FS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `f` on a thread of its own, waited for at most [`FS_TIMEOUT`]: `None` if
/// it did not return (the thread is left behind, asleep in the kernel; a
/// hung NFS call sleeps killably, so the process can still exit). One call:
/// [`bounded_progress`] with no progress to report.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    bounded_progress(move |_| f())
}

/// A hint for a target that cannot take lockcheck's few small files.
fn full_hint(e: &std::io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Some(
            "the filesystem (or your quota) is full: lockcheck needs a few KiB and a few dozen inodes",
        ),
        Some(libc::EROFS) => Some("the filesystem is mounted read-only"),
        _ => None,
    }
}

fn refused(path: &Path) -> Option<&'static str> {
    if path == Path::new("/") {
        return Some("the root directory");
    }
    if path.starts_with("/dev/shm") {
        return None;
    }
    for p in ["/proc", "/sys", "/dev"] {
        if path.starts_with(p) {
            return Some("a kernel or device filesystem");
        }
    }
    None
}

impl Target {
    /// Check the directory and create the run's scratch directory in it.
    ///
    /// A server that does not answer must not hang the run here: all of it
    /// (looking at the directory, making the scratch directory and its
    /// marker, identifying the filesystem) is bounded by [`FS_TIMEOUT`].
    pub(crate) fn open(spec: &TargetSpec) -> Result<Target> {
        let s = spec.clone();
        bounded(move || Target::open_now(&s)).unwrap_or_else(|| {
            Err(Error::Target {
                label: spec.label.clone(),
                path: spec.dir.clone(),
                message: format!(
                    "no answer: opening it did not finish within {} s",
                    FS_TIMEOUT.as_secs()
                ),
                hint: Some("its filesystem does not answer (an NFS server down?)".into()),
            })
        })
    }

    fn open_now(spec: &TargetSpec) -> Result<Target> {
        let err = |message: String, hint: Option<&str>| Error::Target {
            label: spec.label.clone(),
            path: spec.dir.clone(),
            message,
            hint: hint.map(str::to_string),
        };
        let meta = fs::metadata(&spec.dir).map_err(|e| {
            err(
                format!("cannot use it: {e}"),
                Some("give an existing directory you can write to"),
            )
        })?;
        if !meta.is_dir() {
            return Err(err(
                "not a directory".into(),
                Some("give an existing directory"),
            ));
        }
        let root = fs::canonicalize(&spec.dir)
            .map_err(|e| err(format!("cannot resolve it: {e}"), None))?;
        if let Some(what) = refused(&root) {
            return Err(err(
                format!("refused: {} is {what}", root.display()),
                Some("lockcheck only tests directories meant for data"),
            ));
        }
        if nix::unistd::access(
            &root,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_err()
        {
            return Err(err(
                "not writable".into(),
                Some("lockcheck creates (and removes) a scratch directory inside the target"),
            ));
        }
        // On an overlay with a known lower layer, the scratch directory is
        // made in the lower layer (before anything looks it up through the
        // overlay), so that trial directories can have lower-layer files.
        let scratch = tempfile::Builder::new()
            .prefix(SCRATCH_PREFIX)
            .tempdir_in(spec.lower.as_deref().unwrap_or(&root))
            .map_err(|e| {
                err(
                    format!("cannot create a scratch directory: {e}"),
                    full_hint(&e),
                )
            })?;
        let view = spec
            .lower
            .as_ref()
            .and_then(|_| scratch.path().file_name())
            .map(|n| root.join(n));
        let marker = view
            .as_deref()
            .unwrap_or(scratch.path())
            .join(SCRATCH_MARKER);
        let f = write_marker(&marker).map_err(|e| {
            err(
                format!("cannot write in the scratch directory: {e}"),
                full_hint(&e),
            )
        })?;
        let mut identity = identify(&spec.label, &root, &spec.provision);
        let ino = {
            use std::os::unix::fs::MetadataExt;
            f.metadata().map(|m| m.ino()).unwrap_or(0)
        };
        identity.locks_dev = crate::actor::observe::locks_device(&f, ino);
        Ok(Target {
            label: spec.label.clone(),
            root,
            identity,
            hosts: vec![crate::plan::resolve::DEFAULT_HOST.to_string()],
            lab_faults: Default::default(),
            confined_faults: Default::default(),
            lease: crate::plan::resolve::DEFAULT_LEASE,
            remote_hosts: Vec::new(),
            host_dirs: spec.host_dirs.clone(),
            lower_scratch: view.is_some().then(|| scratch.path().to_path_buf()),
            view,
            backing: spec.backing.clone(),
            scratch,
            stalled: std::sync::OnceLock::new(),
            counter: AtomicUsize::new(0),
        })
    }

    pub(crate) fn lock_lists(&self) -> bool {
        self.identity.lock_lists
    }

    /// The scratch directory as the target shows it.
    pub(crate) fn scratch(&self) -> &Path {
        self.view.as_deref().unwrap_or(self.scratch.path())
    }

    /// Whether trial directories come with a lower-layer file (`lower-file`).
    pub(crate) fn has_lower_file(&self) -> bool {
        self.lower_scratch.is_some()
    }

    /// A trial directory as the storage behind the target names it.
    pub(crate) fn backing_of(&self, dir: &Path) -> Option<PathBuf> {
        let b = self.backing.as_ref()?;
        dir.strip_prefix(&self.root).ok().map(|rel| b.join(rel))
    }

    /// The hosts of a trial in directory `dir` (this host first), as the driver needs them.
    pub(crate) fn host_envs(&self, exe: &Path, dir: &Path) -> Vec<HostEnv> {
        let mut out = vec![HostEnv::local(exe, dir)];
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        for (h, root) in &self.remote_hosts {
            out.push(HostEnv {
                name: h.name.clone(),
                launcher: Some(h.launcher.clone()),
                exe: h.exe.clone().unwrap_or_else(|| exe.to_path_buf()),
                dir: root.join(rel),
            });
        }
        out
    }

    /// A fresh, empty directory for one trial.
    pub(crate) fn trial_dir(&self, name: &str) -> std::result::Result<PathBuf, String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let leaf = format!("{safe}.{n}");
        let dir = self.scratch().join(&leaf);
        let lower = self.lower_scratch.as_ref().map(|l| l.join(&leaf));
        let made = dir.clone();
        self.fs_call("making the trial directory", move || match lower {
            // Made in the lower layer, with a file that is there before the
            // trial starts; the overlay shows both.
            Some(l) => {
                fs::create_dir(&l)?;
                fs::write(l.join(LOWER_FILE), "from the lower layer\n")
            }
            None => fs::create_dir(&made),
        })?;
        Ok(dir)
    }

    /// Remove a trial directory (bounded like every filesystem call the
    /// harness makes on the target).
    pub(crate) fn remove_trial_dir(&self, dir: &Path) -> std::result::Result<(), String> {
        let d = dir.to_path_buf();
        let what = "removing the trial directory";
        if let Some(earlier) = self.stalled.get() {
            return Err(format!(
                "not tried: the target stopped answering ({earlier})"
            ));
        }
        // A directory of many files on a slow link takes long, but each
        // removal returns: the bound is on a call, not on the whole tree.
        match bounded_progress(move |progress| remove_dir_settled(&d, progress)) {
            Some(r) => r.map_err(|e| e.to_string()),
            None => {
                let msg = format!(
                    "{what}: a call did not return within {} s",
                    FS_TIMEOUT.as_secs()
                );
                let _ = self.stalled.set(msg.clone());
                Err(format!(
                    "the target stopped answering: {msg} (an NFS server down?)"
                ))
            }
        }
    }

    /// What did not return, if the target stopped answering.
    pub(crate) fn stalled(&self) -> Option<&str> {
        self.stalled.get().map(String::as_str)
    }

    /// `f`, a filesystem call of the harness's own on the target, waited for
    /// at most [`FS_TIMEOUT`]; after one has not returned, none is tried.
    pub(crate) fn fs_call<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        fs_call_in(&self.stalled, what, f)
    }

    /// Remove the scratch directory now, reporting a failure. A target that
    /// stopped answering keeps it (`lockcheck clean` removes it later).
    pub(crate) fn close(self) -> std::io::Result<()> {
        if let Some(why) = self.stalled.get() {
            let kept = self.scratch.keep();
            return Err(std::io::Error::other(format!(
                "not removed, the target stopped answering ({why}); `lockcheck clean {}` removes it later",
                kept.parent().unwrap_or(&kept).display()
            )));
        }
        let scratch = self.scratch;
        fs_call_in(&self.stalled, "removing the scratch directory", move || {
            scratch.close()
        })
        .map_err(std::io::Error::other)
    }
}

/// `remove_dir_all`, tried again for a few seconds while the directory is
/// not empty yet: on SMB a removed file that another client still has open
/// stays, delete-pending, until that client closes it (the Linux client
/// closes its cached handles after `closetimeo`, 1 s by default).
fn remove_dir_settled(d: &Path, progress: &AtomicUsize) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match remove_tree(d, progress) {
            Err(e)
                if e.raw_os_error() == Some(libc::ENOTEMPTY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            r => return r,
        }
    }
}

/// Remove a directory and everything in it (never following a symlink),
/// counting each entry removed in `progress`.
fn remove_tree(d: &Path, progress: &AtomicUsize) -> std::io::Result<()> {
    for e in fs::read_dir(d)? {
        let e = e?;
        let p = e.path();
        progress.fetch_add(1, Ordering::Relaxed);
        if e.file_type()?.is_dir() {
            remove_tree(&p, progress)?;
        } else {
            match fs::remove_file(&p) {
                Err(x) if x.kind() == std::io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
    fs::remove_dir(d)
}

/// `f` on a thread of its own, given a counter it advances as it goes:
/// `None` if the counter stood still for [`FS_TIMEOUT`] before `f`
/// returned (the thread is left behind, asleep in the kernel; a hung NFS
/// call sleeps killably, so the process can still exit), or after an hour
/// in all.
fn bounded_progress<T: Send + 'static>(
    f: impl FnOnce(&AtomicUsize) -> T + Send + 'static,
) -> Option<T> {
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lockcheck-fs".into())
        .spawn(move || {
            let _ = tx.send(f(&p));
        })
        .ok()?;
    let overall = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    let mut seen = progress.load(Ordering::Relaxed);
    loop {
        match rx.recv_timeout(FS_TIMEOUT) {
            Ok(r) => return Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = progress.load(Ordering::Relaxed);
                if now == seen || std::time::Instant::now() >= overall {
                    return None;
                }
                seen = now;
            }
        }
    }
}

/// [`Target::fs_call`], with the target's record of a call that did not
/// return (set here when one does not).
fn fs_call_in<T: Send + 'static>(
    stalled: &std::sync::OnceLock<String>,
    what: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::result::Result<T, String> {
    if let Some(earlier) = stalled.get() {
        return Err(format!(
            "not tried: the target stopped answering ({earlier})"
        ));
    }
    match bounded(f) {
        Some(r) => r.map_err(|e| e.to_string()),
        None => {
            let msg = format!("{what} did not return within {} s", FS_TIMEOUT.as_secs());
            let _ = stalled.set(msg.clone());
            Err(format!(
                "the target stopped answering: {msg} (an NFS server down?)"
            ))
        }
    }
}

/// How a new process can be given a chosen PID here: clone3 with set_tid
/// needs CAP_SYS_ADMIN in the user namespace owning our PID namespace.
pub(crate) fn pid_reuse_method() -> std::result::Result<String, String> {
    const CAP_SYS_ADMIN: u32 = 21;
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("no CapEff in /proc/self/status")?;
    if eff & (1 << CAP_SYS_ADMIN) == 0 {
        return Err("clone3(set_tid) needs CAP_SYS_ADMIN (run as root)".into());
    }
    let ns = fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "pid namespace".into());
    Ok(format!(
        "clone3(2) with set_tid in lockcheck's own PID namespace ({ns}), as root (CAP_SYS_ADMIN)"
    ))
}

/// Work out what a directory is.
pub(crate) fn identify(label: &str, root: &Path, provision: &str) -> TargetIdentity {
    let magic = statfs_magic(root).unwrap_or(0);
    let mount = find_mount(root);
    let fs_type = mount
        .as_ref()
        .map(|m| m.fs_type.clone())
        .unwrap_or_else(|| fs_magic_name(magic).to_string());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let arch = std::env::consts::ARCH.to_string();
    TargetIdentity {
        label: label.to_string(),
        path: root.display().to_string(),
        provision: provision.to_string(),
        lock_lists: !keeps_own_waiters(&fs_type),
        fs_type,
        statfs_type: format!("{magic:#x} ({})", fs_magic_name(magic)),
        mount,
        kernel,
        arch,
        lockcheck_version: env!("CARGO_PKG_VERSION").to_string(),
        pid_reuse: String::new(),
        locks_dev: None,
        hosts: vec![crate::plan::resolve::DEFAULT_HOST.to_string()],
        lab_faults: Vec::new(),
        lease_s: crate::plan::resolve::DEFAULT_LEASE.as_secs_f64(),
    }
}

/// Enter a private mount namespace, so that whatever lockcheck mounts (a
/// tmpfs, a second mount of a target, loop filesystems) is invisible to the
/// host and disappears with the process. Must be called while the process is
/// still single-threaded (start of main), so that every thread and every
/// actor shares it. Needs CAP_SYS_ADMIN; the error says why not.
pub fn enter_private_namespace() -> std::result::Result<(), String> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))
}

/// A tmpfs lockcheck mounted in its own mount namespace.
pub struct PrivateTmpfs {
    pub(crate) dir: PathBuf,
}

impl PrivateTmpfs {
    /// Mount a tmpfs in lockcheck's private mount namespace (see
    /// `enter_private_namespace`). The host sees only an empty directory,
    /// removed again at the end.
    pub(crate) fn create() -> std::result::Result<PrivateTmpfs, String> {
        use nix::mount::{mount, MsFlags};
        let dir = tempfile::Builder::new()
            .prefix(".lockcheck-tmpfs-")
            .tempdir()
            .map_err(|e| format!("creating a mount point: {e}"))?
            .keep();
        // The marker lies under the mount: the host sees it, so `lockcheck
        // clean` can tell the mount point is lockcheck's after a SIGKILL.
        let marker = dir.join(SCRATCH_MARKER);
        if let Err(e) = write_marker(&marker) {
            let _ = fs::remove_dir(&dir);
            return Err(format!("writing in {}: {e}", dir.display()));
        }
        if let Err(e) = mount(
            Some("lockcheck"),
            &dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=256m,mode=0700"),
        ) {
            let _ = fs::remove_file(&marker);
            let _ = fs::remove_dir(&dir);
            return Err(format!("mounting tmpfs: {e}"));
        }
        Ok(PrivateTmpfs { dir })
    }
}

impl Drop for PrivateTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_file(self.dir.join(SCRATCH_MARKER));
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The default targets: the local filesystem and a tmpfs.
pub struct Defaults {
    /// The default targets that can be provided.
    pub specs: Vec<TargetSpec>,
    /// The private tmpfs behind the `tmpfs` target, if lockcheck mounted one
    /// (unmounted when dropped).
    pub tmpfs: Option<PrivateTmpfs>,
    /// Targets that could not be provided, and why.
    pub notes: Vec<String>,
}

fn writable_dir(p: &Path) -> bool {
    p.is_dir()
        && nix::unistd::access(
            p,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
}

/// Choose the default targets. `namespace` is the result of
/// `enter_private_namespace`: a private tmpfs needs it.
pub fn default_targets(namespace: &std::result::Result<(), String>) -> Defaults {
    let mut specs = Vec::new();
    let mut notes = Vec::new();
    let cwd = std::env::current_dir().ok().filter(|d| writable_dir(d));
    match cwd {
        Some(d) => specs.push(TargetSpec {
            label: "local".into(),
            dir: d,
            provision: "the current directory's filesystem".into(),
            host_dirs: Vec::new(),
            lower: None,
            backing: None,
        }),
        None => {
            let t = std::env::temp_dir();
            specs.push(TargetSpec {
                label: "local".into(),
                dir: t,
                provision: "TMPDIR (the current directory is not writable)".into(),
                host_dirs: Vec::new(),
                lower: None,
                backing: None,
            });
        }
    }
    let mut tmpfs = None;
    match namespace.clone().and_then(|()| PrivateTmpfs::create()) {
        Ok(t) => {
            specs.push(TargetSpec {
                label: "tmpfs".into(),
                dir: t.dir.clone(),
                provision: "a private tmpfs lockcheck mounted in its own mount namespace".into(),
                host_dirs: Vec::new(),
                lower: None,
                backing: None,
            });
            tmpfs = Some(t);
        }
        Err(why) => {
            let shm = Path::new("/dev/shm");
            let is_tmpfs = statfs_magic(shm) == Some(0x0102_1994);
            if is_tmpfs && writable_dir(shm) {
                specs.push(TargetSpec {
                    label: "tmpfs".into(),
                    dir: shm.to_path_buf(),
                    provision: format!("/dev/shm (no private tmpfs: {why})"),
                    host_dirs: Vec::new(),
                    lower: None,
                    backing: None,
                });
            } else {
                notes.push(format!(
                    "tmpfs: no target (no private tmpfs: {why}; /dev/shm is not a writable tmpfs)"
                ));
            }
        }
    }
    Defaults {
        specs,
        tmpfs,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let e = parse_mountinfo_line(
            "36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - nfs4 srv:/export rw,vers=4.2,proto=tcp,local_lock=none",
        )
        .expect("line");
        assert_eq!(e.mount_point, "/mnt/with space");
        assert_eq!(e.fs_type, "nfs4");
        let nfs = e.nfs.expect("nfs");
        assert_eq!(nfs.vers.as_deref(), Some("4.2"));
        assert_eq!(nfs.local_lock.as_deref(), Some("none"));
        let f =
            parse_mountinfo_line("50 1 0:44 / /mnt/b rw,nosuid - fuse.bindfs /src rw,user_id=0")
                .expect("line");
        assert_eq!(
            (f.fs_type.as_str(), f.subtype.as_deref()),
            ("fuse", Some("bindfs"))
        );
        assert!(parse_mountinfo_line("nonsense").is_none());
    }

    #[test]
    fn labels_and_arguments() {
        assert!(parse_target_arg("nfs4=/mnt").is_ok());
        // A bare directory is labelled after its last component.
        assert_eq!(
            parse_target_arg("/mnt/nfs").map(|t| t.label).ok(),
            Some("nfs".into())
        );
        assert_eq!(
            parse_target_arg("/mnt/my share/").map(|t| t.label).ok(),
            Some("my-share".into())
        );
        assert_eq!(
            parse_target_arg("/").map(|t| t.label).ok(),
            Some("root".into())
        );
        assert_eq!(
            parse_target_arg("/srv/.hidden").map(|t| t.label).ok(),
            Some("hidden".into())
        );
        let t = parse_target_arg("/mnt/a,b:/mnt/b").expect("with a host dir");
        assert_eq!((t.label.as_str(), t.host_dirs.len()), ("a", 1));
        assert!(parse_target_arg("a b=/x").is_err());
        assert!(parse_target_arg("x=").is_err());
        assert!(check_label("../x").is_err());
    }

    #[test]
    fn refuses_system_directories() {
        assert!(refused(Path::new("/")).is_some());
        assert!(refused(Path::new("/proc/self")).is_some());
        assert!(refused(Path::new("/dev")).is_some());
        assert!(refused(Path::new("/dev/shm")).is_none());
        assert!(refused(Path::new("/srv/data")).is_none());
    }
}

/// What `clean` did with one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleaned {
    /// Removed, with everything in it.
    Removed(PathBuf),
    /// Left alone, and why.
    Kept(PathBuf, String),
}

/// Write lockcheck's marker file (`{"pid": N, "lockcheck": "VERSION"}`),
/// which tells `clean_stale` whose directory this is.
pub(crate) fn write_marker(path: &Path) -> std::io::Result<fs::File> {
    let mut f = fs::File::create(path)?;
    writeln!(
        f,
        "{{\"pid\": {}, \"lockcheck\": \"{}\"}}",
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    )?;
    Ok(f)
}

/// The pid in a scratch marker (`{"pid": N, ...}`), if it has one.
fn marker_pid(marker: &Path) -> Option<i32> {
    let text = fs::read_to_string(marker).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("pid")?.as_i64().and_then(|p| i32::try_from(p).ok())
}

/// Remove the scratch directories a lockcheck that is gone left in `dir`
/// (after SIGKILL, or a crash): only entries named `.lockcheck-*` that are
/// real directories (not symlinks) holding lockcheck's marker file, whose
/// process no longer exists, and with nothing mounted inside. Anything else
/// is left alone, with the reason.
pub fn clean_stale(dir: &Path) -> std::io::Result<Vec<Cleaned>> {
    let mut out = Vec::new();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(SCRATCH_PREFIX) || name == SCRATCH_MARKER {
            continue;
        }
        let path = entry.path();
        let keep = |why: &str| Cleaned::Kept(path.clone(), why.to_string());
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_dir() {
            out.push(keep("not a directory (lockcheck makes directories)"));
            continue;
        }
        let marker = path.join(SCRATCH_MARKER);
        let is_marker = fs::symlink_metadata(&marker).is_ok_and(|m| m.file_type().is_file());
        let pid = is_marker.then(|| marker_pid(&marker)).flatten();
        let Some(pid) = pid else {
            out.push(keep("no lockcheck marker in it: not made by lockcheck"));
            continue;
        };
        if pid > 0 && Path::new(&format!("/proc/{pid}")).exists() {
            out.push(Cleaned::Kept(
                path.clone(),
                format!("its lockcheck (pid {pid}) may still be running"),
            ));
            continue;
        }
        let shown = path.to_string_lossy().to_string();
        if mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| m == shown || m.starts_with(&format!("{shown}/")))
        {
            out.push(keep("something is mounted inside it"));
            continue;
        }
        // remove_dir_all does not follow symlinks inside the directory.
        match fs::remove_dir_all(&path) {
            Ok(()) => out.push(Cleaned::Removed(path)),
            Err(e) => out.push(keep(&format!("cannot remove it: {e}"))),
        }
    }
    Ok(out)
}
