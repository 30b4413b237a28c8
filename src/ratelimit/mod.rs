//! Interim ramp model (replaced by the governor-based implementation).
#![allow(missing_docs)]
use crate::model::Scope;
use crate::policy::kill_switch::PauseQuery;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate(f64);
impl Rate {
    pub fn per_second(&self) -> f64 {
        self.0
    }
}
impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, u) = s
            .split_once('/')
            .ok_or_else(|| format!("cannot parse rate {s:?}"))?;
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("cannot parse rate {s:?}"))?;
        let d = match u.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("cannot parse rate {s:?}")),
        };
        Ok(Rate(n / d))
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RampShape {
    Linear,
    Stepped { steps: u32 },
}
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RampSpec {
    pub from: Rate,
    pub to: Rate,
    pub over: Duration,
    pub shape: RampShape,
}
impl std::str::FromStr for RampSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("cannot parse ramp {s:?}: expected FROM..TO/OVER, e.g. 10/s..500/s/30m");
        let (from, rest) = s.split_once("..").ok_or_else(bad)?;
        let (to, over) = rest.rsplit_once('/').ok_or_else(bad)?;
        Ok(RampSpec {
            from: from.parse().map_err(|_| bad())?,
            to: to.parse().map_err(|_| bad())?,
            over: humantime::parse_duration(over).map_err(|_| bad())?,
            shape: RampShape::Linear,
        })
    }
}
impl std::fmt::Display for RampSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/s..{}/s/{}s",
            self.from.0,
            self.to.0,
            self.over.as_secs()
        )
    }
}
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampPolicy {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub per_domain: bool,
}
#[derive(Debug, Clone, Serialize)]
pub struct RampStatus {
    pub scope: Scope,
    pub spec: String,
    pub current_per_second: f64,
}
#[derive(Debug, Default)]
pub struct Ramps;
impl Ramps {
    pub fn new() -> Self {
        Ramps
    }
    pub fn start(
        &self,
        _scope: Scope,
        _spec: RampSpec,
        _started_at: SystemTime,
        _per_domain: bool,
    ) {
    }
    pub fn stop(&self, _scope: &Scope) -> bool {
        false
    }
    pub fn admit(
        &self,
        _q: &PauseQuery,
        _domains: &[&str],
        _now: SystemTime,
    ) -> Result<(), (Scope, Duration)> {
        Ok(())
    }
    pub fn status(&self, _now: SystemTime) -> Vec<RampStatus> {
        Vec::new()
    }
    pub fn is_empty(&self) -> bool {
        true
    }
}
