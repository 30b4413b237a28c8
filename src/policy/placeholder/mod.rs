//! Placeholder-leak detection: unrendered merge tags and failed substitutions, found where the
//! recipient would see them.
//!
//! A [`Detector`] is compiled once from a [`PlaceholderPolicy`] (the `[placeholder]` section of a
//! policy file) and then scans messages from any number of threads.
//!
//! # What is scanned
//!
//! - the Subject (RFC 2047 encoded words decoded, any charset),
//! - the display names of From, Reply-To, To and Cc ([`Location::FromName`]),
//! - every text/plain and text/html part that is not an attachment, after transfer decoding
//!   (quoted-printable, base64) and charset conversion, in nested multiparts too,
//! - in HTML: the visible text after entity decoding ([`Location::Html`]), link targets
//!   (`href`, also percent-decoded, [`Location::Href`]), `alt` and `title` attributes
//!   ([`Location::Attribute`]), hidden elements such as the preheader (style `display:none`,
//!   `max-height:0`, `opacity:0`, `font-size:0`, `visibility:hidden`, `mso-hide:all`, the
//!   `hidden` attribute, or a class containing `preheader`: [`Location::Preheader`]), and the
//!   content of Outlook conditional comments (`<!--[if mso]>…<![endif]-->`), which Outlook shows.
//!
//! Not scanned, because no reader sees them: `<style>` and `<script>` blocks (CSS braces and
//! JSON-LD), `style` attributes, HTML comments, `<title>`, attachments. An unrendered tag that
//! only sits in CSS therefore passes; a template that failed to render almost always leaves
//! visible tags as well.
//!
//! Tokens inside `<pre>` or `<code>` are reported with [`Severity::Low`] and the policy's
//! `code_action` (a code sample may show a merge tag on purpose), never dropped.
//!
//! # Families
//!
//! | rule | finds | leaves alone |
//! |---|---|---|
//! | `placeholder.angle` | `<FirstName>`, `<first_name>`, `<Vorname>` in text, and start tags in HTML source whose name is no HTML element | every WHATWG element (obsolete ones too), `<o:p>` and other namespaced tags, custom elements (`<amp-img>`), `<https://…>`, `<mailto:…>`, `Name <a@b.test>` |
//! | `placeholder.mustache` | `{{ x }}`, `{{{ x }}}`, `{% if %}` | single braces |
//! | `placeholder.mailchimp` | `*\|FNAME\|*` | |
//! | `placeholder.ampscript` | `%%FirstName%%`, `%%=v(@x)=%%`, `%%[ … ]%%` | `50% off`, `100%%` |
//! | `placeholder.bracket` | `[FirstName]`, `[first_name]`, `[Vorname]`, `[First Name]`, `[x,fallback=y]` | `[1]`, `[sic]`, `[PDF]`, `[Anzeige]`, `[YouTube]` |
//! | `placeholder.dollar` | `${firstName}` | |
//! | `placeholder.sendgrid-legacy` | `-first_name-`, `-firstName-`, `-email-` | `e-mail`, `-50-`, hyphenated words |
//! | `placeholder.smarty` | `{$name}` | |
//! | `placeholder.dollar-pair` | `$name$` | `$5 and $10` |
//! | `placeholder.failed-substitution` | `Dear ,`, `Hi !`, `Hallo ,`, `Sehr geehrte/r ,`, `Dear undefined,`, `Hallo null,`, `[object Object]` anywhere, `undefined` in a subject | `Hi,`, `Hallo!`, `Sehr geehrte Damen und Herren,` |
//! | `placeholder.custom.<name>` | the policy's own regexes | |

mod html;
mod names;
mod policy;
#[cfg(test)]
mod proptests;
mod text;

pub use policy::{CustomRule, PlaceholderPolicy, PolicyIssue, RuleSetting};

use crate::model::{Action, Finding, Location, Message, Severity};
use aho_corasick::AhoCorasick;
use mail_parser::{MimeHeaders, PartType};
use regex::{Regex, RegexSet};

/// The most findings one scan reports (a hostile message cannot make the list grow without end).
const MAX_FINDINGS: usize = 256;
/// The longest token reported, in characters; longer ones are cut with `…`.
const MAX_TOKEN_CHARS: usize = 120;

