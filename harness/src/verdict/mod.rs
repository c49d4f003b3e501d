//! Verdicts: whether what was observed satisfies what a step expects
//! ([`judge`]), and what the results mean for real applications ([`apps`]).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::record`].

pub mod apps;
pub mod judge;
