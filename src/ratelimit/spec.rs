//! Rates, ramp schedules and the `[ramp]` policy section: plain values, parsing and serde.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest ramp accepted from text: a resume that takes longer is a mistake.
const MAX_OVER: Duration = Duration::from_secs(365 * 86_400);

/// Steps of a stepped ramp when the table form names no `steps`.
pub const DEFAULT_STEPS: u32 = 5;

/// The unit a [`Rate`] counts per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// Per second, written `/s`.
    Second,
    /// Per minute, written `/m`.
    Minute,
    /// Per hour, written `/h`.
    Hour,
}

impl RateUnit {
    fn seconds(self) -> f64 {
        match self {
            RateUnit::Second => 1.0,
            RateUnit::Minute => 60.0,
            RateUnit::Hour => 3600.0,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            RateUnit::Second => "s",
            RateUnit::Minute => "m",
            RateUnit::Hour => "h",
        }
    }
}

/// A message rate: `10/s`, `600/m`, `36000/h`. Always above zero.
///
/// Serialized as its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    count: u32,
    unit: RateUnit,
}

impl Rate {
    /// `count` messages per `unit`; `None` when `count` is zero (a zero rate is a pause).
    pub fn new(count: u32, unit: RateUnit) -> Option<Rate> {
        (count > 0).then_some(Rate { count, unit })
    }

    /// How many messages per [`unit`](Rate::unit).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The unit the count is per.
    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The rate in messages per second (`600/m` is `10.0`).
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.unit.seconds()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit.suffix())
    }
}

/// A rate could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse rate {input:?}: {why}")]
pub struct RateParseError {
    input: String,
    why: &'static str,
}

fn parse_rate(s: &str) -> Result<Rate, &'static str> {
    const SHAPE: &str = "expected N/s, N/m or N/h, e.g. 10/s";
    let (n, unit) = s.trim().split_once('/').ok_or(SHAPE)?;
    let n = n.trim();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SHAPE);
    }
    let unit = match unit.trim() {
        "s" => RateUnit::Second,
        "m" => RateUnit::Minute,
        "h" => RateUnit::Hour,
        _ => return Err(SHAPE),
    };
    let count: u32 = n.parse().map_err(|_| "the count is too large")?;
    Rate::new(count, unit).ok_or("the rate must be above zero (to stop sending, pause)")
}

impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rate(s).map_err(|why| RateParseError {
            input: s.to_string(),
            why,
        })
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// How a ramp moves from its start rate to its end rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RampShape {
    /// The rate grows evenly over the whole ramp (`shape = "linear"`).
    #[default]
    Linear,
    /// The ramp is cut into `steps` equal stretches of time; the first runs at the start rate, the
    /// last at the end rate, the ones between at evenly spaced rates (`shape = "stepped"`).
    Stepped {
        /// How many stretches (2 or more).
        steps: u32,
    },
}

/// A ramp: the allowed rate grows from `from` to `to` over `over`, then the ramp ends.
///
/// Text form `FROM..TO/OVER`, e.g. `10/s..500/s/30m` (linear), with an optional ` in N steps`
/// for the stepped shape: `10/s..500/s/30m in 5 steps`. In serde it is written as that string,
/// and read from the string or from a table
/// `{from = "10/s", to = "500/s", over = "30m", shape = "stepped", steps = 5}` (`shape` defaults to
/// `linear`, `steps` to 5), which is also the admin API's body `{"from": "10/s", "to": "500/s",
/// "over": "30m"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RampSpec {
    /// The rate right after the resume.
    pub from: Rate,
    /// The rate reached at the end of the ramp.
    pub to: Rate,
    /// How long the ramp lasts; after it the scope is back to normal.
    pub over: Duration,
    /// How the rate moves between `from` and `to`.
    pub shape: RampShape,
}

impl RampSpec {
    /// The allowed rate in messages per second `elapsed` after the ramp started; `None` once
    /// `over` has passed (the ramp has ended).
    pub fn rate_at(&self, elapsed: Duration) -> Option<f64> {
        self.phase_at(elapsed).map(|(rate, _)| rate)
    }

