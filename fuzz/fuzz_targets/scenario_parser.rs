//! Arbitrary bytes as a scenario file, read exactly as `lockcheck validate`
//! and `lockcheck run --scenarios DIR` read one: `catalog::load_file` is
//! `read_limited` (size check, `std::fs::read`) and then
//! `catalog::parse_scenario(shown, bytes, file_stem)`, which does the UTF-8
//! check, the YAML parse with the parser's budget, the name checks and the
//! planning for every mechanism. This target calls `parse_scenario` on the
//! bytes directly: nothing touches the filesystem.
//!
//! Properties, besides "no panic, no hang, bounded memory":
//! - an error always points at `file:line:column` with line and column >= 1
//!   (only a file over `MAX_FILE_BYTES` has no position), its message is not
//!   empty, and it renders as the CLI prints it;
//! - an accepted scenario has a kebab-case name, a plan or a reason for
//!   every mechanism it concerns, and parsing is deterministic: the same
//!   bytes give the same scenario and plans again;
//! - the file-name check agrees: the same bytes named `<name>.yaml` are
//!   accepted, named otherwise they are refused at the name's position.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lockcheck::plan::catalog::{parse_scenario, MAX_FILE_BYTES};
use lockcheck::spec::error::ScenarioError;

const FILE: &str = "fuzz.yaml";

fn check_error(e: &ScenarioError, data: &[u8]) {
    assert_eq!(e.file, FILE, "the error names another file: {e:?}");
    assert!(
        !e.message.trim().is_empty(),
        "an error without a message: {e:?}"
    );
    let shown = e.to_string();
    if data.len() > MAX_FILE_BYTES {
        // Refused for its size before it is read: no position to give.
        assert!(e.message.contains("at most"), "{shown}");
        return;
    }
    assert!(
        e.pos.line >= 1 && e.pos.col >= 1,
        "an error without a position (line {}, column {}): {shown}\ninput: {:?}",
        e.pos.line,
        e.pos.col,
        String::from_utf8_lossy(data)
    );
    let prefix = format!("{FILE}:{}:{}: ", e.pos.line, e.pos.col);
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} does not start with {prefix:?}"
    );
    if let Some(snippet) = &e.snippet {
        // `N | line` lines, then the caret under the column.
        let caret = snippet.lines().last().unwrap_or_default();
        assert!(caret.ends_with('^'), "snippet without a caret: {snippet:?}");
        assert!(
            !snippet.contains(|c: char| c.is_control() && c != '\n'),
            "a control character reaches the terminal: {snippet:?}"
        );
    }
}

fn summary(s: &lockcheck::plan::catalog::LoadedScenario) -> String {
    // What `lockcheck validate` prints for an accepted file, plus the plans.
    format!(
        "{}: {}\n{:?}\n{:?}",
        s.name(),
        s.plans_summary(),
        s.scenario,
        s.plans
    )
}

fuzz_target!(|data: &[u8]| {
    let loaded = match parse_scenario(FILE, data, None) {
        Err(e) => return check_error(&e, data),
        Ok(s) => s,
    };
    let name = loaded.name().to_string();
    assert!(
        !name.is_empty()
            && name.len() <= 80
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "accepted a name that is not kebab-case: {name:?}"
    );
    assert!(
        !loaded.plans.is_empty(),
        "accepted with no mechanism: {name}"
    );
    let first = summary(&loaded);

    // Deterministic, and the file-name check agrees with the name.
    let again = parse_scenario(FILE, data, Some(&name))
        .unwrap_or_else(|e| panic!("accepted as {FILE}, refused as {name}.yaml: {e}"));
    assert_eq!(
        first,
        summary(&again),
        "two parses of the same bytes differ"
    );
    let other = format!("{name}-not");
    let e = match parse_scenario(FILE, data, Some(&other)) {
        Err(e) => e,
        Ok(_) => panic!("scenario {name} accepted from {other}.yaml"),
    };
    check_error(&e, data);
    assert_eq!(
        e.pos, loaded.scenario.name.pos,
        "the name mismatch points elsewhere"
    );
});
