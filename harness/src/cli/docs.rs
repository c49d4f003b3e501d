//! `lockcheck completions SHELL`, `lockcheck man` and the long `--version`:
//! documentation generated from the command-line definitions themselves
//! (clap_complete, clap_mangen), so it cannot drift from what is accepted.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use lockcheck::Error;

/// The shells `lockcheck completions` writes for.
pub(crate) use clap_complete::Shell;

/// The completion script for `shell`, on standard output.
pub(crate) fn completions(shell: Shell) -> Result<ExitCode, Error> {
    let mut cmd = super::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "lockcheck", &mut out);
    out.flush()
        .map_err(|e| Error::io("writing the completions", e))?;
    Ok(ExitCode::SUCCESS)
}

/// The man page of lockcheck on standard output, or with `dir` one page
/// per command into it: lockcheck.1, lockcheck-run.1, ...
pub(crate) fn man(dir: Option<&Path>) -> Result<ExitCode, Error> {
    let cmd = super::command();
    let Some(dir) = dir else {
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(cmd)
            .render(&mut out)
            .map_err(|e| Error::io("writing the man page", e))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut pages = vec![("lockcheck".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("lockcheck-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .map_err(|e| Error::io(format!("rendering {name}.1"), e))?;
        std::fs::write(&path, buf)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        // The list of pages written; a closed standard output (`| head`)
        // does not undo them.
        let _ = writeln!(std::io::stdout(), "{}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `lockcheck --version`: the version and the built-in catalog it carries
/// (its hash is the one every report records).
pub(crate) fn version_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let catalog = match lockcheck::plan::catalog::builtin_identity() {
            Ok((count, hash)) => format!("built-in catalog: {count} scenarios, hash {hash}"),
            Err(e) => format!("built-in catalog: unusable ({e})"),
        };
        format!("{}\n{catalog}", env!("CARGO_PKG_VERSION"))
    })
}
