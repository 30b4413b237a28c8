//! The `[placeholder]` section of a policy file.

use crate::model::Action;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The `[placeholder]` section of a policy file: which merge-tag dialects count as leaks and what
/// happens when one reaches a recipient.
///
/// Every key is optional; an empty section (or `PlaceholderPolicy::default()`) turns every family
/// on with `reject`, reports tags inside `<pre>`/`<code>` with `log`, and allows nothing.
///
/// ```toml
/// [placeholder]
/// action = "reject"                 # default action of every placeholder rule
/// code_action = "log"               # tokens inside <pre>/<code>: low severity, this action
/// failed_substitution = "reject"    # "Dear ,", "Hallo undefined,", "[object Object]"; or "off"
/// allow = ["{{unsubscribe}}"]       # exact tokens never reported
/// allow_regex = ['^\[\d+\]$']       # tokens matching any of these are never reported
/// greetings = ["Ciao", "Bonjour"]   # extra greeting words for failed-substitution detection
///
/// [placeholder.families]            # each family: an action, or "off"; missing ones use `action`
/// angle = "reject"                  # <FirstName>, <first_name>, <Vorname>
/// mustache = "reject"               # {{ name }}, {{{ name }}}, {% if x %}
/// mailchimp = "reject"              # *|FNAME|*
/// ampscript = "reject"              # %%FirstName%%, %%=v(@x)=%%, %%[ ... ]%%
/// bracket = "reject"                # [FirstName], [first_name], [firstname,fallback=there]
/// dollar = "reject"                 # ${firstName}
/// sendgrid_legacy = "reject"        # -first_name-, -firstName-
/// smarty = "reject"                 # {$name}
/// dollar_pair = "log"               # $name$
///
/// [[placeholder.custom]]
/// name = "acme"
/// regex = '##[A-Z_]+##'
/// action = "quarantine"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderPolicy {
    /// Action of every placeholder rule that does not set its own (default `reject`).
    #[serde(default = "default_action")]
    pub action: Action,
    /// Action for tokens found inside `<pre>` or `<code>` in HTML, where merge tags may be a code
    /// sample shown on purpose. Such findings always have low severity and are never dropped
    /// (default `log`).
    #[serde(default = "default_code_action")]
    pub code_action: Action,
    /// Failed substitutions: a greeting left empty (`Dear ,`, `Hallo ,`, `Sehr geehrte/r ,`) or
    /// filled with `undefined`, `null`, `NaN`, `None`, `nil`, `#NAME?` or `[object Object]`; also
    /// `undefined` in a subject and `[object Object]` anywhere. An action or `"off"`; when missing,
    /// `action` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_substitution: Option<RuleSetting>,
    /// Per-family settings: family name → action or `"off"`. Known families: `angle`,
    /// `mustache`, `mailchimp`, `ampscript`, `bracket`, `dollar`, `sendgrid_legacy`, `smarty`,
    /// `dollar_pair` (`sendgrid-legacy` and `dollar-pair` are accepted too). A family not listed
    /// uses `action`.
    #[serde(default = "default_families")]
    pub families: BTreeMap<String, RuleSetting>,
    /// Exact tokens that are never reported, compared with the token as the recipient sees it
    /// (for example `{{unsubscribe}}` when a later stage renders it).
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// Regular expressions (Rust `regex` syntax) over the token; a token matching any of them is
    /// never reported.
    #[serde(default = "default_allow_regex")]
    pub allow_regex: Vec<String>,
    /// Extra greeting words or phrases (any case) for failed-substitution detection, on top of
    /// the built-in English and German ones. A listed greeting is reported when it is followed by
    /// a space and then `,`, `!`, `:` or `;` (`Ciao ,`) or by a failure value (`Ciao undefined`).
    #[serde(default = "default_greetings")]
    pub greetings: Vec<String>,
    /// Custom rules, each a regular expression over every text the recipient sees.
    #[serde(default = "default_custom")]
    pub custom: Vec<CustomRule>,
}

