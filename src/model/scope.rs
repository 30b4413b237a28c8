//! The scopes a pause or a ramp applies to.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a pause or a ramp covers.
///
/// When several pauses match one message, the most specific wins (see [`Scope::rank`]):
/// campaign, then sender, then recipient domain, then tenant, then global.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "lowercase")]
pub enum Scope {
    /// Every message.
    Global,
    /// Every message of one tenant.
    Tenant(String),
    /// Every message of one campaign.
    Campaign(String),
    /// Every message from one sender address, or from every sender of a domain (`@domain`).
    Sender(String),
    /// Every recipient in one recipient domain.
    Domain(String),
}

/// A scope could not be parsed from its `KIND/ID` or `KIND:ID` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse scope {input:?}: {why}")]
pub struct ScopeParseError {
    input: String,
    why: &'static str,
}

impl Scope {
    /// Builds a scope from its kind (`global`, `tenant`, `campaign`, `sender`, `domain`) and id.
    ///
    /// Ids of senders and domains are lower-cased; `@domain` is kept for sender domains.
    ///
    /// # Errors
    /// An unknown kind, a missing id, or an id on `global`.
    pub fn from_parts(kind: &str, id: Option<&str>) -> Result<Scope, ScopeParseError> {
        let err = |why| ScopeParseError {
            input: match id {
                Some(id) => format!("{kind}/{id}"),
                None => kind.to_string(),
            },
            why,
        };
        let id = id.map(str::trim).filter(|s| !s.is_empty());
        match (kind.to_ascii_lowercase().as_str(), id) {
            ("global", None) => Ok(Scope::Global),
            ("global", Some(_)) => Err(err("global takes no id")),
            (_, None) if matches!(kind, "tenant" | "campaign" | "sender" | "domain") => {
                Err(err("missing id"))
            }
            ("tenant", Some(id)) => Ok(Scope::Tenant(id.to_string())),
            ("campaign", Some(id)) => Ok(Scope::Campaign(id.to_string())),
            ("sender", Some(id)) => {
                let id = id.to_lowercase();
                if !id.contains('@') {
                    return Err(err("a sender is an address or @domain"));
                }
                Ok(Scope::Sender(id))
            }
            ("domain", Some(id)) => {
                let id = id.trim_start_matches('@').to_lowercase();
                Ok(Scope::Domain(id))
            }
            _ => Err(err("expected global, tenant, campaign, sender or domain")),
        }
    }

    /// The kind as written in URLs and the CLI: `global`, `tenant`, `campaign`, `sender`, `domain`.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Tenant(_) => "tenant",
            Scope::Campaign(_) => "campaign",
            Scope::Sender(_) => "sender",
            Scope::Domain(_) => "domain",
        }
    }

    /// The id, `None` for global.
    pub fn id(&self) -> Option<&str> {
        match self {
            Scope::Global => None,
            Scope::Tenant(s) | Scope::Campaign(s) | Scope::Sender(s) | Scope::Domain(s) => Some(s),
        }
    }

    /// Specificity when several pauses match: higher wins. Campaign 4, sender 3, recipient domain
    /// 2, tenant 1, global 0.
    pub fn rank(&self) -> u8 {
        match self {
            Scope::Campaign(_) => 4,
            Scope::Sender(_) => 3,
            Scope::Domain(_) => 2,
            Scope::Tenant(_) => 1,
            Scope::Global => 0,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{} {}", self.kind(), id),
            None => f.write_str("global"),
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeParseError;

    /// Parses `global`, `campaign/ID`, `campaign:ID` (and the other kinds alike).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(['/', ':']) {
            Some((k, id)) => Scope::from_parts(k, Some(id)),
            None => Scope::from_parts(s, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!("global".parse::<Scope>().unwrap(), Scope::Global);
        assert_eq!(
            "campaign/spring".parse::<Scope>().unwrap(),
            Scope::Campaign("spring".into())
        );
        assert_eq!(
            "sender:@Example.TEST".parse::<Scope>().unwrap(),
            Scope::Sender("@example.test".into())
        );
        assert_eq!(
            "domain/@Gmail.com".parse::<Scope>().unwrap(),
            Scope::Domain("gmail.com".into())
        );
        assert!("sender/bob".parse::<Scope>().is_err());
        assert!("campaign".parse::<Scope>().is_err());
        assert!("bogus/x".parse::<Scope>().is_err());
        assert!("global/x".parse::<Scope>().is_err());
    }
}
