//! Lock latency figures for people: the benchmarks section of a report and
//! the number formats the matrix shares.

use crate::record::bench::{Bench, Latency};

/// The benchmarks as a Markdown section.
pub fn markdown(b: &Bench) -> String {
    let mut s = String::new();
    s.push_str("| mechanism | lock+unlock median | p99 | hand-off median | p99 | throughput |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|\n");
    for m in &b.results {
        let lat = |l: &Option<Latency>| match l {
            Some(l) => (format_us(l.median_us), format_us(l.p99_us)),
            None => ("n/a".to_string(), "n/a".to_string()),
        };
        let (um, up) = lat(&m.uncontended);
        let (hm, hp) = lat(&m.handoff);
        let tp = match &m.throughput {
            Some(t) => format!(
                "{} locks/s ({} processes)",
                group(t.locks_per_s),
                t.processes
            ),
            None => "n/a".to_string(),
        };
        s.push_str(&format!(
            "| {} | {um} | {up} | {hm} | {hp} | {tp} |\n",
            m.mechanism
        ));
    }
    if b.results.iter().any(|m| m.io.is_some()) {
        s.push_str(
            "\n| mechanism | write, no lock | write, locked | read, no lock | read, locked |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|\n");
        for m in &b.results {
            if let Some(io) = &m.io {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    m.mechanism,
                    mib_s(io.unlocked.write_mib_s),
                    mib_s(io.locked.write_mib_s),
                    mib_s(io.unlocked.read_mib_s),
                    mib_s(io.locked.read_mib_s)
                ));
            }
        }
    }
    for m in &b.results {
        for p in &m.problems {
            s.push_str(&format!("\n- {}: {}", m.mechanism, p.replace('|', "\\|")));
        }
    }
    if b.results.iter().any(|m| !m.problems.is_empty()) {
        s.push('\n');
    }
    s
}

/// A rate in MiB/s for people: `812 MiB/s`, `3.4 MiB/s`.
fn mib_s(x: f64) -> String {
    if x >= 100.0 {
        format!("{} MiB/s", group(x))
    } else {
        format!("{x:.1} MiB/s")
    }
}

/// Microseconds for people: `3.2 µs`, `410 µs`, `12.5 ms`.
pub(crate) fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn group(x: f64) -> String {
    let n = x.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_us(3.24), "3.2 µs");
        assert_eq!(format_us(410.4), "410 µs");
        assert_eq!(format_us(12_500.0), "12.5 ms");
        assert_eq!(group(1_234_567.0), "1,234,567");
        assert_eq!(group(999.0), "999");
    }
}
