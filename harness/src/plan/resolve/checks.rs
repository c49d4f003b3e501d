//! Small checks every step uses: errors at a position, timeouts and bounds (in leases too), the mechanism and what it can do, byte ranges.

use super::*;

impl Resolver<'_> {
    pub(super) fn err(&self, pos: Pos, msg: impl Into<String>) -> ScenarioError {
        ScenarioError::new(self.file, pos, msg)
    }

    /// A bound in time; in leases, it is reckoned with the default lease
    /// here and with the target's at run time.
    pub(super) fn check_bound(
        &self,
        b: &Located<crate::spec::scenario::Bound>,
        leases: &mut Option<f64>,
    ) -> Result<Duration, ScenarioError> {
        match b.value {
            crate::spec::scenario::Bound::Fixed(d) => self.check_timeout(&Located {
                value: crate::spec::scenario::Dur(d),
                pos: b.pos,
            }),
            crate::spec::scenario::Bound::Leases(n) => {
                *leases = Some(n);
                Ok(DEFAULT_LEASE.mul_f64(n))
            }
        }
    }

    pub(super) fn check_timeout(
        &self,
        t: &Located<crate::spec::scenario::Dur>,
    ) -> Result<Duration, ScenarioError> {
        if t.value.0.is_zero() || t.value.0 > MAX_TIMEOUT {
            return Err(self
                .err(
                    t.pos,
                    format!(
                        "timeout {} is out of range",
                        humantime::format_duration(t.value.0)
                    ),
                )
                .with_hint("give a duration between 1ms and 10m"));
        }
        Ok(t.value.0)
    }

    pub(super) fn mech_of(&self, m: Option<&Located<Mechanism>>) -> Mechanism {
        m.map(|l| l.value).unwrap_or(self.mech)
    }

    /// Check what a mechanism can do against what a lock step asks.
    pub(super) fn check_capability(
        &self,
        mech: Mechanism,
        explicit: Option<&Located<Mechanism>>,
        pos: Pos,
        what: &str,
        ok: bool,
    ) -> Result<(), ScenarioError> {
        if ok {
            return Ok(());
        }
        let hint = match explicit {
            Some(_) => format!("use another mechanism for this step; {mech} cannot"),
            None => format!(
                "leave {mech} out of `mechanisms` (with a reason in `not-applicable` if needed)"
            ),
        };
        Err(self
            .err(pos, format!("{mech} has no {what}, but this step needs it"))
            .with_hint(hint))
    }

    /// What a step of the scenario's own mechanism needs from it.
    pub(super) fn require(&self, pos: Pos, what: &str, ok: bool) -> Result<(), ScenarioError> {
        self.check_capability(self.mech, None, pos, what, ok)
    }

    /// A count field that must lie between 1 and `max`.
    pub(super) fn check_count(
        &self,
        field: &str,
        value: &Located<u32>,
        max: u32,
    ) -> Result<u32, ScenarioError> {
        if value.value == 0 || value.value > max {
            return Err(self.err(value.pos, format!("`{field}` must be between 1 and {max}")));
        }
        Ok(value.value)
    }

    pub(super) fn range(
        &self,
        mech: Mechanism,
        start: Option<&Located<i64>>,
        len: Option<&Located<i64>>,
        whence: Option<&Located<Whence>>,
        explicit: Option<&Located<Mechanism>>,
    ) -> Result<(i64, i64, Whence), ScenarioError> {
        let s = start.map(|l| l.value).unwrap_or(0);
        let l = len.map(|l| l.value).unwrap_or(0);
        let w = whence.map(|l| l.value).unwrap_or_default();
        if !mech.has_ranges() && (s != 0 || l != 0 || w != Whence::Set) {
            let pos = start
                .filter(|v| v.value != 0)
                .or(len)
                .map(|v| v.pos)
                .or(whence.map(|v| v.pos))
                .unwrap_or(Pos::UNKNOWN);
            self.check_capability(
                mech,
                explicit,
                pos,
                "byte ranges (it locks whole files)",
                false,
            )?;
        }
        Ok((s, l, w))
    }

    pub(super) fn timeout(&self, c: &Common<'_>) -> Result<Duration, ScenarioError> {
        match c.timeout {
            Some(t) => self.check_timeout(t),
            None => Ok(self.default_timeout),
        }
    }

    /// The step's timeout: `within` where the step bounds its call, else
    /// its `timeout` (or the scenario's); `within` in leases notes them.
    pub(super) fn step_timeout(
        &self,
        step: &Located<Step>,
        c: &Common<'_>,
        timeout: Duration,
        leases: &mut Option<f64>,
    ) -> Result<Duration, ScenarioError> {
        Ok(match &step.value {
            Step::Await(s) => match &s.within {
                Some(w) => self.check_bound(w, leases)?,
                None => timeout,
            },
            Step::Lock(s) => match &s.within {
                Some(w) => {
                    if !s.wait {
                        return Err(self
                            .err(w.pos, "`within` needs `wait: true`")
                            .with_hint("a lock that is only tried returns at once"));
                    }
                    if let Some(t) = c.timeout {
                        return Err(self
                            .err(w.pos, "give either `within` or `timeout`, not both")
                            .with_hint(format!(
                                "`within` is the bound for the call to complete (timeout was at {})",
                                t.pos
                            )));
                    }
                    if matches!(c.expect.map(|e| &e.value), Some(Expect::Blocks)) {
                        return Err(self
                            .err(w.pos, "`within` bounds a call that completes; `expect: blocks` says it must not")
                            .with_hint("expect the outcome (`ok`, an errno), or drop `within`"));
                    }
                    self.check_bound(w, leases)?
                }
                None => timeout,
            },
            // The actor answers after `within` at the latest.
            Step::Caught(s) => match &s.within {
                Some(w) => timeout.max(w.value.0 + Duration::from_secs(5)),
                None => timeout.max(Duration::from_secs(7)),
            },
            _ => timeout,
        })
    }
}