/// A built-in family of placeholder syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    Angle,
    Mustache,
    Mailchimp,
    Ampscript,
    Bracket,
    Dollar,
    SendgridLegacy,
    Smarty,
    DollarPair,
    FailedSubstitution,
}

impl Family {
    const ALL: [Family; 10] = [
        Family::Angle,
        Family::Mustache,
        Family::Mailchimp,
        Family::Ampscript,
        Family::Bracket,
        Family::Dollar,
        Family::SendgridLegacy,
        Family::Smarty,
        Family::DollarPair,
        Family::FailedSubstitution,
    ];

    /// The rule name reported in findings.
    fn rule(self) -> &'static str {
        match self {
            Family::Angle => "placeholder.angle",
            Family::Mustache => "placeholder.mustache",
            Family::Mailchimp => "placeholder.mailchimp",
            Family::Ampscript => "placeholder.ampscript",
            Family::Bracket => "placeholder.bracket",
            Family::Dollar => "placeholder.dollar",
            Family::SendgridLegacy => "placeholder.sendgrid-legacy",
            Family::Smarty => "placeholder.smarty",
            Family::DollarPair => "placeholder.dollar-pair",
            Family::FailedSubstitution => "placeholder.failed-substitution",
        }
    }

    /// The key in `[placeholder.families]` (none for failed substitution, which has its own).
    fn key(self) -> Option<&'static str> {
        match self {
            Family::Angle => Some("angle"),
            Family::Mustache => Some("mustache"),
            Family::Mailchimp => Some("mailchimp"),
            Family::Ampscript => Some("ampscript"),
            Family::Bracket => Some("bracket"),
            Family::Dollar => Some("dollar"),
            Family::SendgridLegacy => Some("sendgrid_legacy"),
            Family::Smarty => Some("smarty"),
            Family::DollarPair => Some("dollar_pair"),
            Family::FailedSubstitution => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Family::Angle => "unrendered angle-bracket merge field",
            Family::Mustache => "unrendered Handlebars/Liquid/Jinja tag",
            Family::Mailchimp => "unrendered Mailchimp merge tag",
            Family::Ampscript => "unrendered Marketing Cloud personalization string or AMPscript",
            Family::Bracket => "unrendered bracket merge field",
            Family::Dollar => "unrendered ${...} template expression",
            Family::SendgridLegacy => "unrendered SendGrid legacy substitution tag",
            Family::Smarty => "unrendered Smarty variable",
            Family::DollarPair => "unrendered $...$ merge field",
            Family::FailedSubstitution => "failed substitution (empty or undefined value)",
        }
    }
}

/// Which rule a hit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    Family(Family),
    Custom(usize),
}

#[derive(Debug)]
struct CompiledCustom {
    rule: String,
    regex: Regex,
    action: Action,
}

/// A compiled `[placeholder]` policy: immutable, shareable between threads, built once per
/// policy reload.
///
/// ```
/// use sendguard::model::{Location, Message};
/// use sendguard::policy::placeholder::{Detector, PlaceholderPolicy};
///
/// let detector = Detector::new(&PlaceholderPolicy::default()).expect("the defaults compile");
/// let findings = detector.scan_text("Hallo <FirstName>, Ihr Gutschein", Location::Subject);
/// assert_eq!(findings[0].rule, "placeholder.angle");
/// assert_eq!(findings[0].token, "<FirstName>");
///
/// let msg = Message::new(&b"Subject: hi\r\nContent-Type: text/html\r\n\r\n<p>Dear ,</p>"[..]);
/// assert_eq!(detector.scan(&msg)[0].rule, "placeholder.failed-substitution");
/// ```
#[derive(Debug)]
pub struct Detector {
    /// Action per family (index = position in `Family::ALL`), `None` when off.
    actions: [Option<Action>; 10],
    code_action: Action,
    allow: Vec<String>,
    allow_regex: Option<RegexSet>,
    /// Extra greetings, lower case.
    greetings: Vec<String>,
    custom: Vec<CompiledCustom>,
    /// Style keywords that can hide an element.
    hide: AhoCorasick,
}

