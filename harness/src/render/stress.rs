//! Stress runs for people: the one-line outcome, the Markdown section (of
//! `LABEL.stress.md` and of a report made with `run --stress`), and the
//! scenario files that replay a finding.

use std::path::{Path, PathBuf};

use crate::actor::stress::Finding;
use crate::actor::stress::FindingKind;
use crate::record::stress::Stress;
use crate::render::bench::{format_us, group};
use crate::render::report::{md_escape, write_atomically};
use crate::spec::error::{Error, Result};
use crate::spec::scenario::Mechanism;

fn n(x: u64) -> String {
    group(x as f64)
}

/// One line: `clean: 1,234,567 requests in 60.0 s (20,576/s) by 8 processes on 1 host`.
pub fn headline(s: &Stress) -> String {
    let mut out = format!(
        "{}: {} requests in {:.1} s ({}/s) by {} process{} on {} host{}",
        s.verdict.as_str(),
        n(s.operations),
        s.elapsed_ms / 1000.0,
        group(s.operations_per_s),
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        s.hosts.len(),
        if s.hosts.len() == 1 { "" } else { "s" },
    );
    if !s.findings.is_empty() {
        let f = &s.findings[0].finding;
        out.push_str(&format!(
            "; {} finding{}, the first after {:.1} s and {} requests",
            s.findings.len() as u64 + s.findings_dropped,
            if s.findings.len() as u64 + s.findings_dropped == 1 {
                ""
            } else {
                "s"
            },
            f.after_ms / 1000.0,
            n(f.operations_before)
        ));
    }
    out
}

/// The time of a finding, `2026-12-06T14:03:11.123456Z`.
fn when(ns: u64) -> String {
    if ns == 0 {
        return "after the run".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_micros(t).to_string()
}

/// The stress run as Markdown (without a title).
pub fn markdown(s: &Stress) -> String {
    let mut m = String::new();
    m.push_str(&format!("**{}**\n\n", md_escape(&headline(s))));
    m.push_str(&format!(
        "Workers: {} process{} on each of host{} {}, for {:.0} s; mechanisms {}; seed {}; a blocking request not granted within {} s is a finding. \
         Each grant is checked by the holdings oracle (shared memory on each host) and the cells oracle (a sequence and writer under every exclusive lock, \
         checked before unlocking, and after the run against the writes made: {} cells, {} writes).\n\n",
        s.processes,
        if s.processes == 1 { "" } else { "es" },
        if s.hosts.len() == 1 { "" } else { "s" },
        s.hosts.join(", "),
        s.duration_ms / 1000.0,
        s.mechanisms.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", "),
        s.seed,
        s.wait_bound_ms / 1000,
        s.cells_checked,
        n(s.cell_writes),
    ));
    m.push_str("| mechanism | requests | per second | granted | refused (exclusive) | blocking | wait p50 | p99 | p99.9 | longest | errors |\n");
    m.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &s.results {
        let c = &r.counts;
        let (p50, p99, p999, max) = match &r.waits {
            Some(w) => (
                format!("≤ {}", format_us(w.p50_us as f64)),
                format!("≤ {}", format_us(w.p99_us as f64)),
                format!("≤ {}", format_us(w.p999_us as f64)),
                format_us(w.max_us as f64),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into(), "n/a".into()),
        };
        m.push_str(&format!(
            "| {} | {} | {} | {} | {} ({}) | {} | {p50} | {p99} | {p999} | {max} | {} |\n",
            c.mechanism,
            n(c.requests),
            group(r.requests_per_s),
            n(c.granted),
            n(c.refused),
            n(c.refused_exclusive),
            n(c.blocking),
            n(c.errors),
        ));
    }
    if s.findings.is_empty() {
        m.push_str("\nNo finding.\n");
    } else {
        m.push_str(&format!(
            "\n### Findings ({}{})\n\n",
            s.findings.len(),
            if s.findings_dropped > 0 {
                format!(" kept, {} more counted", s.findings_dropped)
            } else {
                String::new()
            }
        ));
        for f in &s.findings {
            m.push_str(&format!(
                "- **{}** {} at {} ({:.3} s, {} requests into the run): {}{}\n",
                f.severity.as_str().to_uppercase(),
                kind_text(f.finding.kind),
                when(f.finding.at_ns),
                f.finding.after_ms / 1000.0,
                n(f.finding.operations_before),
                md_escape(&f.finding.detail),
                f.replay
                    .as_ref()
                    .map(|r| format!(" Replay: `{r}`."))
                    .unwrap_or_default()
            ));
        }
    }
    for p in &s.problems {
        m.push_str(&format!("\n- problem: {}", md_escape(p)));
    }
    if !s.problems.is_empty() {
        m.push('\n');
    }
    m
}

fn kind_text(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Overlap => "overlapping locks",
        FindingKind::ChangedUnderLock => "data changed under a lock",
        FindingKind::LostUpdate => "lost update",
        FindingKind::WaitBound => "wait beyond the bound",
        FindingKind::Stuck => "workers stuck",
        FindingKind::Error => "unexpected error",
    }
}

/// Replay scenarios written for one stress run, at most.
const MAX_REPLAYS: usize = 3;

