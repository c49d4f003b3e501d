//! Loading scenarios: from a directory, or the catalog built into the
//! binary. Loading parses and plans every scenario for every mechanism, so
//! that any mistake in a file is reported (exit 2, `file:line:column`)
//! before a single trial runs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde_saphyr::{Budget, MessageFormatter};

use crate::plan::resolve::{resolve_all, Applicability};
use crate::spec::error::{Error, Result, ScenarioError};
use crate::spec::loc::Pos;
use crate::spec::scenario::{Mechanism, Scenario, MAX_ROUNDS};

/// Scenario files larger than this are refused.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// A scenario file, parsed and planned.
#[derive(Debug)]
pub struct LoadedScenario {
    /// The file as shown to users.
    pub(crate) file: String,
    /// The scenario as parsed.
    pub scenario: Scenario,
    /// For each mechanism it concerns: its plan, or why it does not apply.
    pub plans: BTreeMap<Mechanism, Applicability>,
}

impl LoadedScenario {
    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.scenario.name
    }

    /// The mechanisms it applies to, by name.
    pub fn applicable_mechanisms(&self) -> Vec<&'static str> {
        self.plans
            .iter()
            .filter(|(_, a)| matches!(a, Applicability::Applies(_)))
            .map(|(m, _)| m.as_str())
            .collect()
    }

    /// Per mechanism: how many steps it runs, or `n/a` (what `validate` prints).
    pub fn plans_summary(&self) -> String {
        self.plans
            .iter()
            .map(|(m, a)| match a {
                Applicability::Applies(p) => format!("{m} ({} steps)", p.steps.len()),
                Applicability::NotApplicable(_) => format!("{m} n/a"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The scenarios of a run, loaded and planned.
pub struct Catalog {
    /// Where the scenarios came from.
    pub source: String,
    /// The scenarios, in name order.
    pub scenarios: Vec<Arc<LoadedScenario>>,
    /// FNV-1a over the scenario files' names and contents, in hex, to tell
    /// catalogs apart.
    pub hash: String,
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_catalog.rs"));
}

fn budget() -> Budget {
    let mut b = Budget::default();
    b.max_events = 200_000;
    b.max_aliases = 1_000;
    b.max_anchors = 1_000;
    b.max_depth = 64;
    b.max_nodes = 200_000;
    b.max_total_scalar_bytes = MAX_FILE_BYTES;
    b.max_documents = 1;
    b
}

/// A hint for the most common mistakes, keyed on the parser's message.
fn hint_for(message: &str) -> Option<&'static str> {
    if message.contains("unknown variant") {
        Some("a step is one operation: open, close, dup, lock, unlock, test, write, read, fork, exit, await, kill")
    } else if message.contains("expected end of mapping after enum variant value") {
        Some("put a step's fields under its operation: `- lock: {actor: a, mode: exclusive}`")
    } else if message.contains("flow mapping") || message.contains("flow sequence") {
        Some("inside `{...}` or `[...]`, quote text that contains `,`, `[`, `]`, `{`, `}` or `: `")
    } else if message.contains("unknown field `")
        && message.split('`').nth(1).is_some_and(|f| f.contains(' '))
    {
        Some("a comma inside `{...}` splits the value: quote text that contains `,`, such as `note: \"a, b\"`")
    } else if message.contains("unknown field") {
        Some("see scenarios/README.md for the keys each operation takes")
    } else if message.contains("tab") {
        Some("YAML indents with spaces, not tabs")
    } else if message.contains("invalid i64")
        || message.contains("invalid u64")
        || message.contains("invalid i32")
        || message.contains("invalid u32")
    {
        Some("the number does not fit the field: offsets and lengths are signed 64-bit (at most 9223372036854775807); counts and codes are smaller (see the JSON Schema)")
    } else if message.contains("missing field") {
        Some("see scenarios/README.md for the required keys")
    } else if message.contains("budget") || message.contains("limit") {
        Some("scenario files are small; aliases, nesting and size are limited")
    } else {
        None
    }
}

/// Position of the first invalid UTF-8 byte.
fn utf8_error_pos(bytes: &[u8], valid_up_to: usize) -> Pos {
    let before = &bytes[..valid_up_to];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Pos::new(line as u32, col as u32)
}

/// Parse a YAML document of this project's (a scenario, an application
/// profile) with the parser's budget, errors at `file:line:column`.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> std::result::Result<T, ScenarioError> {
    let options = serde_saphyr::options! { budget: Some(budget()) };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let inner = e.without_snippet();
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(inner)
            .into_owned();
        let pos = e
            .location()
            .map(|l| {
                Pos::new(
                    u32::try_from(l.line()).unwrap_or(0),
                    u32::try_from(l.column()).unwrap_or(0),
                )
            })
            .unwrap_or(Pos::UNKNOWN);
        let mut err = ScenarioError::new(file, pos, message.clone()).with_source(text);
        if let Some(h) = hint_for(&message) {
            err = err.with_hint(h);
        }
        err
    })
}

