//! `lockcheck clean`: remove what a killed lockcheck left behind.

use std::path::PathBuf;
use std::process::ExitCode;

use lockcheck::Error;

use super::emit;

pub(crate) fn clean(dirs: Vec<PathBuf>) -> Result<ExitCode, Error> {
    let given = !dirs.is_empty();
    let dirs = if given {
        dirs
    } else {
        let mut d = vec![PathBuf::from("."), std::env::temp_dir()];
        if std::path::Path::new("/dev/shm").is_dir() {
            d.push(PathBuf::from("/dev/shm"));
        }
        d.dedup();
        d
    };
    let mut text = String::new();
    let mut removed = 0;
    for d in &dirs {
        let found = match lockcheck::target::targets::clean_stale(d) {
            Ok(f) => f,
            Err(e) if given => {
                return Err(Error::usage(
                    format!("clean {}: {e}", d.display()),
                    Some("give directories that exist (targets lockcheck ran on, TMPDIR)"),
                ))
            }
            Err(_) => continue,
        };
        for c in found {
            match c {
                lockcheck::target::targets::Cleaned::Removed(p) => {
                    removed += 1;
                    text.push_str(&format!(
                        "removed {}
",
                        p.display()
                    ));
                }
                lockcheck::target::targets::Cleaned::Kept(p, why) => {
                    text.push_str(&format!(
                        "kept {}: {why}
",
                        p.display()
                    ));
                }
            }
        }
    }
    text.push_str(&format!(
        "{removed} left-over director{} removed
",
        if removed == 1 { "y" } else { "ies" }
    ));
    emit(&text);
    Ok(ExitCode::SUCCESS)
}
