//! Interim placeholder detector (replaced by the full detector).
#![allow(missing_docs)]
use crate::model::{Action, Finding, Location, Message, Severity};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceholderPolicy {
    #[serde(default = "reject")]
    pub action: Action,
}
fn reject() -> Action {
    Action::Reject
}
impl Default for PlaceholderPolicy {
    fn default() -> Self {
        PlaceholderPolicy {
            action: Action::Reject,
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyIssue {
    pub key: String,
    pub message: String,
}
impl std::fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}
#[derive(Debug)]
pub struct Detector {
    re: regex::Regex,
    action: Action,
}
impl Detector {
    pub fn new(policy: &PlaceholderPolicy) -> Result<Detector, Vec<PolicyIssue>> {
        let re = regex::Regex::new(r"\{\{[^{}]*\}\}|\*\|[A-Z_]+\|\*|<FirstName>|%%[A-Za-z_]+%%")
            .map_err(|e| {
                vec![PolicyIssue {
                    key: "placeholder".into(),
                    message: e.to_string(),
                }]
            })?;
        Ok(Detector {
            re,
            action: policy.action,
        })
    }
    pub fn scan(&self, msg: &Message) -> Vec<Finding> {
        let Some(m) = msg.parse() else { return vec![] };
        let mut out = Vec::new();
        if let Some(s) = m.subject() {
            out.extend(self.scan_text(s, Location::Subject));
        }
        for i in 0..m.text_body.len() {
            if let Some(t) = m.body_text(i) {
                out.extend(self.scan_text(&t, Location::Text));
            }
        }
        for i in 0..m.html_body.len() {
            if let Some(t) = m.body_html(i) {
                out.extend(self.scan_text(&t, Location::Html));
            }
        }
        out
    }
    pub fn scan_text(&self, text: &str, location: Location) -> Vec<Finding> {
        self.re
            .find_iter(text)
            .map(|m| Finding {
                rule: "placeholder".into(),
                location,
                token: m.as_str().into(),
                detail: "unrendered placeholder".into(),
                severity: Severity::High,
                action: self.action,
            })
            .collect()
    }
    pub fn scan_html(&self, html: &str) -> Vec<Finding> {
        self.scan_text(html, Location::Html)
    }
}
