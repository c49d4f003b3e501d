//! The matrix page in a real browser: headless Chromium loads the page made
//! from the committed reports and the test reads what it rendered — the
//! table with every target, and the detail a selected cell shows (what was
//! expected, what was observed), with a real height on the page. Without
//! Chromium (`apt-get install chromium`) the trials are listed as ignored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// The committed JSON reports, in a stable order.
fn reports() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("reports"))
        .expect("reports/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".json") && !n.ends_with(".schema.json")
        })
        .collect();
    v.sort();
    v
}

/// The matrix page, written to a fresh directory.
fn page() -> Result<(tempfile::TempDir, PathBuf), Failed> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let html = dir.path().join("matrix.html");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockcheck"));
    cmd.arg("matrix").args(reports()).arg("--html").arg(&html);
    let o = cmd.output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned().into());
    }
    Ok((dir, html))
}

/// What Chromium rendered for `url`, as the document after its scripts ran.
fn render(browser: &str, url: &str) -> Result<String, Failed> {
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1600,1000",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    if dom.trim().is_empty() {
        return Err(format!(
            "{browser} rendered nothing: {}",
            String::from_utf8_lossy(&o.stderr)
        )
        .into());
    }
    Ok(dom)
}

/// The rendered height of the detail panel, and its text.
fn detail(dom: &str) -> Result<(f64, String), Failed> {
    let start = dom.find("<aside id=\"detail\"").ok_or("no detail panel")?;
    let end = dom[start..].find("</aside>").ok_or("unterminated panel")? + start;
    let panel = &dom[start..end];
    let open = &panel[..panel.find('>').ok_or("bad panel")?];
    if open.contains(" hidden") {
        return Err(format!("the detail panel is hidden: {open}").into());
    }
    let height: f64 = open
        .split("data-height=\"")
        .nth(1)
        .and_then(|h| h.split('"').next())
        .and_then(|h| h.parse().ok())
        .ok_or("the panel was never laid out")?;
    Ok((height, panel.to_string()))
}

fn failing_cell_shows_its_detail(browser: &str) -> Result<(), Failed> {
    let (_keep, html) = page()?;
    let url = format!(
        "file://{}#cell=nfs3-local_lock-all/cross-client-exclusion",
        html.display()
    );
    let dom = render(browser, &url)?;
    // The table: a column for every committed report, and the application
    // lab's rows (reports/app-lab.json, which matrix takes as --app-lab).
    if !dom.contains("Applications, predicted and observed") {
        return Err("no application lab rows".into());
    }
    for r in reports() {
        let label = r
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or("name")?
            .to_string();
        if label == "app-lab" {
            continue;
        }
        if !dom.contains(&format!(">{label}<br>")) {
            return Err(format!("no column for {label}").into());
        }
    }
    let (height, panel) = detail(&dom)?;
    if height < 50.0 {
        return Err(format!("the detail panel is {height} px high").into());
    }
    for want in [
        "cross-client-exclusion on nfs3-local_lock-all: unsafe",
        "expected",
        "conflict (EAGAIN or EACCES)",
        "observed",
    ] {
        if !panel.contains(want) {
            return Err(format!("the detail does not show {want:?}: {panel}").into());
        }
    }
    if !dom.contains("cross-client-exclusion on nfs3-local_lock-all: unsafe</div>") {
        return Err("the status line does not name the selected cell".into());
    }
    Ok(())
}

fn application_verdict_shows_its_reason(browser: &str) -> Result<(), Failed> {
    let (_keep, html) = page()?;
    let url = format!(
        "file://{}#app=nfs3-local_lock-all/prometheus",
        html.display()
    );
    let dom = render(browser, &url)?;
    let (height, panel) = detail(&dom)?;
    if height < 30.0 {
        return Err(format!("the detail panel is {height} px high").into());
    }
    for want in [
        "Prometheus TSDB on nfs3-local_lock-all: unsafe",
        "cross-client-exclusion::flock",
    ] {
        if !panel.contains(want) {
            return Err(format!("the detail does not show {want:?}: {panel}").into());
        }
    }
    Ok(())
}

/// A check run against one browser.
type Check = fn(&str) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let browser = chromium();
    let tests: [(&str, Check); 2] = [
        (
            "failing_cell_shows_its_detail",
            failing_cell_shows_its_detail,
        ),
        (
            "application_verdict_shows_its_reason",
            application_verdict_shows_its_reason,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| match browser {
            Some(b) => Trial::test(name, move || f(b)),
            None => Trial::test(name, || Ok(()))
                .with_ignored_flag(true)
                .with_kind("needs chromium"),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
