//! Interim in-memory control state (replaced by the SQLite store).
#![allow(missing_docs)]
use crate::model::Scope;
use crate::policy::kill_switch::Pause;
use crate::ratelimit::RampSpec;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StateError(String);

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: SystemTime,
    pub action: String,
    pub scope: Option<Scope>,
    pub actor: String,
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Default)]
struct Mem {
    pauses: Vec<Pause>,
    audit: Vec<AuditEntry>,
    ramps: Vec<(Scope, RampSpec, SystemTime)>,
    adds: Vec<String>,
    removes: Vec<String>,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    mem: Mutex<Mem>,
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|e| StateError(e.to_string()))?;
        Ok(Store {
            path: state_dir.join("state.db"),
            mem: Mutex::default(),
        })
    }
    pub fn open_in_memory() -> Result<Store, StateError> {
        Ok(Store {
            path: PathBuf::from(":memory:"),
            mem: Mutex::default(),
        })
    }
    fn mem(&self) -> std::sync::MutexGuard<'_, Mem> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn audit_row(
        m: &mut Mem,
        action: &str,
        scope: Option<Scope>,
        actor: &str,
        reason: &str,
        detail: &str,
    ) {
        let id = m.audit.len() as i64 + 1;
        m.audit.push(AuditEntry {
            id,
            at: SystemTime::now(),
            action: action.into(),
            scope,
            actor: actor.into(),
            reason: reason.into(),
            detail: detail.into(),
        });
    }
    pub fn put_pause(&self, pause: &Pause) -> Result<(), StateError> {
        let mut m = self.mem();
        m.pauses.retain(|p| p.scope != pause.scope);
        m.pauses.push(pause.clone());
        Self::audit_row(
            &mut m,
            "pause",
            Some(pause.scope.clone()),
            &pause.actor,
            &pause.reason,
            "",
        );
        Ok(())
    }
    pub fn remove_pause(
        &self,
        scope: &Scope,
        actor: &str,
        detail: &str,
    ) -> Result<Option<Pause>, StateError> {
        let mut m = self.mem();
        let old = m
            .pauses
            .iter()
            .position(|p| &p.scope == scope)
            .map(|i| m.pauses.remove(i));
        Self::audit_row(&mut m, "resume", Some(scope.clone()), actor, "", detail);
        Ok(old)
    }
    pub fn expire_pause(&self, scope: &Scope) -> Result<Option<Pause>, StateError> {
        let mut m = self.mem();
        let old = m
            .pauses
            .iter()
            .position(|p| &p.scope == scope)
            .map(|i| m.pauses.remove(i));
        Self::audit_row(&mut m, "expire", Some(scope.clone()), "sendguard", "", "");
        Ok(old)
    }
    pub fn pauses(&self) -> Result<Vec<Pause>, StateError> {
        Ok(self.mem().pauses.clone())
    }
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        Ok(self.mem().audit.iter().rev().take(limit).cloned().collect())
    }
    pub fn put_ramp(
        &self,
        scope: &Scope,
        spec: &RampSpec,
        started_at: SystemTime,
    ) -> Result<(), StateError> {
        let mut m = self.mem();
        m.ramps.retain(|r| &r.0 != scope);
        m.ramps.push((scope.clone(), spec.clone(), started_at));
        Ok(())
    }
    pub fn remove_ramp(&self, scope: &Scope) -> Result<(), StateError> {
        self.mem().ramps.retain(|r| &r.0 != scope);
        Ok(())
    }
    pub fn ramps(&self) -> Result<Vec<(Scope, RampSpec, SystemTime)>, StateError> {
        Ok(self.mem().ramps.clone())
    }
    pub fn suppression_add(&self, entry: &str, _actor: &str) -> Result<(), StateError> {
        let mut m = self.mem();
        m.removes.retain(|e| e != entry);
        m.adds.push(entry.to_string());
        Ok(())
    }
    pub fn suppression_remove(&self, entry: &str, _actor: &str) -> Result<bool, StateError> {
        let mut m = self.mem();
        let had = m.adds.iter().any(|e| e == entry);
        m.adds.retain(|e| e != entry);
        if !had {
            m.removes.push(entry.to_string());
        }
        Ok(had)
    }
    pub fn suppression_overrides(&self) -> Result<(Vec<String>, Vec<String>), StateError> {
        let m = self.mem();
        Ok((m.adds.clone(), m.removes.clone()))
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}
