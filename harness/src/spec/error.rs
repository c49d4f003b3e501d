//! Errors of the library. Bad input (scenario files, arguments, targets)
//! maps to exit status 2; `main` reports every error with its context.

use std::fmt;
use std::path::PathBuf;

use crate::spec::loc::Pos;

/// A problem in a scenario file, located at `file:line:column`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScenarioError {
    /// The file as the user named it.
    pub file: String,
    /// Where in the file (`0:0` when not known).
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
    pub(crate) hint: Option<String>,
    /// The offending line with a caret under the column, when the source is known.
    pub snippet: Option<String>,
}

impl ScenarioError {
    pub(crate) fn new(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        ScenarioError {
            file: file.into(),
            pos,
            message: message.into(),
            hint: None,
            snippet: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attach the lines around the position, with a caret, from the file's text.
    pub(crate) fn with_source(mut self, text: &str) -> Self {
        if self.pos.is_known() {
            self.snippet = snippet(text, self.pos);
        }
        self
    }
}

/// `N | line` for the line before and the line of `pos`, and a caret line.
fn snippet(text: &str, pos: Pos) -> Option<String> {
    let line_no = usize::try_from(pos.line).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no.checked_sub(1)?)?;
    let width = line_no.to_string().len();
    let mut out = String::new();
    if line_no >= 2 {
        if let Some(prev) = lines.get(line_no - 2) {
            out.push_str(&format!(
                "{:>width$} | {}\n",
                line_no - 1,
                printable(prev),
                width = width
            ));
        }
    }
    out.push_str(&format!(
        "{:>width$} | {}\n",
        line_no,
        printable(line),
        width = width
    ));
    let col = usize::try_from(pos.col.max(1)).unwrap_or(1);
    out.push_str(&format!(
        "{:>width$} | {}^",
        "",
        " ".repeat(col - 1),
        width = width
    ));
    Some(out)
}

/// Lines of a scenario are shown on a terminal: neutralise control characters.
fn printable(s: &str) -> String {
    let clipped: String = s.chars().take(200).collect();
    clipped
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect()
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pos.is_known() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.pos.line, self.pos.col, self.message
            )?;
        } else {
            write!(f, "{}: {}", self.file, self.message)?;
        }
        if let Some(s) = &self.snippet {
            write!(f, "\n{s}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems in scenario or application profile files, each at its place.
    #[error("{}", join_scenario_errors(.0))]
    Scenarios(Vec<ScenarioError>),
    /// A target directory that cannot be used.
    #[error("target {label:?} ({}): {message}{}", .path.display(), hint_suffix(.hint))]
    Target {
        /// The target's label.
        label: String,
        /// The directory as given.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
        /// What to do about it, if there is advice.
        hint: Option<String>,
    },
    /// Arguments or other input the user has to correct.
    #[error("{message}{}", hint_suffix(.hint))]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do instead, if there is advice.
        hint: Option<String>,
    },
    /// An I/O error, with what lockcheck was doing.
    #[error("{context}: {source}")]
    Io {
        /// What lockcheck was doing (`writing FILE`).
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn join_scenario_errors(errors: &[ScenarioError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref()
        .map(|h| format!("\n  hint: {h}"))
        .unwrap_or_default()
}

impl Error {
    /// An [`Error::Usage`] with this message and hint.
    pub fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }

    /// An [`Error::Io`]: `source`, met while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The process exit status for this error: 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Scenarios(_) | Error::Target { .. } | Error::Usage { .. } => 2,
            Error::Io { .. } => 1,
        }
    }
}

impl From<ScenarioError> for Error {
    fn from(e: ScenarioError) -> Self {
        Error::Scenarios(vec![e])
    }
}

/// A result whose error is lockcheck's [`Error`] unless another is given.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_file_line_column_snippet_and_hint() {
        let text = "name: x\nsteps:\n  - lokc: {}\n";
        let e = ScenarioError::new("s.yaml", Pos::new(3, 5), "unknown operation `lokc`")
            .with_hint("did you mean `lock`?")
            .with_source(text);
        let s = e.to_string();
        assert!(s.starts_with("s.yaml:3:5: unknown operation `lokc`"), "{s}");
        assert!(s.contains("3 |   - lokc: {}"), "{s}");
        assert!(s.contains("  |     ^"), "{s}");
        assert!(s.ends_with("hint: did you mean `lock`?"), "{s}");
    }

    #[test]
    fn control_characters_are_neutralised() {
        let e = ScenarioError::new("s.yaml", Pos::new(1, 1), "bad").with_source("a\u{1b}[31mb\n");
        assert!(!e.to_string().contains('\u{1b}'));
    }
}
