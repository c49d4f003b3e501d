//! Whole tools built on the engine: qualification of a target
//! ([`qualify`]), differential fuzzing ([`fuzz`]) and the application lab's
//! comparison of verdicts with real applications ([`oracle`]).
//!
//! May use: every layer below.

pub mod fuzz;
pub mod oracle;
pub mod qualify;
