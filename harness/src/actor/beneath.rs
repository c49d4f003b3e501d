//! Paths that cannot leave their trial directory.
//!
//! Every path a scenario names is resolved by the actor relative to an
//! open descriptor of the trial directory, with openat2(2)'s
//! `RESOLVE_BENEATH`: a `..` or a symlink that leads out of the directory —
//! one planted there while the run goes on, say — makes the call fail with
//! `EXDEV`, and the kernel checks it at the moment of the call, so nothing
//! can be swapped in between a check and the use. Where openat2 is missing
//! (kernels before 5.6, seccomp filters that refuse it), the path is walked
//! one component at a time with `O_NOFOLLOW`: stricter, as no symlink is
//! followed at all.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::actor::protocol::Beneath;

/// Why a path could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The call failed with this errno (the path is inside, or unusable).
    Errno(i32),
    /// The path leads out of the directory (`..`, an absolute symlink, a
    /// symlink pointing out), or through a symlink where none is allowed.
    Escapes,
}

/// The words a refusal's message has (a trial's reason quotes it).
pub const LEADS_OUT: &str = "leads out of the trial directory";

impl Refusal {
    /// What an actor tells the harness.
    pub(crate) fn message(self, p: &Beneath) -> String {
        match self {
            Refusal::Escapes => format!(
                "`{}` {LEADS_OUT} {} (a `..`, or a symlink that points out of it — planted during the run?); lockcheck never follows a path out of its scratch directory",
                p.rel, p.dir
            ),
            Refusal::Errno(e) => format!("`{}`: errno {e}", p.rel),
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn cstring(s: &str) -> Result<CString, Refusal> {
    CString::new(s.as_bytes()).map_err(|_| Refusal::Errno(libc::EINVAL))
}

/// The trial directory itself, as a descriptor (its last component must not
/// be a symlink: lockcheck made it a directory).
fn open_dir(dir: &str) -> Result<OwnedFd, Refusal> {
    let c = cstring(dir)?;
    // SAFETY: a valid C string; the descriptor is owned from here on.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(match errno() {
            libc::ELOOP | libc::ENOTDIR => Refusal::Escapes,
            e => Refusal::Errno(e),
        });
    }
    // SAFETY: `fd` was just opened and is not owned by anything else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// openat2(dirfd, rel, flags, mode, RESOLVE_BENEATH); `None` when the
/// kernel has no openat2 (or a filter refuses it).
fn openat2_beneath(dirfd: RawFd, rel: &CStr, flags: i32, mode: u32) -> Option<Result<RawFd, i32>> {
    // SAFETY: open_how is plain data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    // The kernel rejects a mode without O_CREAT/O_TMPFILE.
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        how.mode = u64::from(mode);
    }
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // With RESOLVE_BENEATH, a `..` that races a rename or mount anywhere
    // gives EAGAIN: try again (not for O_NONBLOCK, whose EAGAIN is a lease
    // break's answer).
    for _ in 0..8 {
        // SAFETY: valid descriptor number (the kernel checks it), a valid C
        // string and a live open_how of the stated size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                rel.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if r >= 0 {
            return Some(Ok(r as RawFd));
        }
        match errno() {
            libc::ENOSYS | libc::EPERM => return None,
            libc::EAGAIN if flags & libc::O_NONBLOCK == 0 => continue,
            e => return Some(Err(e)),
        }
    }
    Some(Err(libc::EAGAIN))
}

