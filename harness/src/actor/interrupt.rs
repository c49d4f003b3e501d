//! Ctrl-C (SIGINT), SIGTERM and SIGHUP: stop cleanly. The first signal
//! stops new trials, kills the actors of the running ones (through the
//! zygote, whose death takes the actors it forked with it) and lets the run
//! remove its scratch directories and unmount what it mounted; the exit
//! status is then 128 + the signal. A second signal ends the process at once.
//!
//! The handler only records the signal and writes a byte to a pipe (both
//! async-signal-safe); a thread does the rest. Handlers are reset by exec,
//! so actors and commands lockcheck starts are not affected.

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
/// The zygote's pid, once it runs (0: none).
static ZYGOTE: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL
        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
    let fd = PIPE_W.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = [1u8];
        // SAFETY: write is async-signal-safe; the buffer is valid.
        unsafe { libc::write(fd, b.as_ptr().cast(), 1) };
    }
}

/// The signal that interrupted the run, if one did.
pub fn interrupted() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Remember the zygote, which the first signal kills.
pub(crate) fn set_zygote(pid: i32) {
    ZYGOTE.store(pid, Ordering::SeqCst);
}

/// Install the handlers and the thread that acts on them.
pub fn install() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    PIPE_W.store(fds[1], Ordering::SeqCst);
    let read_fd = fds[0];
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut b = [0u8; 1];
            loop {
                // SAFETY: read into a valid one-byte buffer.
                let n = unsafe { libc::read(read_fd, b.as_mut_ptr().cast(), 1) };
                if n == 1 {
                    break;
                }
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            let sig = SIGNAL.load(Ordering::SeqCst);
            eprintln!(
                "\nlockcheck: {}: stopping the trials and cleaning up (again to quit at once)",
                nix::sys::signal::Signal::try_from(sig).map_or("signal", |s| s.as_str())
            );
            let z = ZYGOTE.load(Ordering::SeqCst);
            if z > 0 {
                // SAFETY: kill with a pid lockcheck started.
                unsafe { libc::kill(z, libc::SIGKILL) };
            }
        });
    if spawned.is_err() {
        return;
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
