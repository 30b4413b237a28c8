//! The control state as the guard uses it: the durable store plus the in-memory snapshots every
//! message is judged against.

use super::{StateError, Store};
use crate::model::Scope;
use crate::policy::kill_switch::{Pause, PauseSet};
use crate::ratelimit::{RampPolicy, RampSpec, Ramps};
use arc_swap::{ArcSwap, Guard};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Pauses and ramps, durable in a [`Store`] and live in a [`PauseSet`] snapshot and a [`Ramps`]
/// registry.
///
/// Every change is written to the store first (committed and synced), then applied in memory,
/// so what an admin call acknowledges survives a crash and is in force before the call returns.
/// Changes are serialized by a mutex so the store and the snapshots never disagree; reads on the
/// message path ([`pauses`](ControlState::pauses), [`ramps`](ControlState::ramps)) take no lock.
///
/// ```
/// # use sendguard::state::{ControlState, Store};
/// # use sendguard::policy::kill_switch::{Pause, PauseQuery};
/// # use sendguard::model::Scope;
/// # use sendguard::ratelimit::RampPolicy;
/// # use std::time::SystemTime;
/// let control = ControlState::load(Store::open_in_memory()?, &RampPolicy::default())?;
/// let now = SystemTime::now();
/// control.pause(Pause::new(Scope::Campaign("spring".into()), "leak", "ops", now))?;
/// let q = PauseQuery { campaign: Some("spring"), tenant: None, sender: "news@x.test", recipient_domain: None };
/// assert!(control.pauses().find(&q, now).is_some());
/// let ramp = "10/s..500/s/30m".parse().ok();
/// control.resume(&Scope::Campaign("spring".into()), "ops", ramp, false, now)?;
/// assert!(control.pauses().find(&q, now).is_none());
/// assert!(control.ramps().admit(&q, &["gmail.com"], now).is_ok());
/// # Ok::<(), sendguard::state::StateError>(())
/// ```
#[derive(Debug)]
pub struct ControlState {
    store: Store,
    pauses: ArcSwap<PauseSet>,
    ramps: Ramps,
    write: Mutex<()>,
}

impl ControlState {
    /// Loads the stored pauses and ramps (ramps continue from their stored start time; ramps
    /// whose time has passed are dropped). `policy.per_domain` decides per-domain limiting for
    /// the restored ramps.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn load(store: Store, policy: &RampPolicy) -> Result<ControlState, StateError> {
        let pauses = PauseSet::new(store.pauses()?);
        let ramps = Ramps::new();
        for (scope, spec, started_at) in store.ramps()? {
            ramps.start(scope, spec, started_at, policy.per_domain);
        }
        let control = ControlState {
            store,
            pauses: ArcSwap::from_pointee(pauses),
            ramps,
            write: Mutex::new(()),
        };
        for scope in control.ramps.sweep(SystemTime::now()) {
            control.store.remove_ramp(&scope)?;
        }
        Ok(control)
    }

    /// The store, for audit reads, suppression edits and other modules' tables.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current pause snapshot (lock-free; hold it only for one decision).
    pub fn pauses(&self) -> Guard<Arc<PauseSet>> {
        self.pauses.load()
    }

    /// The live ramps.
    pub fn ramps(&self) -> &Ramps {
        &self.ramps
    }

    /// Pauses `pause.scope` (replacing a pause there): durable, then in force. A ramp running on
    /// the scope is stopped (the next resume starts its own).
    ///
    /// # Errors
    /// The store cannot be written; then nothing changed (or, when only forgetting the stopped
    /// ramp failed, the pause is in force and the ramp's row stays until the next resume).
    pub fn pause(&self, pause: Pause) -> Result<(), StateError> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        self.store.put_pause(&pause)?;
        let scope = pause.scope.clone();
        let next = self.pauses.load().with(pause);
        self.pauses.store(Arc::new(next));
        if self.ramps.stop(&scope) {
            self.store.remove_ramp(&scope)?;
        }
        Ok(())
    }

    /// Resumes `scope`: removes its pause and starts `ramp` from `now` (durable in the same
    /// transaction), or resumes at full speed when `ramp` is `None`. Pass
    /// `policy.ramp_for(requested)` to apply the policy's default ramp. Returns the pause that was
    /// lifted; `None` (and no change) when the scope was not paused.
    ///
    /// # Errors
    /// The store cannot be written; then nothing changed.
    pub fn resume(
        &self,
        scope: &Scope,
        actor: &str,
        ramp: Option<RampSpec>,
        per_domain: bool,
        now: SystemTime,
    ) -> Result<Option<Pause>, StateError> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let lifted = self
            .store
            .resume(scope, actor, ramp.as_ref().map(|r| (r, now)))?;
        if lifted.is_some() {
            match ramp {
                Some(spec) => self.ramps.start(scope.clone(), spec, now, per_domain),
                None => drop(self.ramps.stop(scope)),
            }
            let next = self.pauses.load().without(scope);
            self.pauses.store(Arc::new(next));
        }
        Ok(lifted)
    }

    /// Housekeeping, to run every second or so: expires pauses whose time-to-live has passed
    /// (starting `policy`'s default ramp on their scope, as after a resume) and forgets ramps that
    /// have ended. Returns the expired pauses, for logs and metrics.
    ///
    /// # Errors
    /// The store cannot be written; what was done before the failure stays done.
    pub fn sweep(&self, policy: &RampPolicy, now: SystemTime) -> Result<Vec<Pause>, StateError> {
        let mut expired = Vec::new();
        let candidates = self.pauses.load().expired(now);
        if !candidates.is_empty() {
            let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
            for p in candidates {
                let scope = p.scope.clone();
                // The store checks the expiry of the pause it holds: one replaced meanwhile is
                // left alone.
                if let Some(gone) = self.store.expire_pause_at(&scope, now)? {
                    if let Some(spec) = policy.ramp_for(None) {
                        self.store.put_ramp(&scope, &spec, now)?;
                        self.ramps
                            .start(scope.clone(), spec, now, policy.per_domain);
                    }
                    expired.push(gone);
                }
                if self
                    .pauses
                    .load()
                    .get(&scope)
                    .is_some_and(|cur| cur.is_expired(now))
                {
                    let next = self.pauses.load().without(&scope);
                    self.pauses.store(Arc::new(next));
                }
            }
        }
        for scope in self.ramps.sweep(now) {
            self.store.remove_ramp(&scope)?;
        }
        Ok(expired)
    }
}