    /// The rate and the step index (0 for linear ramps) at `elapsed`.
    pub(crate) fn phase_at(&self, elapsed: Duration) -> Option<(f64, u32)> {
        if elapsed >= self.over {
            return None;
        }
        let from = self.from.per_second();
        let to = self.to.per_second();
        let frac = elapsed.as_secs_f64() / self.over.as_secs_f64();
        match self.shape {
            RampShape::Linear => Some((from + (to - from) * frac, 0)),
            RampShape::Stepped { steps } => {
                let n = steps.max(1);
                let step = ((frac * f64::from(n)).floor() as u32).min(n - 1);
                let rate = if n == 1 {
                    from
                } else {
                    from + (to - from) * f64::from(step) / f64::from(n - 1)
                };
                Some((rate, step))
            }
        }
    }
}

/// Formats a duration the way it is written in commands: `30s`, `10m`, `2h`, `1d`.
pub(crate) fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

impl fmt::Display for RampSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}..{}/{}",
            self.from,
            self.to,
            format_duration(self.over)
        )?;
        match self.shape {
            RampShape::Linear => Ok(()),
            RampShape::Stepped { steps } => write!(f, " in {steps} steps"),
        }
    }
}

/// A ramp could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse ramp {input:?}: {why}")]
pub struct RampParseError {
    input: String,
    why: String,
}

const RAMP_SHAPE: &str = "expected FROM..TO/OVER, e.g. 10/s..500/s/30m";

fn ramp_rate(s: &str) -> Result<Rate, String> {
    parse_rate(s).map_err(|why| format!("bad rate {:?}: {why}", s.trim()))
}

fn ramp_over(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("bad duration {s:?}: expected e.g. 30s, 10m, 2h, 1d");
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let d = humantime::parse_duration(s).map_err(|_| bad())?;
    if d.is_zero() {
        return Err("the ramp must last longer than zero".into());
    }
    if d > MAX_OVER {
        return Err("the ramp must last at most 365d".into());
    }
    Ok(d)
}

fn ramp_steps(steps: u32) -> Result<RampShape, String> {
    if steps < 2 {
        return Err(format!("a stepped ramp needs 2 steps or more, not {steps}"));
    }
    Ok(RampShape::Stepped { steps })
}

fn parse_ramp(s: &str) -> Result<RampSpec, String> {
    let s = s.trim();
    let (body, shape) = match s.strip_suffix(" steps").and_then(|b| b.rsplit_once(" in ")) {
        Some((body, n)) => {
            let n = n.trim();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("bad step count {n:?}"));
            }
            let steps = n.parse().map_err(|_| format!("bad step count {n:?}"))?;
            (body, ramp_steps(steps)?)
        }
        None => (s, RampShape::Linear),
    };
    let (from, rest) = body.split_once("..").ok_or(RAMP_SHAPE)?;
    let (to, over) = rest.rsplit_once('/').ok_or(RAMP_SHAPE)?;
    if !to.contains('/') {
        return Err(RAMP_SHAPE.into());
    }
    Ok(RampSpec {
        from: ramp_rate(from)?,
        to: ramp_rate(to)?,
        over: ramp_over(over)?,
        shape,
    })
}

impl FromStr for RampSpec {
    type Err = RampParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_ramp(s).map_err(|why| RampParseError {
            input: s.to_string(),
            why,
        })
    }
}

impl Serialize for RampSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Shape names as written in tables: `"linear"` or `"stepped"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShapeName {
    #[default]
    Linear,
    Stepped,
}

fn shape_of(name: ShapeName, steps: Option<u32>) -> Result<RampShape, String> {
    match (name, steps) {
        (ShapeName::Linear, None) => Ok(RampShape::Linear),
        (ShapeName::Linear, Some(_)) => Err("steps applies only to shape = \"stepped\"".into()),
        (ShapeName::Stepped, steps) => ramp_steps(steps.unwrap_or(DEFAULT_STEPS)),
    }
}

/// The table form of a ramp.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RampTable {
    from: String,
    to: String,
    over: String,
    #[serde(default)]
    shape: ShapeName,
    #[serde(default)]
    steps: Option<u32>,
}

impl<'de> Deserialize<'de> for RampSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RampSpec;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a ramp like \"10/s..500/s/30m\" or a table {from, to, over}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RampSpec, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RampSpec, A::Error> {
                let t = RampTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let from = ramp_rate(&t.from).map_err(de::Error::custom)?;
                let to = ramp_rate(&t.to).map_err(de::Error::custom)?;
                let over = ramp_over(&t.over).map_err(de::Error::custom)?;
                let shape = shape_of(t.shape, t.steps).map_err(de::Error::custom)?;
                Ok(RampSpec {
                    from,
                    to,
                    over,
                    shape,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[ramp]` policy section: what happens after a resume.
