//! Values that remember where in a scenario file they were written.
//!
//! Every error about a scenario (a YAML syntax error or a semantic one found
//! later, such as a step naming an actor that does not exist) points at
//! `file:line:column`. Serde-saphyr records positions through its `Spanned`
//! wrapper; `Located` keeps that position in a form the rest of the crate
//! can copy around, and is transparent in the JSON Schema.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// A 1-based line and column in a scenario file; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Pos {
    /// The line, from 1 (0: not known).
    pub line: u32,
    /// The column, from 1 (0: not known).
    pub col: u32,
}

impl Pos {
    pub(crate) const UNKNOWN: Pos = Pos { line: 0, col: 0 };

    pub(crate) fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }

    pub(crate) fn is_known(&self) -> bool {
        self.line > 0
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value together with the position it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value read.
    pub value: T,
    /// Where it was written.
    pub pos: Pos,
}

impl<T> Located<T> {
    pub(crate) fn new(value: T, pos: Pos) -> Self {
        Located { value, pos }
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let at = spanned.referenced;
        Ok(Located {
            value: spanned.value,
            pos: Pos::new(clamp(at.line()), clamp(at.column())),
        })
    }
}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}
