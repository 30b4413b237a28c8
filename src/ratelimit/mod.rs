//! Ramped resume: after a pause, a scope's rate grows from low to normal over a set time.
//!
//! [`RampSpec`] is the schedule (`10/s..500/s/30m`), [`RampPolicy`] the `[ramp]` policy section,
//! and [`Ramps`] the live registry the guard asks for every message ([`Ramps::admit`]). Limiting is
//! done by governor limiters swapped as the scheduled rate moves (see [`ramps`] for how).

pub mod ramps;
mod spec;

pub use ramps::{RampStatus, Ramps, BURST_SECONDS, RATE_TOLERANCE};
pub use spec::{
    RampParseError, RampPolicy, RampShape, RampSpec, Rate, RateParseError, RateUnit, DEFAULT_STEPS,
};
