//! Rendering for people: the compatibility matrix across targets
//! ([`matrix`]).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::engine`].

pub mod matrix;
