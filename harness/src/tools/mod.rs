//! Whole tools built on the engine: qualification of a target
//! ([`qualify`]) and differential fuzzing ([`fuzz`]).
//!
//! May use: every layer below.

pub mod fuzz;
pub mod qualify;