///
/// ```toml
/// [ramp]
/// # Ramp applied after any resume that does not carry its own; absent = resume at full speed.
/// default = "10/s..500/s/30m"
/// # Shape of that default ramp: "linear" (default) or "stepped" with `steps` stretches.
/// shape = "stepped"
/// steps = 5
/// # One limiter per recipient domain inside the resumed scope (every ramp, default or not).
/// per_domain = true
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(try_from = "RampPolicyToml", into = "RampPolicyToml")]
pub struct RampPolicy {
    /// The ramp applied after a resume that does not carry its own, with the section's `shape`
    /// already applied; `None` resumes at full speed.
    pub default: Option<RampSpec>,
    /// Whether every ramp limits each recipient domain separately (mailbox providers judge each
    /// sender on their own, so a resumed campaign should warm up at each of them). Off by default.
    pub per_domain: bool,
}

impl RampPolicy {
    /// The ramp to start after a resume: the one the resume carries, else the default.
    pub fn ramp_for(&self, requested: Option<RampSpec>) -> Option<RampSpec> {
        requested.or(self.default)
    }
}

/// The `[ramp]` section as written.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RampPolicyToml {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(default)]
    shape: ShapeName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    steps: Option<u32>,
    #[serde(default)]
    per_domain: bool,
}

impl TryFrom<RampPolicyToml> for RampPolicy {
    type Error = String;

    fn try_from(t: RampPolicyToml) -> Result<Self, String> {
        let shape = shape_of(t.shape, t.steps).map_err(|e| format!("ramp: {e}"))?;
        let default = match t.default {
            None => None,
            Some(s) => {
                let mut spec: RampSpec = s.parse().map_err(|e| format!("ramp.default: {e}"))?;
                if spec.shape == RampShape::Linear {
                    spec.shape = shape;
                }
                Some(spec)
            }
        };
        Ok(RampPolicy {
            default,
            per_domain: t.per_domain,
        })
    }
}

impl From<RampPolicy> for RampPolicyToml {
    fn from(p: RampPolicy) -> Self {
        let (shape, steps) = match p.default.map(|d| d.shape) {
            Some(RampShape::Stepped { steps }) => (ShapeName::Stepped, Some(steps)),
            _ => (ShapeName::Linear, None),
        };
        RampPolicyToml {
            default: p.default.map(|d| {
                RampSpec {
                    shape: RampShape::Linear,
                    ..d
                }
                .to_string()
            }),
            shape,
            steps,
            per_domain: p.per_domain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    #[test]
    fn rate_table() {
        let good = [
            ("10/s", 10.0, "10/s"),
            ("600/m", 10.0, "600/m"),
            ("36000/h", 10.0, "36000/h"),
            (" 5 / s ", 5.0, "5/s"),
            ("1/h", 1.0 / 3600.0, "1/h"),
            ("4294967295/s", 4_294_967_295.0, "4294967295/s"),
        ];
        for (input, per_second, shown) in good {
            let r = rate(input);
            assert!((r.per_second() - per_second).abs() < 1e-12, "{input}");
            assert_eq!(r.to_string(), shown);
        }
        let shape = "expected N/s, N/m or N/h, e.g. 10/s";
        let bad = [
            ("", shape),
            ("10", shape),
            ("10/x", shape),
            ("10/sec", shape),
            ("-1/s", shape),
            ("+1/s", shape),
            ("1.5/s", shape),
            ("/s", shape),
            (
                "0/s",
                "the rate must be above zero (to stop sending, pause)",
            ),
            ("4294967296/s", "the count is too large"),
        ];
        for (input, why) in bad {
            let err = input.parse::<Rate>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("cannot parse rate {input:?}: {why}")
            );
        }
        assert_eq!(serde_json::to_string(&rate("600/m")).unwrap(), "\"600/m\"");
        assert_eq!(
            serde_json::from_str::<Rate>("\"7/h\"").unwrap(),
            rate("7/h")
        );
        assert!(serde_json::from_str::<Rate>("\"7/d\"").is_err());
    }

    #[test]
    fn ramp_table() {
        let spec: RampSpec = "10/s..500/s/30m".parse().unwrap();
        assert_eq!(
            spec,
            RampSpec {
                from: rate("10/s"),
                to: rate("500/s"),
                over: Duration::from_secs(1800),
                shape: RampShape::Linear
            }
        );
        let good = [
            ("10/s..500/s/30m", "10/s..500/s/30m"),
            ("600/m..36000/h/2h", "600/m..36000/h/2h"),
            (" 1/s .. 2/s / 90s ", "1/s..2/s/90s"),
            ("1/s..2/s/1d", "1/s..2/s/1d"),
            ("1/s..2/s/24h", "1/s..2/s/1d"),
            ("1/s..2/s/1500ms", "1/s..2/s/1s 500ms"),
            ("10/s..500/s/30m in 5 steps", "10/s..500/s/30m in 5 steps"),
            ("500/s..10/s/1h", "500/s..10/s/1h"),
        ];
        for (input, shown) in good {
            let spec: RampSpec = input.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(spec.to_string(), shown);
            assert_eq!(shown.parse::<RampSpec>().unwrap(), spec);
        }
        let shape = "expected FROM..TO/OVER, e.g. 10/s..500/s/30m";
        let bad = [
            ("10/s..x", shape.to_string()),
            ("", shape.to_string()),
            ("10/s", shape.to_string()),
            ("10/s..500/s", shape.to_string()),
            ("10/s..500/30m", shape.to_string()),
            (
                "x/s..500/s/30m",
                "bad rate \"x/s\": expected N/s, N/m or N/h, e.g. 10/s".into(),
            ),
            (
                "10/s..0/s/30m",
                "bad rate \"0/s\": the rate must be above zero (to stop sending, pause)".into(),
            ),
            (
                "10/s..500/s/soon",
                "bad duration \"soon\": expected e.g. 30s, 10m, 2h, 1d".into(),
            ),
            (
                "10/s..500/s/30",
                "bad duration \"30\": expected e.g. 30s, 10m, 2h, 1d".into(),
            ),
            (
                "10/s..500/s/0s",
                "the ramp must last longer than zero".into(),
            ),
            ("10/s..500/s/400d", "the ramp must last at most 365d".into()),
            (
                "10/s..500/s/30m in 1 steps",
                "a stepped ramp needs 2 steps or more, not 1".into(),
            ),
            ("10/s..500/s/30m in x steps", "bad step count \"x\"".into()),
        ];
        for (input, why) in bad {
            let err = input.parse::<RampSpec>().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("cannot parse ramp {input:?}: {why}")
            );
        }
    }

