//! lockcheck: tells, for any mounted directory, whether its file locking
//! really works — with evidence.
//!
//! # The map of the crate
//!
//! Each folder is one layer. A layer may use the layers listed above it and
//! never one below it: the table is the order, from the bottom of the
//! pipeline (the scenario language) to its top (whole tools). The test
//! `layers` (harness/tests/layers.rs) reads this table and every
//! `crate::…` path in `src/`, and fails on an edge that goes the wrong way.
//!
//! | layer | what it holds |
//! |---|---|
//! | [`spec`] | the scenario language, source locations, errno names, errors |
//! | [`actor`] | the actor process and its protocol, channel and zygote; paths beneath a directory; the `/proc` readers; Ctrl-C |
//! | [`plan`] | planning a scenario for a mechanism; lowering steps to system calls; the planned catalog |
//! | [`target`] | targets: arguments, mounts, identity, scratch directories and cleaning, hosts, provisioning |
//! | [`record`] | result data: trials, steps, measurements, summaries, reports |
//! | [`verdict`] | judging a step; application verdicts |
//! | [`engine`] | driving a trial through its actors; runs, job slots, barriers; lock benchmarks |
//! | [`render`] | reports as Markdown, JUnit and console text; the matrix |
//! | [`tools`] | qualification and differential fuzzing |
//!
//! The pipeline, followed by folder names: a scenario file is read into
//! [`spec::scenario`], planned for each mechanism by [`plan`] (its steps
//! lowered to system calls by [`plan::mech`]); [`engine::runner`] makes trials
//! (target × scenario × mechanism) and [`engine::driver`] runs each through
//! actor processes ([`actor`]), observing the kernel ([`actor::observe`]);
//! [`verdict::judge`] compares each step with its expectation; the results are
//! [`record`]s, written as JSON and rendered by [`render`].
//!
//! The command-line interface is the binary's, not the library's:
//! `src/main.rs` and `src/cli/`, one file per subcommand.

#![warn(missing_docs)]

pub mod actor;
pub mod engine;
pub mod plan;
pub mod record;
pub mod render;
pub mod spec;
pub mod target;
pub mod tools;
pub mod verdict;

pub use spec::error::{Error, Result};
