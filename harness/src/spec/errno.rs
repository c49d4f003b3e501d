//! Error numbers by name, for scenario expectations and for reports.

/// The errno values a locking scenario can meaningfully expect or observe.
const TABLE: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ETXTBSY", libc::ETXTBSY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("EPIPE", libc::EPIPE),
    ("EDEADLK", libc::EDEADLK),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENOLCK", libc::ENOLCK),
    ("ENOSYS", libc::ENOSYS),
    ("ELOOP", libc::ELOOP),
    ("EOVERFLOW", libc::EOVERFLOW),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("ETIMEDOUT", libc::ETIMEDOUT),
    ("ESTALE", libc::ESTALE),
    ("EDQUOT", libc::EDQUOT),
];

/// The value of an errno name such as `EBADF`; `EWOULDBLOCK` and
/// `EDEADLOCK` are accepted as the Linux aliases they are.
pub(crate) fn by_name(name: &str) -> Option<i32> {
    match name {
        "EWOULDBLOCK" => Some(libc::EWOULDBLOCK),
        "EDEADLOCK" => Some(libc::EDEADLOCK),
        "ENOTSUP" => Some(libc::ENOTSUP),
        _ => TABLE.iter().find(|(n, _)| *n == name).map(|(_, v)| *v),
    }
}

/// The canonical name of an errno value, or `errno N` for one not in the table.
pub(crate) fn name(value: i32) -> String {
    TABLE
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(n, _)| (*n).to_string())
        .unwrap_or_else(|| format!("errno {value}"))
}

/// All names accepted in scenario files, for hints.
pub(crate) fn known_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TABLE.iter().map(|(n, _)| *n).collect();
    names.extend(["EWOULDBLOCK", "EDEADLOCK", "ENOTSUP"]);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (n, v) in TABLE {
            assert_eq!(by_name(n), Some(*v));
            assert_eq!(name(*v), *n);
        }
        assert_eq!(by_name("EWOULDBLOCK"), Some(libc::EAGAIN));
        assert_eq!(by_name("ENOPE"), None);
        assert_eq!(name(4242), "errno 4242");
    }
}