    #[test]
    fn ramp_serde_forms() {
        let spec: RampSpec =
            serde_json::from_str(r#"{"from": "10/s", "to": "500/s", "over": "30m"}"#).unwrap();
        assert_eq!(spec, "10/s..500/s/30m".parse().unwrap());
        assert_eq!(serde_json::to_string(&spec).unwrap(), "\"10/s..500/s/30m\"");
        let spec: RampSpec = serde_json::from_str("\"10/s..500/s/30m\"").unwrap();
        assert_eq!(spec.shape, RampShape::Linear);

        #[derive(Deserialize)]
        struct T {
            ramp: RampSpec,
        }
        let t: T = toml::from_str(
            "ramp = {from=\"10/s\", to=\"500/s\", over=\"30m\", shape=\"stepped\", steps=4}",
        )
        .unwrap();
        assert_eq!(t.ramp.shape, RampShape::Stepped { steps: 4 });
        let t: T =
            toml::from_str("ramp = {from=\"1/s\", to=\"5/s\", over=\"1m\", shape=\"stepped\"}")
                .unwrap();
        assert_eq!(
            t.ramp.shape,
            RampShape::Stepped {
                steps: DEFAULT_STEPS
            }
        );

        for (body, wants) in [
            (r#"{"from": "10/s", "to": "500/s"}"#, "missing field `over`"),
            (
                r#"{"from": "10/s", "to": "500/s", "over": "30m", "speed": 1}"#,
                "unknown field `speed`",
            ),
            (
                r#"{"from": "10/s", "to": "500/s", "over": "30m", "steps": 3}"#,
                "steps applies only to shape = \"stepped\"",
            ),
            (
                r#"{"from": "ten", "to": "500/s", "over": "30m"}"#,
                "bad rate \"ten\"",
            ),
            (
                r#""10/s..x""#,
                "cannot parse ramp \"10/s..x\": expected FROM..TO/OVER",
            ),
            ("12", "expected a ramp like"),
        ] {
            let err = serde_json::from_str::<RampSpec>(body)
                .unwrap_err()
                .to_string();
            assert!(err.contains(wants), "{body}: {err}");
        }
    }

    #[test]
    fn rate_at_linear_and_stepped() {
        let lin: RampSpec = "10/s..110/s/100s".parse().unwrap();
        let at = |s: &RampSpec, secs: f64| s.rate_at(Duration::from_secs_f64(secs));
        assert_eq!(at(&lin, 0.0), Some(10.0));
        assert_eq!(at(&lin, 50.0), Some(60.0));
        assert!((at(&lin, 99.999).unwrap() - 110.0).abs() < 0.01);
        assert_eq!(at(&lin, 100.0), None);
        assert_eq!(at(&lin, 1e6), None);

        let stepped: RampSpec = "10/s..50/s/100s in 5 steps".parse().unwrap();
        let levels: Vec<_> = [0.0, 19.9, 20.0, 45.0, 60.0, 99.9]
            .iter()
            .map(|&s| at(&stepped, s).unwrap())
            .collect();
        assert_eq!(levels, [10.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(at(&stepped, 100.0), None);

        let per_minute: RampSpec = "60/m..120/m/1m".parse().unwrap();
        assert_eq!(at(&per_minute, 30.0), Some(1.5));
    }

    #[test]
    fn ramp_policy_section() {
        #[derive(Deserialize)]
        struct Policy {
            #[serde(default)]
            ramp: RampPolicy,
        }
        let p: Policy = toml::from_str("").unwrap();
        assert_eq!(p.ramp, RampPolicy::default());
        assert_eq!(p.ramp.ramp_for(None), None);

        let p: Policy = toml::from_str(
            "[ramp]\ndefault = \"10/s..500/s/30m\"\nshape = \"stepped\"\nsteps = 3\nper_domain = true\n",
        )
        .unwrap();
        let want: RampSpec = "10/s..500/s/30m in 3 steps".parse().unwrap();
        assert_eq!(p.ramp.default, Some(want));
        assert!(p.ramp.per_domain);
        let own: RampSpec = "1/s..2/s/1m".parse().unwrap();
        assert_eq!(p.ramp.ramp_for(Some(own)), Some(own));
        assert_eq!(p.ramp.ramp_for(None), Some(want));
        let again: RampPolicy = toml::from_str(&toml::to_string(&p.ramp).unwrap()).unwrap();
        assert_eq!(again, p.ramp);

        for (text, wants) in [
            (
                "[ramp]\ndefualt = \"1/s..2/s/1m\"\n",
                "unknown field `defualt`",
            ),
            (
                "[ramp]\ndefault = \"1/s..2/s\"\n",
                "ramp.default: cannot parse ramp",
            ),
            ("[ramp]\nshape = \"curvy\"\n", "unknown variant `curvy`"),
            (
                "[ramp]\nshape = \"stepped\"\nsteps = 1\n",
                "ramp: a stepped ramp needs 2",
            ),
        ] {
            let err = toml::from_str::<Policy>(text).err().map(|e| e.to_string());
            let err = err.unwrap_or_default();
            assert!(err.contains(wants), "{text}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = s.parse::<Rate>();
            let _ = s.parse::<RampSpec>();
        }

        #[test]
        fn parsers_never_panic_on_near_misses(s in "[0-9]{0,12}/[smh]{0,2}\\.{0,3}[0-9]{0,12}/[smhd]{0,2}/[0-9]{0,25}[a-z ]{0,12}") {
            let _ = s.parse::<RampSpec>();
        }

        #[test]
        fn display_round_trips(
            a in 1u32.., ua in 0usize..3, b in 1u32.., ub in 0usize..3,
            secs in 1u64..=365 * 86_400, millis in 0u32..1000, steps in proptest::option::of(2u32..1000),
        ) {
            let units = [RateUnit::Second, RateUnit::Minute, RateUnit::Hour];
            let over = Duration::new(secs, millis * 1_000_000).min(MAX_OVER);
            let spec = RampSpec {
                from: Rate::new(a, units[ua]).unwrap(),
                to: Rate::new(b, units[ub]).unwrap(),
                over,
                shape: steps.map_or(RampShape::Linear, |steps| RampShape::Stepped { steps }),
            };
            let text = spec.to_string();
            proptest::prop_assert_eq!(text.parse::<RampSpec>().ok(), Some(spec), "{}", text);
            proptest::prop_assert_eq!(spec.from.to_string().parse::<Rate>().ok(), Some(spec.from));
        }
    }
}
