//! Every command's help lists exactly the options it accepts: each option
//! on a help page parses with a value, and the command's own checks of its
//! options (such as `qualify` refusing those that write elsewhere) let it
//! through; an option a command refuses is not on its page. Options with
//! the same name take the same kind of value everywhere, and where output
//! goes is `--out` in every command that writes files.

use super::{command, qualify, Cli, Command};
use clap::FromArgMatches;
use std::collections::BTreeMap;

/// The long options on the option lines of a help page (`  -j, --jobs <N>`,
/// `      --out <DIR>`; descriptions are indented further).
fn listed_options(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        let t = line.trim_start();
        if indent > 6 || !t.starts_with('-') {
            continue;
        }
        let long = match t.find("--") {
            Some(i) => &t[i + 2..],
            None => continue,
        };
        let name: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !name.is_empty() && name != "help" && name != "version" {
            names.push(name);
        }
    }
    names
}

/// The values the help lists for an option (its visible possible values).
fn listed_values(arg: &clap::Arg) -> Vec<String> {
    arg.get_possible_values()
        .iter()
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect()
}

/// Values to try for an option or argument, first its own possible values.
fn candidates(arg: &clap::Arg) -> Vec<String> {
    let mut v = listed_values(arg);
    v.extend(
        [
            "1",
            "1s",
            "t=/tmp",
            "/tmp",
            "b=true",
            "crash=true",
            "nfs3=ganesha-nfs3",
            "x",
        ]
        .map(String::from),
    );
    v
}

/// Whether `lockcheck [SUB] REQUIRED... --NAME [VALUE]` parses and passes
/// the command's own checks: with every value the help lists for it, or
/// else with the first of [`candidates`] that clap accepts.
fn accepted(sub: Option<&clap::Command>, name: &str) -> Result<(), String> {
    let page = sub.cloned().unwrap_or_else(command);
    let arg = page
        .get_arguments()
        .find(|a| a.get_long() == Some(name))
        .ok_or_else(|| format!("--{name} is on the help page but not an argument"))?;
    if arg.is_hide_set() {
        return Err(format!("--{name} is hidden yet on the help page"));
    }
    let mut base = vec!["lockcheck".to_string()];
    if let Some(s) = sub {
        base.push(s.get_name().to_string());
    }
    // The other required arguments (positionals, and options such as
    // fuzz's --target): the first value each accepts.
    for p in page
        .get_arguments()
        .filter(|p| p.is_required_set() && !p.is_hide_set() && p.get_id() != arg.get_id())
    {
        let v = candidates(p)
            .into_iter()
            .map(|v| match p.get_long() {
                Some(l) => vec![format!("--{l}"), v],
                None => vec![v],
            })
            .find(|v| {
                let mut t = base.clone();
                t.extend(v.iter().cloned());
                // Only this argument's own errors count here.
                match command().try_get_matches_from(&t) {
                    Ok(_) => true,
                    Err(e) => e.kind() == clap::error::ErrorKind::MissingRequiredArgument,
                }
            })
            .ok_or_else(|| format!("no value for {} of {}", p.get_id(), page.get_name()))?;
        base.extend(v);
    }
    let mut tried = Vec::new();
    let listed = listed_values(arg);
    let values: Vec<Option<String>> = if arg.get_action().takes_values() {
        candidates(arg).into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut passed = false;
    for v in values {
        let mut argv = base.clone();
        argv.push(format!("--{name}"));
        argv.extend(v.clone());
        match command().try_get_matches_from(&argv) {
            Ok(m) => {
                let cli = Cli::from_arg_matches(&m).map_err(|e| format!("{argv:?}: {e}"))?;
                command_checks(&cli).map_err(|e| format!("{argv:?}: {e}"))?;
                passed = true;
                // Every value the help lists; else one value is enough.
                if !v.as_ref().is_some_and(|v| listed.contains(v)) {
                    return Ok(());
                }
            }
            Err(e) if v.as_ref().is_some_and(|v| listed.contains(v)) => {
                return Err(format!("{argv:?}: a listed value is refused: {}", e.kind()))
            }
            Err(e) => tried.push(format!("{argv:?}: {}", e.kind())),
        }
    }
    if passed {
        return Ok(());
    }
    Err(format!("--{name} is refused with every value: {tried:?}"))
}

/// The checks a command makes of its options before it starts.
fn command_checks(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        Some(Command::Qualify(q)) => qualify::check_options(q).map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

#[test]
fn every_listed_option_is_accepted() {
    let top = command();
    let mut pages: Vec<Option<clap::Command>> = vec![None];
    pages.extend(
        top.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .map(Some),
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let help = match page {
            Some(s) => command()
                .find_subcommand_mut(s.get_name())
                .map(|c| c.render_long_help().to_string())
                .unwrap_or_default(),
            None => command().render_long_help().to_string(),
        };
        let name = page.as_ref().map_or("lockcheck", |s| s.get_name());
        for opt in listed_options(&help) {
            checked += 1;
            match accepted(page.as_ref(), &opt) {
                Ok(()) => {}
                Err(e) => problems.push(format!("{name} --{opt}: {e}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // run's options, qualify's, bench's, ...: a walk that found nothing
    // proves nothing.
    assert!(
        checked > 60,
        "only {checked} options found on the help pages"
    );
}

#[test]
fn refused_options_are_not_listed() {
    // qualify accepts run's --format and --junit only to refuse them.
    let help = command()
        .find_subcommand_mut("qualify")
        .map(|c| c.render_long_help().to_string())
        .unwrap_or_default();
    let listed = listed_options(&help);
    for (opt, value) in [("format", "json"), ("junit", "/tmp/j.xml")] {
        assert!(!listed.contains(&opt.to_string()), "qualify lists --{opt}");
        let m = command()
            .try_get_matches_from(["lockcheck", "qualify", &format!("--{opt}"), value])
            .expect("parses");
        let cli = Cli::from_arg_matches(&m).expect("matches");
        assert!(command_checks(&cli).is_err(), "qualify accepts --{opt}");
    }
    assert!(
        listed.contains(&"out".to_string()),
        "qualify's help has no --out"
    );
}

#[test]
fn same_option_same_value_everywhere() {
    // long name -> (value name, commands)
    let mut seen: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let top = command();
    for s in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        for a in s.get_arguments().filter(|a| !a.is_hide_set()) {
            let (Some(long), Some(names)) = (a.get_long(), a.get_value_names()) else {
                continue;
            };
            let vn = names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            seen.entry(long.to_string())
                .or_default()
                .entry(vn)
                .or_default()
                .push(s.get_name().to_string());
        }
        // Where output goes: --out, nothing else.
        for a in s.get_arguments().filter(|a| !a.is_hide_set()) {
            let long = a.get_long().unwrap_or("");
            assert!(
                ![
                    "output",
                    "output-dir",
                    "outdir",
                    "dest",
                    "bundle",
                    "report-dir"
                ]
                .contains(&long),
                "{} spells where output goes --{long}: use --out",
                s.get_name()
            );
        }
    }
    let differing: Vec<String> = seen
        .iter()
        .filter(|(_, by)| by.len() > 1)
        .map(|(long, by)| format!("--{long}: {by:?}"))
        .collect();
    assert!(
        differing.is_empty(),
        "options with the same name take different values:\n{}",
        differing.join("\n")
    );
}
