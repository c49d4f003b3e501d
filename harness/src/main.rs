//! The `lockcheck` command: an actor or the zygote when re-executed as one,
//! else the command line ([`cli`]).

use std::process::ExitCode;

mod cli;

/// glibc's getrandom() for the portable binary, which links against glibc
/// 2.17 (`ci/release`, `--cfg lockcheck_glibc_217`): the standard library
/// calls getrandom(), which glibc has only since 2.25. The system call is
/// what glibc's wrapper makes; where glibc has the function, this
/// definition takes its place in this binary, with the same behaviour.
#[cfg(lockcheck_glibc_217)]
#[no_mangle]
pub extern "C" fn getrandom(buf: *mut libc::c_void, len: usize, flags: libc::c_uint) -> isize {
    // SAFETY: the caller's buffer and length, passed on to the kernel.
    unsafe { libc::syscall(libc::SYS_getrandom, buf, len, flags) as isize }
}

fn main() -> ExitCode {
    if lockcheck::actor::process::is_actor_invocation() {
        lockcheck::actor::process::main();
    }
    if lockcheck::actor::stress::is_stress_invocation() {
        lockcheck::actor::stress::main();
    }
    if lockcheck::actor::zygote::is_zygote_invocation() {
        lockcheck::actor::zygote::main();
    }
    cli::main()
}
