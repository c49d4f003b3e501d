//! Results as data: a trial's steps, measurements and failure, its status,
//! a target's report and summary ([`report`]), its lock latency figures
//! ([`bench`](mod@bench)) and what they mean for applications ([`apps`]). What is
//! written as JSON is defined here; how it reads is [`crate::render`]'s.
//!
//! May use: [`crate::spec`], [`crate::actor`], [`crate::plan`], [`crate::target`].

pub mod applab;
pub mod apps;
pub mod bench;
pub mod report;
pub mod stress;

/// A path, or a command line holding paths, as a published report shows
/// it: absolute paths under the current directory become relative to it
/// (the directory itself becomes `.`), so that a report names no
/// machine's checkout and its command runs the same from any clone. Paths
/// elsewhere (a target's mount point, `/tmp/...`) stay as they are.
pub(crate) fn portable(s: &str) -> String {
    portable_here()(s)
}

/// [`portable`] for many strings: the current directory read once.
pub(crate) fn portable_here() -> impl Fn(&str) -> String {
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    move |s: &str| relative_to(s, &cwd)
}

/// `s` with `dir` (an absolute path) made relative wherever a path starts.
fn relative_to(s: &str, dir: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || !s.contains(dir) {
        return s.to_string();
    }
    // A path starts at the beginning, or after a separator of the command
    // line or of an option's value.
    let starts_path = |c: Option<char>| {
        c.is_none_or(|c| matches!(c, ' ' | '\'' | '"' | '=' | ':' | ',' | '`' | '(' | '\t'))
    };
    let ends_path =
        |c: Option<char>| c.is_none_or(|c| matches!(c, ' ' | '\'' | '"' | ',' | '`' | ')' | '\t'));
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(dir) {
        // The character before the match, in the text as written so far.
        let before = if i > 0 {
            rest[..i].chars().last()
        } else {
            out.chars().last()
        };
        let after = &rest[i + dir.len()..];
        out.push_str(&rest[..i]);
        let next = after.chars().next();
        if starts_path(before) && next == Some('/') {
            rest = &after[1..];
            // "DIR/" alone (nothing after the slash) is the directory itself.
            if rest.chars().next().is_none_or(|c| ends_path(Some(c))) {
                out.push('.');
            }
        } else if starts_path(before) && ends_path(next) {
            out.push('.');
            rest = after;
        } else {
            out.push_str(dir);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::relative_to;

    #[test]
    fn paths_under_the_directory_become_relative() {
        let d = "/work/main";
        assert_eq!(
            relative_to(
                "/work/main/target/release/lockcheck run --scenarios /work/main/scenarios --out=/work/main/reports",
                d
            ),
            "target/release/lockcheck run --scenarios scenarios --out=reports"
        );
        assert_eq!(relative_to("/work/main", d), ".");
        assert_eq!(relative_to("/work/main/", d), ".");
        assert_eq!(
            relative_to("'b=/work/main/ci/x enter {target}'", d),
            "'b=ci/x enter {target}'"
        );
        assert_eq!(relative_to("t=/work/main,b:/work/main/x", d), "t=.,b:x");
        // Not a path under the directory: a longer name, or not at a path's start.
        assert_eq!(relative_to("/work/main2/x", d), "/work/main2/x");
        assert_eq!(relative_to("/mnt/work/main/x", d), "/mnt/work/main/x");
        assert_eq!(relative_to("/tmp/x /mnt/a", d), "/tmp/x /mnt/a");
        assert_eq!(relative_to("/tmp/x", "/"), "/tmp/x");
    }
}
