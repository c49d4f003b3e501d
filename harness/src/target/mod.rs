//! Targets: the directories lockcheck tests, with their labels, hosts and
//! lab faults as given on the command line, their mounts and identity, the
//! scratch directories made in them and the cleaning of stale ones, and the
//! filesystems lockcheck makes for itself ([`provision`]).
//!
//! May use: [`crate::spec`], [`crate::actor`], [`crate::plan`].

pub mod provision;
pub mod targets;
