//! Opening a run's targets, with the policy that says which: the ones
//! given, or the defaults (`local`, and `tmpfs` in lockcheck's private mount
//! namespace); the filesystems `--provision` makes (asked for by name, one
//! that cannot be made is an error; as part of `all`, it is left out with a
//! note); the other hosts and the lab faults.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::runner::Session;
use crate::spec::error::{Error, Result};

/// What a run is to be tried on, as the command line gives it.
#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// `LABEL=DIR` for each target; none: the defaults.
    pub targets: Vec<String>,
    /// Filesystems to make and test: xfs, btrfs, overlay, fuse, all.
    pub provision: Vec<String>,
    /// Other hosts actors can run on, `NAME=COMMAND`.
    pub hosts: Vec<String>,
    /// The lockcheck binary as the other hosts name it.
    pub remote_exe: Option<PathBuf>,
    /// Lab faults the targets can inject, `KIND=COMMAND`.
    pub faults: Vec<String>,
    /// The file server's lease and grace period.
    pub lease: Duration,
}

impl Default for TargetOptions {
    fn default() -> Self {
        TargetOptions {
            targets: Vec::new(),
            provision: Vec::new(),
            hosts: Vec::new(),
            remote_exe: None,
            faults: Vec::new(),
            lease: crate::plan::resolve::DEFAULT_LEASE,
        }
    }
}

impl Session {
    /// Opens a run's targets: the given ones (or the defaults), plus the
    /// filesystems `--provision` makes, with hosts and lab faults. Every
    /// argument is checked before any filesystem is made.
    pub fn open_targets(a: &TargetOptions) -> Result<Session> {
        // Still single-threaded: the namespace covers every thread and actor.
        let namespace = crate::target::targets::enter_private_namespace();
        let (mut specs, tmpfs, mut notes) = if a.targets.is_empty() {
            let d = crate::target::targets::default_targets(&namespace);
            (d.specs, d.tmpfs, d.notes)
        } else {
            let specs = a
                .targets
                .iter()
                .map(|t| crate::target::targets::parse_target_arg(t))
                .collect::<Result<Vec<_>>>()?;
            for (i, s) in specs.iter().enumerate() {
                if let Some(o) = specs[..i].iter().find(|o| o.label == s.label) {
                    return Err(Error::usage(
                        format!(
                            "target label {:?} is given twice ({} and {})",
                            s.label,
                            o.dir.display(),
                            s.dir.display()
                        ),
                        Some("a bare --target DIR is labelled after its last component; give the targets labels of their own: --target LABEL=DIR"),
                    ));
                }
            }
            (specs, None, Vec::new())
        };
        // Everything that can be wrong with the arguments is found before any
        // filesystem is made.
        let mut kinds = Vec::new();
        let mut named = std::collections::BTreeSet::new();
        for p in &a.provision {
            match crate::target::provision::Kind::parse(p) {
                Some(k) => {
                    if p != "all" {
                        named.extend(k.iter().copied());
                    }
                    kinds.extend(k);
                }
                None => {
                    return Err(Error::usage(
                        format!("--provision {p:?}: unknown filesystem"),
                        Some("give xfs, btrfs, overlay, fuse or all"),
                    ))
                }
            }
        }
        kinds.sort();
        kinds.dedup();
        for k in &kinds {
            if specs.iter().any(|s| s.label == k.label()) {
                return Err(Error::usage(
                    format!("target label {:?} is given twice", k.label()),
                    Some("--provision names its targets after the filesystem; pick another --target label"),
                ));
            }
        }
        let mut hosts = a
            .hosts
            .iter()
            .map(|h| crate::target::targets::parse_host_arg(h))
            .collect::<Result<Vec<_>>>()?;
        for h in &mut hosts {
            h.exe.clone_from(&a.remote_exe);
        }
        let faults = crate::target::targets::parse_fault_args(&a.faults)?;
        // Layers and images go next to the `local` target when it is tested,
        // else into TMPDIR.
        let local_dir = specs
            .iter()
            .find(|s| s.label == "local" && a.targets.is_empty())
            .map(|s| s.dir.clone());
        let mut provisioned = Vec::new();
        for k in kinds {
            match crate::target::provision::provision(k, &namespace, local_dir.as_deref()) {
                Ok(p) => {
                    specs.push(p.spec.clone());
                    provisioned.push(p);
                }
                // Asked for by name: not having it is an error. Part of `all`:
                // the run goes on without it and says why.
                Err(why) if named.contains(&k) => {
                    return Err(Error::Target {
                        label: k.label().into(),
                        path: PathBuf::new(),
                        message: format!("cannot be made here: {why}"),
                        hint: Some("run as root, with the filesystem's tools installed".into()),
                    })
                }
                Err(why) => notes.push(format!("{}: not made here: {why}", k.label())),
            }
        }
        let mut session =
            Session::open_with(&specs, namespace, tmpfs, notes, &hosts, &faults, a.lease)?;
        session.provisioned = provisioned;
        Ok(session)
    }
}