// Shared by every front-end and the admin API.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<ControlState>();
    shareable::<Store>();
    shareable::<Ramps>();
    shareable::<PauseSet>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::kill_switch::PauseQuery;
    use std::time::Duration;

    fn q(campaign: &str) -> PauseQuery<'_> {
        PauseQuery {
            campaign: Some(campaign),
            tenant: None,
            sender: "news@x.test",
            recipient_domain: None,
        }
    }

    #[test]
    fn restart_restores_pauses_and_ramp_progress() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let spring = Scope::Campaign("spring".into());
        {
            let control =
                ControlState::load(Store::open(dir.path()).unwrap(), &RampPolicy::default())
                    .unwrap();
            control
                .pause(Pause::new(Scope::Global, "freeze", "ops", now))
                .unwrap();
            control
                .pause(Pause::new(spring.clone(), "leak", "ops", now))
                .unwrap();
            let ramp: RampSpec = "10/s..110/s/1h".parse().unwrap();
            let lifted = control
                .resume(
                    &spring,
                    "ana",
                    Some(ramp),
                    false,
                    now - Duration::from_secs(1800),
                )
                .unwrap();
            assert_eq!(lifted.map(|p| p.reason), Some("leak".to_string()));
            assert_eq!(
                control.resume(&spring, "ana", None, false, now).unwrap(),
                None
            );
            std::mem::forget(control);
        }
        let control =
            ControlState::load(Store::open(dir.path()).unwrap(), &RampPolicy::default()).unwrap();
        let pauses = control.pauses();
        assert_eq!(pauses.len(), 1);
        assert_eq!(
            pauses.find(&q("spring"), now).map(|p| &p.reason[..]),
            Some("freeze")
        );
        let status = control.ramps().status(now);
        assert_eq!(status.len(), 1);
        assert!((status[0].rate_per_second - 60.0).abs() < 0.1, "{status:?}");
        let audit = control.store().audit(10).unwrap();
        assert_eq!(audit[0].detail, "ramp 10/s..110/s/1h");
    }

    #[test]
    fn sweep_expires_pauses_and_applies_the_default_ramp() {
        let control =
            ControlState::load(Store::open_in_memory().unwrap(), &RampPolicy::default()).unwrap();
        let now = SystemTime::now();
        let mut p = Pause::new(Scope::Campaign("spring".into()), "ttl", "ops", now);
        p.expires_at = Some(now + Duration::from_secs(60));
        control.pause(p).unwrap();
        let policy = RampPolicy {
            default: "1/s..2/s/1m".parse().ok(),
            per_domain: false,
        };
        assert!(control.sweep(&policy, now).unwrap().is_empty());
        assert_eq!(control.pauses().len(), 1);
        let now = now + Duration::from_secs(60);
        let expired = control.sweep(&policy, now).unwrap();
        assert_eq!(expired.len(), 1);
        assert!(control.pauses().is_empty());
        assert!(control.store().pauses().unwrap().is_empty());
        assert_eq!(control.ramps().status(now).len(), 1);
        assert!(control.ramps().admit(&q("spring"), &[], now).is_ok());
        assert!(control.ramps().admit(&q("spring"), &[], now).is_err());
        // After the ramp's time the sweep forgets it, in memory and on disk.
        let later = now + Duration::from_secs(61);
        assert!(control.sweep(&policy, later).unwrap().is_empty());
        assert!(control.ramps().is_empty());
        assert!(control.store().ramps().unwrap().is_empty());
    }

    #[test]
    fn pausing_stops_a_running_ramp() {
        let control =
            ControlState::load(Store::open_in_memory().unwrap(), &RampPolicy::default()).unwrap();
        let now = SystemTime::now();
        let spring = Scope::Campaign("spring".into());
        control
            .pause(Pause::new(spring.clone(), "a", "ops", now))
            .unwrap();
        control
            .resume(&spring, "ops", "1/s..2/s/1h".parse().ok(), false, now)
            .unwrap();
        assert!(!control.ramps().is_empty());
        control.pause(Pause::new(spring, "b", "ops", now)).unwrap();
        assert!(control.ramps().is_empty());
        assert!(control.store().ramps().unwrap().is_empty());
    }
}