/// The fallback: one component at a time, no symlink followed, no `..`.
fn walk_nofollow(dirfd: RawFd, rel: &str, flags: i32, mode: u32) -> Result<RawFd, Refusal> {
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if rel.starts_with('/') || parts.contains(&"..") {
        return Err(Refusal::Escapes);
    }
    // `.` (or only slashes and dots): the directory itself.
    let Some((last, dirs)) = parts.split_last() else {
        let c = cstring(".")?;
        // SAFETY: valid descriptor and C string.
        let fd = unsafe { libc::openat(dirfd, c.as_ptr(), flags, mode) };
        return if fd < 0 {
            Err(Refusal::Errno(errno()))
        } else {
            Ok(fd)
        };
    };
    // A trailing slash stays: it asks for a directory.
    let last = if rel.ends_with('/') {
        format!("{last}/")
    } else {
        last.to_string()
    };
    let mut held: Option<OwnedFd> = None;
    for d in dirs {
        let c = cstring(d)?;
        let at = held.as_ref().map_or(dirfd, |f| f.as_raw_fd());
        // SAFETY: valid descriptor and C string.
        let fd = unsafe {
            libc::openat(
                at,
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = errno();
            return Err(if is_symlink(at, &c) {
                Refusal::Escapes
            } else {
                Refusal::Errno(e)
            });
        }
        // SAFETY: just opened, owned here.
        held = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let c = cstring(&last)?;
    let at = held.as_ref().map_or(dirfd, |f| f.as_raw_fd());
    // SAFETY: valid descriptor and C string.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags | libc::O_NOFOLLOW, mode) };
    if fd < 0 {
        let e = errno();
        // O_NOFOLLOW on a symlink: ELOOP (or ENOTDIR with O_DIRECTORY).
        return Err(
            if matches!(e, libc::ELOOP | libc::ENOTDIR) && is_symlink(at, &c) {
                Refusal::Escapes
            } else {
                Refusal::Errno(e)
            },
        );
    }
    Ok(fd)
}

fn is_symlink(at: RawFd, name: &CStr) -> bool {
    // SAFETY: stat is plain data; valid descriptor, C string and buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(at, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// Open `p.rel` beneath `p.dir` with open(2) `flags` and `mode`.
pub(crate) fn open(p: &Beneath, flags: i32, mode: u32) -> Result<OwnedFd, Refusal> {
    let dir = open_dir(&p.dir)?;
    open_at(dir.as_raw_fd(), &p.rel, flags, mode)
}

fn open_at(dirfd: RawFd, rel: &str, flags: i32, mode: u32) -> Result<OwnedFd, Refusal> {
    if rel.starts_with('/') {
        return Err(Refusal::Escapes);
    }
    let c = cstring(rel)?;
    let fd = match openat2_beneath(dirfd, &c, flags, mode) {
        Some(Ok(fd)) => fd,
        Some(Err(libc::EXDEV)) => return Err(Refusal::Escapes),
        Some(Err(e)) => return Err(Refusal::Errno(e)),
        None => walk_nofollow(dirfd, rel, flags, mode)?,
    };
    // SAFETY: just opened, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory that holds `p.rel` (resolved beneath `p.dir`) and the
/// last component's name: for unlink, mkdir, rename and exclusive creation,
/// which act on a name in a directory.
pub(crate) fn parent(p: &Beneath) -> Result<(OwnedFd, CString), Refusal> {
    let rel = p.rel.trim_end_matches('/');
    let (dir_part, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", rel),
    };
    // `..` (or an absolute path) leads out; `.` names the directory itself,
    // which the *at calls refuse on their own (EEXIST, EBUSY, ...).
    if name == ".." || rel.starts_with('/') {
        return Err(Refusal::Escapes);
    }
    if name.is_empty() {
        return Err(Refusal::Errno(libc::ENOENT));
    }
    let top = open_dir(&p.dir)?;
    let dir = if dir_part.is_empty() {
        top
    } else {
        open_at(
            top.as_raw_fd(),
            dir_part,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            0,
        )?
    };
    Ok((dir, cstring(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn at(dir: &std::path::Path, rel: &str) -> Beneath {
        Beneath::new(dir, rel)
    }

    /// A directory `outside` with a file `secret`, and a trial directory
    /// with `sub/f`, `out` -> outside, `in` -> sub/f.
    fn tree() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "x").expect("write");
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path();
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("sub/f"), "y").expect("write");
        symlink(outside.path(), d.join("out")).expect("symlink");
        symlink("sub/f", d.join("in")).expect("symlink");
        (outside, t)
    }

    #[test]
    fn inside_paths_open_and_escapes_are_refused() {
        let (outside, t) = tree();
        let d = t.path();
        symlink(outside.path().join("secret"), d.join("sub/abs")).expect("symlink");

        assert!(open(&at(d, "sub/f"), libc::O_RDONLY, 0).is_ok());
        assert!(open(&at(d, "./sub//f"), libc::O_RDONLY, 0).is_ok());
        // A symlink that stays inside is followed (where openat2 exists:
        // the fallback follows none).
        let dot = cstring(".").expect("c");
        let top = open_dir(&d.to_string_lossy()).expect("dir");
        if openat2_beneath(top.as_raw_fd(), &dot, libc::O_PATH, 0).is_some() {
            assert!(open(&at(d, "in"), libc::O_RDONLY, 0).is_ok());
        }
        for rel in [
            "out/secret",
            "sub/abs",
            "../x",
            "sub/../../x",
            "/etc/passwd",
        ] {
            assert_eq!(
                open(&at(d, rel), libc::O_RDONLY, 0).err(),
                Some(Refusal::Escapes),
                "{rel}"
            );
        }
        // Creating through a planted symlink is refused too, and creates nothing.
        assert_eq!(
            open(&at(d, "out/new"), libc::O_CREAT | libc::O_WRONLY, 0o644).err(),
            Some(Refusal::Escapes)
        );
        assert!(!outside.path().join("new").exists());
        assert_eq!(
            open(&at(d, "missing"), libc::O_RDONLY, 0).err(),
            Some(Refusal::Errno(libc::ENOENT))
        );
        assert_eq!(parent(&at(d, "out/x")).err(), Some(Refusal::Escapes));
        let (_, name) = parent(&at(d, "sub/f")).expect("parent");
        assert_eq!(name.to_str(), Ok("f"));
        // The trial directory itself replaced by a symlink: refused.
        let moved = t.path().join("moved");
        symlink(outside.path(), &moved).expect("symlink");
        assert_eq!(
            open(&at(&moved, "secret"), libc::O_RDONLY, 0).err(),
            Some(Refusal::Escapes)
        );
    }

    #[test]
    fn the_fallback_walk_refuses_every_symlink() {
        let (_outside, t) = tree();
        let d = t.path();
        let dir = open_dir(&d.to_string_lossy()).expect("dir");
        let fd = dir.as_raw_fd();
        assert!(walk_nofollow(fd, "sub/f", libc::O_RDONLY, 0).is_ok());
        for rel in ["out/secret", "in", "../x", "sub/../f"] {
            assert_eq!(
                walk_nofollow(fd, rel, libc::O_RDONLY, 0).err(),
                Some(Refusal::Escapes),
                "{rel}"
            );
        }
        assert_eq!(
            walk_nofollow(fd, "nope/f", libc::O_RDONLY, 0).err(),
            Some(Refusal::Errno(libc::ENOENT))
        );
        // The directory itself; a trailing slash asks for a directory.
        assert!(walk_nofollow(fd, ".", libc::O_RDONLY | libc::O_DIRECTORY, 0).is_ok());
        assert!(walk_nofollow(fd, "sub/", libc::O_RDONLY, 0).is_ok());
        assert_eq!(
            walk_nofollow(fd, "sub/f/", libc::O_RDONLY, 0).err(),
            Some(Refusal::Errno(libc::ENOTDIR))
        );
    }
}
