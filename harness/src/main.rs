//! The `lockcheck` command: an actor or the zygote when re-executed as one,
//! else the command line ([`cli`]).

use std::process::ExitCode;

mod cli;

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
