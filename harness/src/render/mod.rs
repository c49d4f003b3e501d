//! Rendering for people and CI systems: a report as Markdown, JUnit XML and
//! console text, and writing its files ([`report`]); lock latency figures
//! ([`bench`](mod@bench)); the compatibility matrix across targets ([`matrix`]),
//! and the application lab's predictions next to what the applications did
//! ([`applab`]).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::engine`].

pub mod applab;
pub mod bench;
pub mod matrix;
pub mod report;
pub mod stress;