/// Parse and plan one scenario from its text.
pub fn parse_scenario(
    file: &str,
    bytes: &[u8],
    expected_name: Option<&str>,
) -> std::result::Result<LoadedScenario, ScenarioError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ScenarioError::new(
            file,
            Pos::UNKNOWN,
            format!(
                "the file is {} bytes; scenario files are at most {MAX_FILE_BYTES}",
                bytes.len()
            ),
        )
        .with_hint("a scenario describes one behaviour; split a large one"));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ScenarioError::new(
            file,
            utf8_error_pos(bytes, e.valid_up_to()),
            "the file is not valid UTF-8",
        )
        .with_hint("save the scenario as UTF-8 text")
    })?;
    if text.trim().is_empty() {
        return Err(ScenarioError::new(file, Pos::new(1, 1), "the file is empty")
            .with_hint("a scenario needs name, summary, reference, family, actors and steps; see scenarios/README.md"));
    }
    let mut scenario: Scenario = from_yaml(file, text)?;
    if let Some(r) = &scenario.rounds {
        if r.value == 0 || r.value > MAX_ROUNDS {
            return Err(ScenarioError::new(
                file,
                r.pos,
                format!("rounds: {} is out of range", r.value),
            )
            .with_hint(format!(
                "1 to {MAX_ROUNDS}: how many times the steps run in a row"
            ))
            .with_source(text));
        }
    }
    scenario.expand_rounds();
    let name = &scenario.name;
    let valid_name = !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if !valid_name {
        return Err(ScenarioError::new(
            file,
            name.pos,
            format!("scenario name {:?} is not kebab-case", name.value),
        )
        .with_hint("use lowercase letters, digits and `-`, such as `shared-vs-exclusive`")
        .with_source(text));
    }
    if let Some(expected) = expected_name {
        if expected != name.value {
            return Err(ScenarioError::new(
                file,
                name.pos,
                format!(
                    "the scenario is named `{}` but its file is `{expected}.yaml`",
                    name.value
                ),
            )
            .with_hint(
                "a scenario's name and file name are the same, so a trial id leads to its file",
            )
            .with_source(text));
        }
    }
    let plans = resolve_all(file, &scenario).map_err(|e| e.with_source(text))?;
    Ok(LoadedScenario {
        file: file.to_string(),
        scenario,
        plans,
    })
}

/// Read a scenario file, refusing one too large to be a scenario.
fn read_limited(path: &Path) -> std::result::Result<(String, Vec<u8>), ScenarioError> {
    let shown = path.display().to_string();
    let cannot = |e: std::io::Error| {
        ScenarioError::new(&shown, Pos::UNKNOWN, format!("cannot read it: {e}"))
    };
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(ScenarioError::new(
            &shown,
            Pos::UNKNOWN,
            format!(
                "the file is {} bytes; scenario files are at most {MAX_FILE_BYTES}",
                meta.len()
            ),
        )
        .with_hint("a scenario describes one behaviour; split a large one"));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    Ok((shown, bytes))
}

/// Load one file (for `lockcheck validate`).
pub fn load_file(path: &Path) -> std::result::Result<LoadedScenario, ScenarioError> {
    let (shown, bytes) = read_limited(path)?;
    let stem = path.file_stem().and_then(|s| s.to_str());
    parse_scenario(&shown, &bytes, stem)
}

