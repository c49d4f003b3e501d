//! The actor side: the process the harness re-executes itself as (one per
//! scenario actor), the protocol and channel it is driven over, the zygote
//! that forks actors, path resolution beneath a trial directory, the `/proc`
//! readers that see a blocked call, and Ctrl-C handling.
//!
//! May use: [`crate::spec`]. Nothing of the planner: an actor performs the
//! system calls it is sent and reports what the kernel said.

pub mod beneath;
pub mod channel;
pub mod interrupt;
pub mod observe;
pub mod process;
pub mod protocol;
pub mod signature;
pub mod stress;
pub mod zygote;