impl Detector {
    /// Compiles the policy.
    ///
    /// # Errors
    ///
    /// Every problem at once (an unknown family, a regex that does not compile, a custom rule
    /// with an empty, invalid or duplicate name), each naming its key.
    pub fn new(policy: &PlaceholderPolicy) -> Result<Detector, Vec<PolicyIssue>> {
        let mut issues = Vec::new();
        let mut actions = [Some(policy.action); 10];
        for (key, setting) in &policy.families {
            let wanted = key.replace('-', "_");
            match Family::ALL
                .iter()
                .position(|f| f.key() == Some(wanted.as_str()))
            {
                Some(i) => actions[i] = setting.action(),
                None => issues.push(PolicyIssue::new(
                    format!("placeholder.families.{key}"),
                    format!(
                        "unknown family {key:?}: expected angle, mustache, mailchimp, ampscript, \
                         bracket, dollar, sendgrid_legacy, smarty or dollar_pair"
                    ),
                )),
            }
        }
        if let Some(setting) = policy.failed_substitution {
            actions[Family::ALL.len() - 1] = setting.action();
        }

        for (i, r) in policy.allow_regex.iter().enumerate() {
            if let Err(e) = Regex::new(r) {
                issues.push(PolicyIssue::new(
                    format!("placeholder.allow_regex[{i}]"),
                    format!("cannot compile regex {r:?}: {}", one_line(&e.to_string())),
                ));
            }
        }
        let allow_regex = if policy.allow_regex.is_empty() {
            None
        } else {
            RegexSet::new(&policy.allow_regex).ok()
        };

        let mut greetings = Vec::new();
        for (i, g) in policy.greetings.iter().enumerate() {
            let g = g.split_whitespace().collect::<Vec<_>>().join(" ");
            if g.is_empty() {
                issues.push(PolicyIssue::new(
                    format!("placeholder.greetings[{i}]"),
                    "empty greeting",
                ));
            } else {
                greetings.push(g.to_lowercase());
            }
        }
        // Longest first, so that "guten tag" wins over "guten".
        greetings.sort_by_key(|g| std::cmp::Reverse(g.len()));

        let mut custom: Vec<CompiledCustom> = Vec::new();
        for (i, c) in policy.custom.iter().enumerate() {
            let key = format!("placeholder.custom[{i}]");
            let name_ok = !c.name.is_empty()
                && c.name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !name_ok {
                issues.push(PolicyIssue::new(
                    format!("{key}.name"),
                    format!(
                        "invalid rule name {:?}: use lower-case letters, digits, '-' and '_'",
                        c.name
                    ),
                ));
            } else if policy.custom[..i].iter().any(|o| o.name == c.name) {
                issues.push(PolicyIssue::new(
                    format!("{key}.name"),
                    format!("duplicate rule name {:?}", c.name),
                ));
            }
            let regex = match Regex::new(&c.regex) {
                Ok(r) if r.is_match("") => {
                    issues.push(PolicyIssue::new(
                        format!("{key}.regex"),
                        format!("regex {:?} matches the empty string", c.regex),
                    ));
                    None
                }
                Ok(r) => Some(r),
                Err(e) => {
                    issues.push(PolicyIssue::new(
                        format!("{key}.regex"),
                        format!(
                            "cannot compile regex {:?}: {}",
                            c.regex,
                            one_line(&e.to_string())
                        ),
                    ));
                    None
                }
            };
            if let Some(regex) = regex {
                custom.push(CompiledCustom {
                    rule: format!("placeholder.custom.{}", c.name),
                    regex,
                    action: c.action.unwrap_or(policy.action),
                });
            }
        }

        let hide = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(html::HIDE_KEYWORDS);
        let hide = match hide {
            Ok(h) => h,
            Err(e) => {
                issues.push(PolicyIssue::new("placeholder", e.to_string()));
                return Err(issues);
            }
        };

        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Detector {
            actions,
            code_action: policy.code_action,
            allow: policy.allow.clone(),
            allow_regex,
            greetings,
            custom,
            hide,
        })
    }

    /// Scans a message as the recipient would see it: subject, display names, and every
    /// text/plain and text/html part that is not an attachment. Never panics on any input.
    pub fn scan(&self, msg: &Message) -> Vec<Finding> {
        let mut c = Collector::new(self);
        let Some(parsed) = msg.parse() else {
            return c.out;
        };
        if let Some(subject) = parsed.subject() {
            self.text_into(subject, Location::Subject, &mut c);
        }
        let lists = [parsed.from(), parsed.reply_to(), parsed.to(), parsed.cc()];
        for list in lists.into_iter().flatten() {
            for addr in list.iter() {
                if let Some(name) = addr.name() {
                    self.text_into(name, Location::FromName, &mut c);
                }
            }
        }
        for part in &parsed.parts {
            let attachment = part
                .content_disposition()
                .is_some_and(|d| d.is_attachment());
            if attachment {
                continue;
            }
            match &part.body {
                PartType::Text(text) => {
                    let plain = part.content_type().is_none_or(|ct| {
                        ct.c_type.eq_ignore_ascii_case("text")
                            && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"))
                    });
                    if plain {
                        self.text_into(text, Location::Text, &mut c);
                    }
                }
                PartType::Html(html) => self.html_into(html, &mut c),
                _ => {}
            }
        }
        c.out
    }

    /// Scans one plain string, as found at `location` (a subject, a display name, a text body).
    pub fn scan_text(&self, text: &str, location: Location) -> Vec<Finding> {
        let mut c = Collector::new(self);
        self.text_into(text, location, &mut c);
        c.out
    }

    /// Scans one HTML document or fragment: visible text, links, attributes and hidden text.
    pub fn scan_html(&self, html: &str) -> Vec<Finding> {
        let mut c = Collector::new(self);
        self.html_into(html, &mut c);
        c.out
    }

    fn text_into(&self, text: &str, location: Location, c: &mut Collector<'_>) {
        let mode = if location == Location::Subject {
            text::Greet::Subject
        } else {
            text::Greet::Lines
        };
        self.scan_str(text, location, false, mode, c);
    }

    fn action_of(&self, rule: Rule) -> Option<Action> {
        match rule {
            Rule::Family(f) => {
                let i = Family::ALL.iter().position(|x| *x == f)?;
                self.actions[i]
            }
            Rule::Custom(i) => self.custom.get(i).map(|c| c.action),
        }
    }

    fn allowed(&self, token: &str) -> bool {
        self.allow.iter().any(|a| a == token)
            || self.allow_regex.as_ref().is_some_and(|s| s.is_match(token))
    }
}