/// FNV-1a over (file name, contents) pairs; independent of where the directory is.
fn fnv1a(data: &[(String, Vec<u8>)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, bytes) in data {
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for b in name
            .as_bytes()
            .iter()
            .chain([0u8].iter())
            .chain(bytes.iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn build(source: String, files: Vec<(String, Vec<u8>)>) -> Result<Catalog> {
    let mut errors = Vec::new();
    let mut scenarios: Vec<Arc<LoadedScenario>> = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (file, bytes) in &files {
        let stem = Path::new(file).file_stem().and_then(|s| s.to_str());
        match parse_scenario(file, bytes, stem) {
            Ok(s) => {
                if let Some(other) = seen.insert(s.name().to_string(), file.clone()) {
                    errors.push(ScenarioError::new(
                        file,
                        s.scenario.name.pos,
                        format!("scenario `{}` is also defined in {other}", s.name()),
                    ));
                } else {
                    scenarios.push(Arc::new(s));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Scenarios(errors));
    }
    scenarios.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(Catalog {
        source,
        hash: fnv1a(&files),
        scenarios,
    })
}

/// The catalog as Markdown tables by family (the list in scenarios/README.md).
pub fn markdown_table(cat: &Catalog) -> String {
    use std::fmt::Write as _;
    let mut scenarios: Vec<&Arc<LoadedScenario>> = cat.scenarios.iter().collect();
    scenarios.sort_by(|x, y| {
        (x.scenario.family.value, x.name()).cmp(&(y.scenario.family.value, y.name()))
    });
    let mut families: Vec<crate::spec::scenario::Family> =
        scenarios.iter().map(|s| s.scenario.family.value).collect();
    families.dedup();
    let mut out = format!(
        "{} scenarios in {} families. Each runs for every mechanism listed; a default mechanism (flock, posix, ofd) it leaves out is reported as a skip with the reason.\n",
        scenarios.len(),
        families.len()
    );
    for fam in families {
        let _ = write!(
            out,
            "\n### {} (`{}`)\n\n| scenario | severity | mechanisms | what it checks |\n|---|---|---|---|\n",
            fam.title(),
            fam.as_str()
        );
        for s in scenarios.iter().filter(|s| s.scenario.family.value == fam) {
            let mechs = s.applicable_mechanisms();
            let summary = s
                .scenario
                .summary
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let first = summary
                .split(". ")
                .next()
                .unwrap_or("")
                .trim_end_matches('.')
                .replace('|', "\\|");
            let _ = writeln!(
                out,
                "| [`{0}`]({0}.yaml) | {1} | {2} | {3} |",
                s.name(),
                s.scenario.severity.as_str(),
                mechs.join(", "),
                first
            );
        }
    }
    out
}

/// Load every `*.yaml` file of a directory.
pub fn load_dir(dir: &Path) -> Result<Catalog> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::usage(
            format!("cannot read scenario directory {}: {e}", dir.display()),
            Some("give a directory of scenario files with --scenarios DIR"),
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let (shown, bytes) = read_limited(&path)?;
        files.push((shown, bytes));
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::usage(
            format!("no scenario files (*.yaml) in {}", dir.display()),
            None,
        ));
    }
    build(dir.display().to_string(), files)
}

/// The catalog compiled into this binary (the repository's `scenarios/`).
pub(crate) fn embedded() -> Result<Catalog> {
    // build.rs refuses to build without scenario files; this guards a
    // binary built some other way, which must never report zero trials
    // as a pass.
    if embedded::FILES.is_empty() {
        return Err(Error::usage(
            format!(
                "this lockcheck {} was built without its scenario catalog (no built-in scenarios)",
                env!("CARGO_PKG_VERSION")
            ),
            Some("pass --scenarios DIR, or rebuild from a checkout or the published crate"),
        ));
    }
    let files = embedded::FILES
        .iter()
        .map(|(name, text)| (format!("scenarios/{name}"), text.as_bytes().to_vec()))
        .collect();
    build(
        format!(
            "built-in catalog of lockcheck {}",
            env!("CARGO_PKG_VERSION")
        ),
        files,
    )
}

/// The built-in catalog's scenario count and hash (as reports record
/// them), without parsing it: for `lockcheck --version`.
pub fn builtin_identity() -> Result<(usize, String)> {
    if embedded::FILES.is_empty() {
        return embedded().map(|c| (c.scenarios.len(), c.hash));
    }
    let files: Vec<(String, Vec<u8>)> = embedded::FILES
        .iter()
        .map(|(name, text)| (format!("scenarios/{name}"), text.as_bytes().to_vec()))
        .collect();
    Ok((files.len(), fnv1a(&files)))
}

/// `--scenarios DIR` if given; else `./scenarios` when it exists; else the built-in catalog.
pub fn load(dir: Option<&Path>) -> Result<Catalog> {
    match dir {
        Some(d) => load_dir(d),
        None => {
            let local = Path::new("scenarios");
            if local.is_dir() && local.join("README.md").is_file() {
                load_dir(local)
            } else {
                embedded()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_loads() {
        let c = embedded().expect("the built-in catalog is valid");
        assert!(!c.scenarios.is_empty());
        assert_eq!(c.hash.len(), 16);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let d = load_dir(&dir).expect("the scenario directory is valid");
        assert_eq!(
            d.hash, c.hash,
            "the hash does not depend on where the files are"
        );
        let (count, hash) = builtin_identity().expect("identity");
        assert_eq!((count, hash), (c.scenarios.len(), c.hash));
    }

    #[test]
    fn errors_have_positions_and_hints() {
        let e = parse_scenario("x.yaml", b"name: x\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a]\nsteps:\n  - lokc: {actor: a}\n", Some("x"))
            .expect_err("bad");
        assert_eq!((e.pos.line, e.pos.col), (7, 5));
        assert!(e.hint.as_deref().unwrap_or("").contains("one operation"));
        let e = parse_scenario("x.yaml", b"name: x\n\xff\n", None).expect_err("utf8");
        assert_eq!((e.pos.line, e.pos.col), (2, 1));
        let e = parse_scenario("x.yaml", b"  \n", None).expect_err("empty");
        assert!(e.message.contains("empty"));
        let e = parse_scenario("y.yaml", b"name: x\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a]\nsteps:\n  - open: {actor: a, path: f}\n", Some("y"))
            .expect_err("name");
        assert!(e.message.contains("file is `y.yaml`"));
    }

    #[test]
    fn rounds_repeat_the_steps_with_their_own_files() {
        let y = "name: x\nsummary: s\nreference: r\nfamily: exclusion\nactors: [a, b]\nrounds: 3\nsteps:\n  - open: {actors: all, path: \"f-{round}\", create: true, as: f}\n  - lock: {actor: a, mode: exclusive}\n  - close: {actors: all}\n";
        let s = parse_scenario("x.yaml", y.as_bytes(), Some("x")).expect("valid");
        let steps = &s.scenario.steps.value;
        assert_eq!(steps.len(), 9);
        let paths: Vec<String> = steps
            .iter()
            .filter_map(|st| match &st.value {
                crate::spec::scenario::Step::Open(o) => Some(o.path.value.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(paths, ["f-1", "f-2", "f-3"]);
        // Every round's steps keep the position they were written at.
        assert_eq!(steps[3].pos, steps[0].pos);
        // A round that leaves its descriptor open cannot open it again.
        let open = y.replace("  - close: {actors: all}\n", "");
        assert!(parse_scenario("x.yaml", open.as_bytes(), Some("x")).is_err());
        for bad in ["rounds: 0", "rounds: 1001"] {
            let e = parse_scenario("x.yaml", y.replace("rounds: 3", bad).as_bytes(), Some("x"))
                .expect_err(bad);
            assert_eq!((e.pos.line, e.pos.col), (6, 9), "{bad}: {e}");
            assert!(e.hint.as_deref().unwrap_or("").contains("1 to 1000"), "{e}");
        }
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..20 {
            let prev = i - 1;
            y.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let e = parse_scenario("bomb.yaml", y.as_bytes(), None).expect_err("bomb");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!e.message.is_empty());
    }
}
