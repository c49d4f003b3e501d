//! Verdicts: whether what was observed satisfies what a step expects
//! ([`judge`]), how a trial that ran is classified ([`classify`]), and what
//! the results mean for real applications ([`apps`]), which results fail a
//! run ([`policy`]), and what changed between repeated runs ([`tally`]).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::record`].

pub mod applab;
pub mod apps;
pub mod classify;
pub mod judge;
pub mod policy;
pub mod tally;
