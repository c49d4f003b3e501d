//! Rendering for people and CI systems: a report as Markdown, JUnit XML and
//! console text, and writing its files ([`report`]); lock latency figures
//! ([`bench`](mod@bench)); the compatibility matrix across targets ([`matrix`]).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::engine`].

pub mod bench;
pub mod matrix;
pub mod report;