/// Write a replay scenario for the first overlaps
/// (`stress-finding-LABEL-N.yaml`, up to three distinct pairs of requests)
/// into `dir`; those findings get their replay file names. Returns the
/// paths written.
pub fn write_replays(s: &mut Stress, label: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    // A replay for the first few distinct pairs of requests (mechanisms and
    // modes): one finding in 100,000 requests comes with many more alike.
    let mut pairs = Vec::new();
    for f in &mut s.findings {
        if pairs.len() >= MAX_REPLAYS {
            break;
        }
        let (Some(a), Some(b)) = (&f.finding.other, &f.finding.holder) else {
            continue;
        };
        let pair = (a.mechanism, a.exclusive, b.mechanism, b.exclusive);
        if pairs.contains(&pair) {
            continue;
        }
        let name = format!("stress-finding-{label}-{}", pairs.len() + 1);
        if let Some(y) = replay_scenario(&name, &f.finding, label) {
            if written.is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
            pairs.push(pair);
            let file = dir.join(format!("{name}.yaml"));
            write_atomically(&file, &y)?;
            f.replay = Some(format!("{name}.yaml"));
            written.push(file);
        }
    }
    Ok(written)
}

/// Write `LABEL.stress.json`, `LABEL.stress.md` and the replay scenarios
/// ([`write_replays`]) into `dir`. Returns the paths written.
pub fn write(s: &mut Stress, label: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut written = write_replays(s, label, dir)?;
    let json = dir.join(format!("{label}.stress.json"));
    let text = serde_json::to_string_pretty(&*s)
        .map_err(|e| Error::usage(format!("cannot render the stress run: {e}"), None))?;
    write_atomically(&json, &(text + "\n"))?;
    let md = dir.join(format!("{label}.stress.md"));
    write_atomically(
        &md,
        &format!("# lockcheck stress: {label}\n\n{}", markdown(s)),
    )?;
    written.insert(0, md);
    written.insert(0, json);
    Ok(written)
}

fn yaml_mech(m: Mechanism) -> &'static str {
    match m {
        Mechanism::Flock => "flock",
        Mechanism::Posix => "posix",
        _ => "ofd",
    }
}

/// A scenario replaying an overlap: the first holder takes its lock, the
/// second asks for its incompatible one and must be refused, and the other
/// way round, many rounds (a fault seen once in 100,000 requests needs
/// many). None for findings
/// that are not a pair of locks on one host.
pub fn replay_scenario(name: &str, f: &Finding, target: &str) -> Option<String> {
    let (a, b) = (f.other.as_ref()?, f.holder.as_ref()?);
    if f.kind != FindingKind::Overlap || a.file != b.file {
        return None;
    }
    let lock = |who: &str, h: &crate::actor::stress::Holding, expect: &str, mech: Mechanism| {
        let mut s = format!(
            "  - lock: {{actor: {who}, mode: {}",
            if h.exclusive { "exclusive" } else { "shared" }
        );
        if h.mechanism != Mechanism::Flock {
            s.push_str(&format!(", start: {}", h.start));
            s.push_str(&format!(", len: {}", h.end.map_or(0, |e| e - h.start)));
        }
        if h.mechanism != mech {
            s.push_str(&format!(", mechanism: {}", yaml_mech(h.mechanism)));
        }
        s.push_str(expect);
        s.push_str("}\n");
        s
    };
    let mech = a.mechanism;
    let mut y = String::new();
    y.push_str(&format!("name: {name}\n"));
    y.push_str(&format!(
        "summary: >\n  Found by `lockcheck stress` on {target}: {} was granted while {}.\n  \
         Replayed here: the second request must be refused, round after round.\n",
        b.describe(),
        a.describe()
    ));
    y.push_str(
        "reference: >\n  POSIX fcntl() and flock(2): an exclusive lock keeps every other\n  \
         incompatible lock on any byte of its range out.\n",
    );
    y.push_str("family: exclusion\nseverity: unsafe\n");
    y.push_str(&format!("mechanisms: [{}]\n", yaml_mech(mech)));
    let others: Vec<&str> = ["flock", "posix", "ofd"]
        .into_iter()
        .filter(|m| *m != yaml_mech(mech))
        .collect();
    y.push_str("not-applicable:\n");
    for m in others {
        y.push_str(&format!(
            "  {m}: \"replays the mechanisms of one finding\"\n"
        ));
    }
    y.push_str("actors: [first, second]\nrounds: 1000\nsteps:\n");
    y.push_str(&format!(
        "  - open: {{actors: [first, second], path: {}, create: true}}\n",
        a.file
    ));
    // Both ways round: either request may be the one granted wrongly.
    let refused = ", expect: conflict, note: found granted by lockcheck stress";
    y.push_str(&lock("first", a, "", mech));
    y.push_str(&lock("second", b, refused, mech));
    y.push_str("  - unlock: {actor: first}\n");
    y.push_str(&lock("second", b, "", mech));
    y.push_str(&lock("first", a, refused, mech));
    y.push_str("  - unlock: {actor: second}\n");
    y.push_str("  - close: {actors: all}\n");
    Some(y)
}
