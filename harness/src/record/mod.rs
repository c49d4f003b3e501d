//! Results as data: a trial's steps, measurements and failure, its status,
//! a target's report and summary. What is written as JSON is defined here.
//!
//! May use: [`crate::spec`], [`crate::actor`], [`crate::plan`], [`crate::target`].

pub mod report;
