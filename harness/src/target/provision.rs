//! Filesystems lockcheck makes for itself: xfs and btrfs on loop devices,
//! an overlay (upper layer on the local filesystem) and a FUSE passthrough
//! (bindfs). All of it lives in lockcheck's private mount namespace and in
//! scratch directories of its own, and is taken down when the run ends:
//! mounts are detached (a loop device mounted by mount(8) frees itself), a
//! FUSE daemon is stopped, images and layers are removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::target::targets::TargetSpec;

/// What can be provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Xfs,
    Btrfs,
    Overlay,
    Fuse,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Xfs, Kind::Btrfs, Kind::Overlay, Kind::Fuse];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
            Kind::Overlay => "overlay",
            Kind::Fuse => "fuse",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Vec<Kind>> {
        match s {
            "all" => Some(Kind::ALL.to_vec()),
            _ => Kind::ALL
                .iter()
                .copied()
                .find(|k| k.label() == s)
                .map(|k| vec![k]),
        }
    }
}

/// A provisioned filesystem: its target, and what to take down.
pub(crate) struct Provisioned {
    pub(crate) spec: TargetSpec,
    /// Mounted here (unmounted on drop).
    mount: Option<PathBuf>,
    /// The FUSE daemon.
    daemon: Option<Child>,
    /// Removed on drop, after the unmount.
    base: PathBuf,
}

impl Drop for Provisioned {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some(d) = self.daemon.as_mut() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(tool: &str, package: &str) -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(format!("needs `{tool}` (Debian package {package})"))
    }
}

/// A scratch directory of lockcheck's for layers or images: in `near`
/// (the local target's directory) when given and writable, else in TMPDIR.
/// It carries lockcheck's scratch marker, like every directory it makes.
fn base_dir(prefix: &str, near: Option<&Path>) -> Result<PathBuf, String> {
    let b = tempfile::Builder::new().prefix(prefix).to_owned();
    let dir = near
        .and_then(|d| b.tempdir_in(d).ok())
        .map(Ok)
        .unwrap_or_else(|| b.tempdir())
        .map(|d| d.keep())
        .map_err(|e| format!("creating a scratch directory: {e}"))?;
    crate::target::targets::write_marker(&dir.join(crate::target::targets::SCRATCH_MARKER))
        .map_err(|e| format!("writing in {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Wait (bounded) until `dir` is a mount point of type `fs_type`.
fn wait_mounted(dir: &Path, fs_type: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(m) = crate::target::targets::find_mount(dir) {
            if Path::new(&m.mount_point) == dir && m.fs_type.starts_with(fs_type) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        let _ = nix::poll::ppoll(
            &mut [],
            Some(nix::sys::time::TimeSpec::from_duration(pause)),
            None,
        );
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Make the filesystem `kind` and a target on it. `Err` says why it cannot
/// be made here (the run goes on without it and says so).
pub(crate) fn provision(
    kind: Kind,
    namespace: &std::result::Result<(), String>,
    near: Option<&Path>,
) -> Result<Provisioned, String> {
    if let Err(why) = namespace {
        return Err(format!("needs a private mount namespace, as root ({why})"));
    }
    match kind {
        Kind::Xfs | Kind::Btrfs => loop_image(kind),
        Kind::Overlay => overlay(near),
        Kind::Fuse => bindfs(near),
    }
}

/// xfs or btrfs on a sparse image on a loop device.
fn loop_image(kind: Kind) -> Result<Provisioned, String> {
    let (mkfs, package, args): (&str, &str, &[&str]) = match kind {
        Kind::Xfs => ("mkfs.xfs", "xfsprogs", &["-q", "-f"]),
        _ => ("mkfs.btrfs", "btrfs-progs", &["-q", "-f"]),
    };
    have(mkfs, package)?;
    let base = base_dir(&format!(".lockcheck-{}-", kind.label()), None)?;
    let mut p = Provisioned {
        spec: TargetSpec::default(),
        mount: None,
        daemon: None,
        base: base.clone(),
    };
    let image = base.join("image");
    let mnt = base.join("mnt");
    fs::create_dir(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
    // Sparse: only what the filesystem writes takes space.
    fs::File::create(&image)
        .and_then(|f| f.set_len(512 << 20))
        .map_err(|e| format!("creating the image: {e}"))?;
    run(Command::new(mkfs).args(args).arg(&image), mkfs)?;
    // mount(8) sets the loop device up to free itself on unmount.
    run(
        Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt),
        "mount -o loop",
    )?;
    p.mount = Some(mnt.clone());
    p.spec = TargetSpec {
        label: kind.label().into(),
        dir: mnt,
        provision: format!(
            "{} made by lockcheck: a 512 MiB sparse image on a loop device, in its private mount namespace",
            kind.label()
        ),
        ..TargetSpec::default()
    };
    Ok(p)
}

/// An overlay whose target directory starts in the lower layer.
fn overlay(near: Option<&Path>) -> Result<Provisioned, String> {
    let base = base_dir(".lockcheck-overlay-", near)?;
    let mut p = Provisioned {
        spec: TargetSpec::default(),
        mount: None,
        daemon: None,
        base: base.clone(),
    };
    let (lower, upper, work, merged) = (
        base.join("lower"),
        base.join("upper"),
        base.join("work"),
        base.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    // The target is a directory that exists in the lower layer.
    fs::create_dir(lower.join("target")).map_err(|e| format!("creating the lower layer: {e}"))?;
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("lockcheck-overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mounting overlay (layers in {}): {e}", base.display()))?;
    p.mount = Some(merged.clone());
    p.spec = TargetSpec {
        label: "overlay".into(),
        dir: merged.join("target"),
        provision: format!("overlayfs made by lockcheck: lower and upper layers in {}; trial directories start in the lower layer with `lower-file` in them", base.display()),
        lower: Some(lower.join("target")),
        ..TargetSpec::default()
    };
    Ok(p)
}

/// A bindfs FUSE passthrough over a source directory lockcheck keeps.
fn bindfs(near: Option<&Path>) -> Result<Provisioned, String> {
    have("bindfs", "bindfs")?;
    if !Path::new("/dev/fuse").exists() {
        return Err("needs /dev/fuse".into());
    }
    let base = base_dir(".lockcheck-fuse-", near)?;
    let mut p = Provisioned {
        spec: TargetSpec::default(),
        mount: None,
        daemon: None,
        base: base.clone(),
    };
    let (src, mnt) = (base.join("source"), base.join("mnt"));
    for d in [&src, &mnt] {
        fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    // In the foreground: lockcheck keeps the daemon and stops it, and
    // it is told to go if lockcheck dies first.
    let mut cmd = Command::new("bindfs");
    // SAFETY: prctl is async-signal-safe; the closure runs in the
    // child between fork and exec, while the harness is still
    // single-threaded (provisioning happens before any trial).
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let child = cmd
        .arg("-f")
        .arg(&src)
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting bindfs: {e}"))?;
    p.daemon = Some(child);
    // Unmounted on drop even if it mounts after we stopped waiting.
    p.mount = Some(mnt.clone());
    if !wait_mounted(&mnt, "fuse", Duration::from_secs(10)) {
        return Err("bindfs did not mount within 10 s".into());
    }
    p.spec = TargetSpec {
        label: "fuse".into(),
        dir: mnt,
        provision: format!(
            "bindfs (a FUSE passthrough without lock operations) made by lockcheck over {}",
            src.display()
        ),
        backing: Some(src),
        ..TargetSpec::default()
    };
    Ok(p)
}
