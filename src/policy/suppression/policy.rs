//! The `[suppression]` policy section.

use crate::model::Action;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The `[suppression]` section of a policy file.
///
/// ```toml
/// [suppression]
/// action = "reject"            # reject | tempfail | quarantine | log
/// normalize_plus = false       # anna+news@x.test also matches an entry anna@x.test
/// lists = ["suppressions/global.txt", { path = "partners/optout.txt", format = "sha256" }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionPolicy {
    /// What happens to a suppressed recipient. Default `reject`: the recipient is refused
    /// (`550 5.7.1` over SMTP); `log` only reports it (shadow mode).
    #[serde(default = "default_action")]
    pub action: Action,
    /// The lists to load, relative to the policies directory. A path naming a directory loads every
    /// `*.txt` file in it (not recursively, in name order). Default: the directory `suppressions/`,
    /// which may be absent (then there are no lists); a list named explicitly must exist.
    #[serde(default = "default_lists")]
    pub lists: Vec<ListSpec>,
    /// Whether a `+tag` sub-address also matches the entries of its untagged form
    /// (`anna+news@x.test` is suppressed by `anna@x.test`). Default `false`.
    #[serde(default = "default_normalize_plus")]
    pub normalize_plus: bool,
}

/// The default `action`: `reject`.
pub fn default_action() -> Action {
    Action::Reject
}

/// The default `lists`: the directory `suppressions/` of the policies directory.
pub fn default_lists() -> Vec<ListSpec> {
    vec![default_list_dir()]
}

/// The default `normalize_plus`: `false`.
pub fn default_normalize_plus() -> bool {
    false
}

pub(crate) fn default_list_dir() -> ListSpec {
    ListSpec {
        path: PathBuf::from("suppressions"),
        format: ListFormat::Auto,
    }
}

impl Default for SuppressionPolicy {
    fn default() -> Self {
        SuppressionPolicy {
            action: default_action(),
            lists: default_lists(),
            normalize_plus: default_normalize_plus(),
        }
    }
}

/// One list (or directory of lists) to load.
///
/// In TOML either a bare path, `"suppressions/global.txt"`, or a table
/// `{ path = "x.txt", format = "sha256" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ListSpec {
    /// A file, or a directory whose `*.txt` files are loaded; relative to the policies directory.
    pub path: PathBuf,
    /// How the lines are read. Default `auto`.
    pub format: ListFormat,
}

impl ListSpec {
    /// A list in the `auto` format.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ListSpec {
            path: path.into(),
            format: ListFormat::Auto,
        }
    }
}

/// How the lines of a list are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListFormat {
    /// Every form, line by line: addresses, `@domain`, `md5:HEX`, `sha256:HEX`, and bare 32- or
    /// 64-digit hex lines as MD5 or SHA-256 hashes.
    #[default]
    Auto,
    /// Addresses, `@domain` and prefixed hashes; a bare hex line is not taken for a hash.
    Plain,
    /// Every line is an MD5 hash of a lower-cased address (bare hex or `md5:HEX`).
    Md5,
    /// Every line is a SHA-256 hash of a lower-cased address (bare hex or `sha256:HEX`).
    Sha256,
}

impl ListFormat {
    /// The name as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            ListFormat::Auto => "auto",
            ListFormat::Plain => "plain",
            ListFormat::Md5 => "md5",
            ListFormat::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for ListFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ListSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            path: PathBuf,
            #[serde(default)]
            format: ListFormat,
        }

        struct SpecVisitor;

        impl<'de> Visitor<'de> for SpecVisitor {
            type Value = ListSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list path, or a table { path = \"...\", format = \"auto\" | \"plain\" | \"md5\" | \"sha256\" }",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListSpec, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("suppression list path is empty"));
                }
                Ok(ListSpec::new(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ListSpec, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                if t.path.as_os_str().is_empty() {
                    return Err(de::Error::custom("suppression list path is empty"));
                }
                Ok(ListSpec {
                    path: t.path,
                    format: t.format,
                })
            }
        }

        deserializer.deserialize_any(SpecVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<SuppressionPolicy, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn defaults() {
        let p = parse("").ok();
        assert_eq!(p, Some(SuppressionPolicy::default()));
        let d = SuppressionPolicy::default();
        assert_eq!(d.action, Action::Reject);
        assert!(!d.normalize_plus);
        assert_eq!(d.lists, vec![ListSpec::new("suppressions")]);
    }

    #[test]
    fn lists_as_strings_and_tables() {
        let p = parse(
            r#"
            action = "log"
            normalize_plus = true
            lists = ["suppressions/global.txt", { path = "x.txt", format = "sha256" }, { path = "y.txt" }]
            "#,
        );
        let want = SuppressionPolicy {
            action: Action::Log,
            normalize_plus: true,
            lists: vec![
                ListSpec::new("suppressions/global.txt"),
                ListSpec {
                    path: "x.txt".into(),
                    format: ListFormat::Sha256,
                },
                ListSpec::new("y.txt"),
            ],
        };
        assert_eq!(p.ok(), Some(want));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("actoin = \"log\"", "actoin"),
            ("lists = [{ path = \"x\", fromat = \"md5\" }]", "fromat"),
            ("lists = [{ path = \"x\", format = \"crc32\" }]", "crc32"),
            ("lists = [\"\"]", "empty"),
            ("lists = [3]", "list path"),
        ];
        for (text, needle) in cases {
            let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let p = SuppressionPolicy {
            lists: vec![ListSpec {
                path: "a.txt".into(),
                format: ListFormat::Md5,
            }],
            ..SuppressionPolicy::default()
        };
        let text = toml::to_string(&p).unwrap_or_default();
        assert_eq!(parse(&text).ok(), Some(p));
    }
}
