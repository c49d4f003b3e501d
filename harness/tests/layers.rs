//! The crate's layering: every folder of `src/` is one layer, in the order
//! the table in `src/lib.rs`'s doc gives, and a layer may use only the layers
//! listed above it. This test reads that table and every `crate::…` path in
//! the library, and fails on an edge that goes the wrong way, naming the file
//! and line.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layer order, bottom first, from the rows ``| [`name`] | … |`` of the
/// table in lib.rs's doc.
fn layer_order(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//! | [`"))
        .filter_map(|rest| rest.split_once("`]").map(|(name, _)| name.to_string()))
        .collect()
}

/// A use of another layer: (line number, layer used).
fn layer_uses(source: &str, layers: &[String]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_group = false;
    for (i, raw) in source.lines().enumerate() {
        let line = match raw.find("//") {
            Some(c) => &raw[..c],
            None => raw,
        };
        let mut heads: Vec<&str> = Vec::new();
        // `crate::name…` anywhere on the line.
        let mut rest = line;
        while let Some(p) = rest.find("crate::") {
            rest = &rest[p + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                in_group = true;
                rest = group;
                continue;
            }
            heads.push(rest);
        }
        // The entries of a `use crate::{a::…, b::…}` group, over one or more lines.
        if in_group {
            let mut depth = 0usize;
            let mut start = true;
            let body = match line.find("crate::{") {
                Some(p) => &line[p + "crate::{".len()..],
                None => line,
            };
            for (j, ch) in body.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        in_group = false;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        heads.push(&body[j..]);
                        start = false;
                    }
                    _ => {}
                }
            }
        }
        for h in heads {
            let name: String = h
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if layers.contains(&name) {
                out.push((i + 1, name));
            }
        }
    }
    out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every edge that goes up a layer, as "file:line: a uses b (above it)".
fn violations(src: &Path, order: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for (rank, layer) in order.iter().enumerate() {
        let mut files = Vec::new();
        rs_files(&src.join(layer), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            for (line, used) in layer_uses(&text, order) {
                let used_rank = order.iter().position(|l| *l == used).expect("a layer");
                if used_rank > rank {
                    bad.push(format!(
                        "{}:{line}: {layer} uses {used}, a layer above it",
                        f.strip_prefix(src).unwrap_or(&f).display()
                    ));
                }
            }
        }
    }
    bad
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_folder_is_a_layer_of_the_map() {
    let src = src_dir();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let order = layer_order(&lib);
    assert!(
        order.len() >= 5,
        "no layer table found in lib.rs: {order:?}"
    );
    let folders: BTreeSet<String> = fs::read_dir(&src)
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "cli")
        .collect();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(
        folders, listed,
        "folders of src/ and the layer table in lib.rs differ"
    );
    for layer in &order {
        assert!(
            lib.contains(&format!("pub mod {layer};")),
            "lib.rs does not declare the layer {layer}"
        );
    }
    // Nothing but lib.rs and main.rs at the top: every other file is in a layer.
    let loose: Vec<String> = fs::read_dir(&src)
        .expect("src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n != "lib.rs" && n != "main.rs")
        .collect();
    assert!(loose.is_empty(), "files outside every layer: {loose:?}");
}

#[test]
fn no_layer_uses_a_layer_above_it() {
    let src = src_dir();
    let order = layer_order(&fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
    let bad = violations(&src, &order);
    assert!(
        bad.is_empty(),
        "edges going up a layer:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_sees_every_form_of_use() {
    let order: Vec<String> = ["spec", "plan", "engine"].map(String::from).to_vec();
    let src = "use crate::spec::loc::Pos;\n\
               use crate::{\n    engine::driver::Driver,\n    spec::{errno, loc},\n};\n\
               use crate::{plan::mech, engine};\n\
               // crate::engine in a comment does not count\n\
               fn f() { crate::engine::slots::Slots::new(); }\n";
    let uses = layer_uses(src, &order);
    assert_eq!(
        uses,
        vec![
            (1, "spec".to_string()),
            (3, "engine".to_string()),
            (4, "spec".to_string()),
            (6, "plan".to_string()),
            (6, "engine".to_string()),
            (8, "engine".to_string()),
        ]
    );
    // And an upward edge is reported with its file and line.
    let dir = tempfile::tempdir().expect("tempdir");
    for l in &order {
        fs::create_dir(dir.path().join(l)).expect("mkdir");
    }
    fs::write(
        dir.path().join("plan/x.rs"),
        "use crate::spec::loc;\nuse crate::engine::driver;\n",
    )
    .expect("write");
    assert_eq!(
        violations(dir.path(), &order),
        vec!["plan/x.rs:2: plan uses engine, a layer above it".to_string()]
    );
}
