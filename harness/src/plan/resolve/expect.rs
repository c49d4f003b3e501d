//! A step's expectation: parsed for the mechanism, checked against what the step can observe, and against its `unsupported` errnos and byte range.

use super::*;

impl Resolver<'_> {
    pub(super) fn expectation(
        &self,
        e: &Located<Expect>,
        nested: bool,
        conflict: &[i32],
    ) -> Result<Expectation, ScenarioError> {
        Ok(match &e.value {
            Expect::Ok => Expectation::Ok,
            Expect::Conflict => Expectation::Conflict(conflict.to_vec()),
            Expect::Errno(v, n) => Expectation::Errno {
                value: *v,
                name: n.clone(),
            },
            Expect::Blocks => Expectation::Blocks,
            Expect::Unlocked => Expectation::Unlocked,
            Expect::Any => Expectation::Any,
            Expect::Data(d) => Expectation::Data(d.clone()),
            Expect::Records(r) => Expectation::Records(*r),
            Expect::Lease(l) => Expectation::Lease(*l),
            Expect::Holder(h) => {
                let pid = match &h.pid {
                    None | Some(PidSpec::Any) => PidExpect::Any,
                    Some(PidSpec::Raw(n)) => PidExpect::Raw(*n),
                    Some(PidSpec::Actor(name)) => {
                        PidExpect::Actor(*self.index.get(name).ok_or_else(|| {
                            self.err(e.pos, format!("holder pid names unknown actor `{name}`"))
                                .with_hint("use an actor name, a number such as -1, or `any`")
                        })?)
                    }
                };
                Expectation::Holder {
                    mode: h.mode,
                    start: h.start,
                    len: h.len,
                    pid,
                }
            }
            Expect::OneOf(list) => Expectation::OneOf(
                list.iter()
                    .map(|x| self.expectation(x, true, conflict))
                    .collect::<Result<_, _>>()?,
            ),
            Expect::Winners { count, others } => {
                if nested {
                    return Err(
                        self.err(e.pos, "`winners` cannot be nested in another expectation")
                    );
                }
                Expectation::Winners {
                    count: *count,
                    others: Box::new(self.expectation(others, true, conflict)?),
                }
            }
            Expect::PerMechanism(map) => {
                if nested {
                    return Err(self.err(e.pos, "a per-mechanism expectation cannot be nested"));
                }
                for (m, v) in map {
                    if !self.mechs.contains(m) {
                        return Err(self.err(
                            v.pos,
                            format!(
                                "an expectation for {m}, but the scenario does not run with {m}"
                            ),
                        ));
                    }
                }
                let chosen = map.get(&self.mech).ok_or_else(|| {
                    self.err(
                        e.pos,
                        format!("no expectation for {} in this per-mechanism map", self.mech),
                    )
                    .with_hint(format!(
                        "the scenario runs with {}; give each of them",
                        self.mechs
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                self.expectation(chosen, false, conflict)?
            }
        })
    }

    /// Check that an expectation can be observed for this operation.
    pub(super) fn check_fits(
        &self,
        exp: &Expectation,
        op: &Op,
        n: usize,
        pos: Pos,
    ) -> Result<(), ScenarioError> {
        let bad = |what: &str, hint: &str| {
            Err(self.err(pos, what.to_string()).with_hint(hint.to_string()))
        };
        let is_test = matches!(op, Op::Test { .. });
        let lease_test = matches!(
            op,
            Op::Test {
                mech: Mechanism::Lease,
                ..
            }
        );
        match exp {
            Expectation::Blocks if !op.may_block() => bad(
                "only a waiting lock (`wait: true`), an `open` (a lease break) or an `await` can be expected to block",
                "add `wait: true` to the lock, or expect `conflict` for a lock that only tries",
            ),
            Expectation::Unlocked if !(is_test || matches!(op, Op::Listed { .. })) => bad(
                "`unlocked` describes the answer of a `test` or `listed` step",
                "use ok, conflict or an errno here",
            ),
            Expectation::Unlocked if lease_test => bad(
                "a lease test answers with `{leased: none|read|write}`",
                "write `expect: {leased: none}`",
            ),
            Expectation::Holder { .. } if !is_test || lease_test => bad(
                "`holder` describes the answer of a `test` step of a record lock",
                "use ok, conflict or an errno here",
            ),
            Expectation::Lease(_) if !lease_test => bad(
                "`leased` describes the answer of a `test` step with mechanism lease",
                "use ok, conflict or an errno here",
            ),
            Expectation::Data(_) if !matches!(op, Op::Read { .. }) => {
                bad("`data` describes what a `read` step returns", "use ok or an errno here")
            }
            Expectation::Records(_) if !matches!(op, Op::Read { .. }) => bad(
                "`records` describes what a `read` step returns",
                "read the file the `records` step wrote, and expect `{records: ...}` there",
            ),
            Expectation::Records(r)
                if matches!(op, Op::Read { len, offset, .. }
                    if *len < u64::from(r.count) * u64::from(r.size) || offset.is_some_and(|o| o != 0)) =>
            {
                bad(
                    "this `read` cannot see every record",
                    &format!("read from offset 0 (`offset: 0`) at least count × size = {} bytes", u64::from(r.count) * u64::from(r.size)),
                )
            }
            Expectation::Ok if matches!(op, Op::Test { .. } | Op::Read { .. }) => bad(
                "`ok` would accept any answer here",
                "say what the answer must be: `unlocked`, `{holder: ...}`, `{leased: ...}` or `{data: ...}`",
            ),
            Expectation::Conflict(_) if !matches!(op, Op::Lock { .. } | Op::Await { .. }) => bad(
                "`conflict` (a lock refused because another holds it) is for `lock` and `await` steps",
                "expect a specific errno instead",
            ),
            Expectation::Errno { .. } | Expectation::Conflict(_) | Expectation::Blocks
                if matches!(
                    op,
                    Op::Signal { .. }
                        | Op::Exit { .. }
                        | Op::Handle { .. }
                        | Op::Listed { .. }
                        | Op::Stop
                        | Op::Continue
                        | Op::CloseAll
                        | Op::Spawn { .. }
                        | Op::Lab { .. }
                ) =>
            {
                bad(
                    "this step can only expect `ok` (or `unlocked` for `listed`)",
                    "remove the expectation",
                )
            }
            Expectation::OneOf(list) => {
                for e in list {
                    self.check_fits(e, op, n, pos)?;
                }
                Ok(())
            }
            Expectation::Winners { count, others } => {
                if n < 2 {
                    return bad(
                        "`winners` needs several actors",
                        "write `actors: [a, b, ...]` or `actors: all`",
                    );
                }
                if *count as usize > n {
                    return Err(self.err(pos, format!("{count} winners among {n} actors")));
                }
                self.check_fits(others, op, n, pos)
            }
            _ => Ok(()),
        }
    }

    /// The step's expectation and where it is written (a step without one
    /// expects success, except those that only look).
    pub(super) fn step_expectation(
        &self,
        c: &Common<'_>,
        op: &Op,
        op_name: &str,
        pos: Pos,
        conflict: &[i32],
    ) -> Result<(Expectation, Pos), ScenarioError> {
        Ok(match c.expect {
            Some(e) => (self.expectation(e, false, conflict)?, e.pos),
            None => {
                if matches!(op, Op::Test { .. } | Op::Read { .. }) {
                    return Err(self
                        .err(pos, format!("a `{op_name}` step needs an `expect`"))
                        .with_hint(match op {
                            Op::Test {
                                mech: Mechanism::Lease,
                                ..
                            } => "expect `{leased: none}`, `{leased: read}` or `{leased: write}`",
                            Op::Test { .. } => {
                                "expect `unlocked` or `{holder: {mode: exclusive, pid: a}}`"
                            }
                            _ => "expect `{data: \"...\"}`",
                        }));
                }
                (Expectation::Ok, pos)
            }
        })
    }

    /// `unsupported` turns a failure into a skip: it must not name an outcome
    /// the step can legitimately have, or a real failure would hide.
    pub(super) fn check_unsupported(
        &self,
        c: &Common<'_>,
        unsupported: &[i32],
        expect: &Expectation,
        op: &Op,
        actors: &[usize],
        conflict: &[i32],
    ) -> Result<(), ScenarioError> {
        let mut legit = conflict.to_vec();
        expected_errnos(expect, &mut legit);
        // A lease is refused with EAGAIN when another process has the file
        // open; when no other process has anything open, EAGAIN can only
        // mean the filesystem does not grant leases (NFS without a delegation).
        if let Op::Lock {
            mech: Mechanism::Lease,
            kind: LockKind::Exclusive | LockKind::Shared,
            ..
        } = op
        {
            let mine: BTreeSet<usize> = actors.iter().map(|&i| self.owner(i)).collect();
            let others_open = (0..self.actors.len()).any(|j| {
                !mine.contains(&self.owner(j))
                    && matches!(self.state[j].life, Life::Alive)
                    && !self.state[j].fds.is_empty()
            });
            // A second descriptor of its own can conflict too.
            let own_second = mine.iter().any(|&o| self.state[o].fds.len() > 1);
            if !others_open && !own_second && !matches!(expect, Expectation::Conflict(_)) {
                legit.retain(|&e| e != libc::EAGAIN);
            }
        }
        for (u, e) in c.unsupported.iter().zip(unsupported) {
            if legit.contains(e) {
                return Err(self
                    .err(u.pos, format!("`{}` is an outcome this step can have, not a sign of missing support", u.value))
                    .with_hint("`unsupported` lists errno values that mean the target lacks the feature, such as EINVAL or ENOLCK"));
            }
        }
        Ok(())
    }

    /// A byte range no lock can have, expected to work: the scenario is
    /// wrong, not the target.
    pub(super) fn check_range(
        &self,
        op: &Op,
        expect: &Expectation,
        epos: Pos,
    ) -> Result<(), ScenarioError> {
        if let Op::Lock {
            mech,
            start,
            len,
            whence,
            ..
        }
        | Op::Test {
            mech,
            start,
            len,
            whence,
            ..
        } = op
        {
            // From the current offset or the end, only the kernel knows
            // where the range lands; an invalid origin never works.
            let impossible = match whence {
                Whence::Set => impossible_range(*start, *len),
                Whence::Invalid => Some((
                    "`whence: invalid` is no origin fcntl(2) knows".to_string(),
                    "EINVAL",
                )),
                Whence::Cur | Whence::End => None,
            };
            if let (true, Some((why, errno))) = (mech.has_ranges(), impossible) {
                if !expect.allows_an_errno() {
                    return Err(self
                        .err(epos, format!("no lock can cover this range: {why}, so the call fails with {errno}"))
                        .with_hint(format!("expect `{errno}` (see scenarios/range-negative-start-einval.yaml), or fix the range")));
                }
            }
        }
        Ok(())
    }
}