/// Gathers the findings of one scan: applies actions, allow lists, de-duplication and the cap.
pub(super) struct Collector<'d> {
    det: &'d Detector,
    out: Vec<Finding>,
}

impl<'d> Collector<'d> {
    fn new(det: &'d Detector) -> Self {
        Collector {
            det,
            out: Vec::new(),
        }
    }

    /// Records one hit. `code` marks text inside `<pre>`/`<code>`.
    pub(super) fn hit(&mut self, rule: Rule, location: Location, code: bool, raw: &str) {
        if self.out.len() >= MAX_FINDINGS {
            return;
        }
        let Some(action) = self.det.action_of(rule) else {
            return;
        };
        let token = display_token(raw);
        if token.is_empty() || self.det.allowed(&token) {
            return;
        }
        let rule_name = match rule {
            Rule::Family(f) => f.rule(),
            Rule::Custom(i) => match self.det.custom.get(i) {
                Some(c) => c.rule.as_str(),
                None => return,
            },
        };
        if self
            .out
            .iter()
            .any(|f| f.rule == rule_name && f.location == location && f.token == token)
        {
            return;
        }
        let what = match rule {
            Rule::Family(f) => f.describe(),
            Rule::Custom(_) => "text matching a custom placeholder rule",
        };
        let (severity, action, note) = if code {
            (
                Severity::Low,
                self.det.code_action,
                " (inside <pre>/<code>: may be a code sample)",
            )
        } else {
            (Severity::High, action, "")
        };
        let detail = format!("{what} {token} in the {}{note}", place(location));
        self.out.push(Finding {
            rule: rule_name.to_string(),
            location,
            token,
            detail,
            severity,
            action,
        });
    }
}

