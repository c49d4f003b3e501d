//! Results as data: a trial's steps, measurements and failure, its status,
//! a target's report and summary ([`report`]), its lock latency figures
//! ([`bench`](mod@bench)) and what they mean for applications ([`apps`]). What is
//! written as JSON is defined here; how it reads is [`crate::render`]'s.
//!
//! May use: [`crate::spec`], [`crate::actor`], [`crate::plan`], [`crate::target`].

pub mod applab;
pub mod apps;
pub mod bench;
pub mod report;
pub mod stress;