/// One `[[placeholder.custom]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The rule's name: lower-case letters, digits, `-` and `_`; findings are reported as
    /// `placeholder.custom.<name>`. Names must be unique within the section.
    pub name: String,
    /// A regular expression (Rust `regex` syntax); each match is one finding, the match itself
    /// being the token.
    pub regex: String,
    /// The rule's action; when missing, the section's `action` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

/// A rule's setting: an action, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSetting {
    /// The rule does not run.
    Off,
    /// Report only.
    Log,
    /// Refuse temporarily.
    Tempfail,
    /// Refuse and keep a copy.
    Quarantine,
    /// Refuse permanently.
    Reject,
}

impl RuleSetting {
    /// The action, or `None` when the rule is off.
    pub fn action(self) -> Option<Action> {
        match self {
            RuleSetting::Off => None,
            RuleSetting::Log => Some(Action::Log),
            RuleSetting::Tempfail => Some(Action::Tempfail),
            RuleSetting::Quarantine => Some(Action::Quarantine),
            RuleSetting::Reject => Some(Action::Reject),
        }
    }
}

fn default_action() -> Action {
    Action::Reject
}

fn default_code_action() -> Action {
    Action::Log
}

fn default_families() -> BTreeMap<String, RuleSetting> {
    BTreeMap::new()
}

fn default_allow() -> Vec<String> {
    Vec::new()
}

fn default_allow_regex() -> Vec<String> {
    Vec::new()
}

fn default_greetings() -> Vec<String> {
    Vec::new()
}

fn default_custom() -> Vec<CustomRule> {
    Vec::new()
}

impl Default for PlaceholderPolicy {
    fn default() -> Self {
        PlaceholderPolicy {
            action: default_action(),
            code_action: default_code_action(),
            failed_substitution: None,
            families: default_families(),
            allow: default_allow(),
            allow_regex: default_allow_regex(),
            greetings: default_greetings(),
            custom: default_custom(),
        }
    }
}

/// One problem in a policy section: the key that is wrong and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The key path, e.g. `placeholder.custom[1].regex`.
    pub key: String,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl PolicyIssue {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for PolicyIssue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_is_the_default() {
        let p: PlaceholderPolicy = toml::from_str("").unwrap();
        assert_eq!(p, PlaceholderPolicy::default());
        assert_eq!(p.action, Action::Reject);
        assert_eq!(p.code_action, Action::Log);
    }

    #[test]
    fn full_section_parses() {
        let p: PlaceholderPolicy = toml::from_str(
            r##"
            action = "tempfail"
            code_action = "quarantine"
            failed_substitution = "off"
            allow = ["{{unsubscribe}}"]
            allow_regex = ['^\[\d+\]$']
            greetings = ["Ciao"]
            [families]
            angle = "log"
            dollar_pair = "off"
            [[custom]]
            name = "acme"
            regex = '##[A-Z_]+##'
            action = "reject"
            "##,
        )
        .unwrap();
        assert_eq!(p.action, Action::Tempfail);
        assert_eq!(p.failed_substitution, Some(RuleSetting::Off));
        assert_eq!(p.families.get("angle"), Some(&RuleSetting::Log));
        assert_eq!(p.custom[0].action, Some(Action::Reject));
        let back = toml::to_string(&p).unwrap();
        let again: PlaceholderPolicy = toml::from_str(&back).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PlaceholderPolicy>("acton = \"log\"").unwrap_err();
        assert!(err.to_string().contains("acton"), "{err}");
        assert!(toml::from_str::<PlaceholderPolicy>("action = \"drop\"").is_err());
    }

    #[test]
    fn issue_display() {
        let i = PolicyIssue::new("placeholder.custom[1].regex", "bad");
        assert_eq!(i.to_string(), "placeholder.custom[1].regex: bad");
    }
}