fn place(location: Location) -> &'static str {
    match location {
        Location::Subject => "subject",
        Location::FromName => "display name",
        Location::Text => "plain-text body",
        Location::Html => "HTML body",
        Location::Href => "link target",
        Location::Attribute => "alt/title attribute",
        Location::Preheader => "hidden preheader",
        Location::Header => "header",
        Location::Envelope => "envelope",
    }
}

/// The token as shown in a finding: whitespace runs collapsed, cut to a readable length.
fn display_token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_TOKEN_CHARS + 4));
    let mut chars = 0;
    let mut pending_space = false;
    for ch in raw.trim().chars() {
        if ch.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        if chars >= MAX_TOKEN_CHARS {
            out.push('…');
            return out;
        }
        out.push(ch);
        chars += 1;
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det() -> Detector {
        Detector::new(&PlaceholderPolicy::default()).unwrap()
    }

    #[test]
    fn detector_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Detector>();
    }

    #[test]
    fn every_issue_at_once() {
        let p: PlaceholderPolicy = toml::from_str(
            r###"
            allow_regex = ["("]
            [families]
            angel = "log"
            [[custom]]
            name = "ok"
            regex = "##"
            [[custom]]
            name = "Bad Name"
            regex = "[unclosed"
            [[custom]]
            name = "ok"
            regex = "x*"
            "###,
        )
        .unwrap();
        let issues = Detector::new(&p).unwrap_err();
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "placeholder.families.angel",
                "placeholder.allow_regex[0]",
                "placeholder.custom[1].name",
                "placeholder.custom[1].regex",
                "placeholder.custom[2].name",
                "placeholder.custom[2].regex",
            ]
        );
        assert!(issues[3].message.contains("[unclosed"), "{}", issues[3]);
    }

    #[test]
    fn families_off_and_actions() {
        let p: PlaceholderPolicy = toml::from_str(
            r#"
            action = "tempfail"
            failed_substitution = "off"
            [families]
            mustache = "off"
            sendgrid-legacy = "log"
            "#,
        )
        .unwrap();
        let d = Detector::new(&p).unwrap();
        assert!(d.scan_text("Hi {{name}}", Location::Text).is_empty());
        assert!(d.scan_text("Dear ,", Location::Text).is_empty());
        let f = d.scan_text("Hi -first_name-, *|FNAME|*", Location::Text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].rule, "placeholder.sendgrid-legacy");
        assert_eq!(f[0].action, Action::Log);
        assert_eq!(f[1].action, Action::Tempfail);
    }

    #[test]
    fn allow_lists() {
        let p: PlaceholderPolicy = toml::from_str(
            r#"
            allow = ["{{unsubscribe}}"]
            allow_regex = ['^\*\|MC:']
            "#,
        )
        .unwrap();
        let d = Detector::new(&p).unwrap();
        let f = d.scan_text("{{unsubscribe}} *|MC:SUBJECT|* {{name}}", Location::Text);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].token, "{{name}}");
    }

    #[test]
    fn custom_rules() {
        let p: PlaceholderPolicy = toml::from_str(
            r##"
            [[custom]]
            name = "acme"
            regex = '##[A-Z_]+##'
            action = "quarantine"
            "##,
        )
        .unwrap();
        let d = Detector::new(&p).unwrap();
        let f = d.scan_text("Hello ##FIRST_NAME##", Location::Subject);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].rule, "placeholder.custom.acme");
        assert_eq!(f[0].action, Action::Quarantine);
        assert_eq!(f[0].token, "##FIRST_NAME##");
    }

    #[test]
    fn duplicates_are_reported_once() {
        let f = det().scan_text("{{a}} {{a}} {{a}}", Location::Text);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn findings_are_capped() {
        let text: String = (0..1000).map(|i| format!("{{{{f{i}}}}} ")).collect();
        assert_eq!(det().scan_text(&text, Location::Text).len(), MAX_FINDINGS);
    }

    #[test]
    fn long_tokens_are_cut() {
        let t = format!("{{{{{}}}}}", "x".repeat(250));
        let f = det().scan_text(&t, Location::Text);
        assert_eq!(f.len(), 1);
        assert!(f[0].token.ends_with('…'));
        assert_eq!(f[0].token.chars().count(), MAX_TOKEN_CHARS + 1);
    }
}
