//! Loading the policy directory: every error at once, each with file, line and key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::PolicyFile;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The key (dotted path, as far as known).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading the policies; none of them took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

fn err(file: &Path, line: Option<usize>, key: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        file: file.to_path_buf(),
        line,
        key: key.to_string(),
        message: message.into(),
    }
}

/// The `*.toml` files of a policies directory, in name order.
pub(crate) fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyErrors> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        PolicyErrors(vec![err(
            dir,
            None,
            "",
            format!("cannot read policies directory: {e}"),
        )])
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Reads, checks and merges every policy file of `dir`.
pub(crate) fn load_dir(dir: &Path) -> Result<(PolicyFile, Vec<PathBuf>), PolicyErrors> {
    let files = policy_files(dir)?;
    let mut errors = Vec::new();
    let mut merged = toml::Table::new();
    for path in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(err(path, None, "", format!("cannot read: {e}")));
                continue;
            }
        };
        // Checking each file on its own gives errors with lines in that file.
        if let Err(e) = toml::from_str::<PolicyFile>(&text) {
            errors.push(from_toml_error(path, &text, &e));
            continue;
        }
        match text.parse::<toml::Table>() {
            Ok(t) => merge(&mut merged, t),
            Err(e) => errors.push(from_toml_error(path, &text, &e)),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    let file: PolicyFile =
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| {
                PolicyErrors(vec![err(
                    dir,
                    None,
                    "",
                    format!("files conflict when merged: {}", e.message()),
                )])
            })?;
    validate(&file, &files)?;
    Ok((file, files))
}

/// Checks that serde cannot express: values that parse but make no sense.
fn validate(file: &PolicyFile, sources: &[PathBuf]) -> Result<(), PolicyErrors> {
    let mut errors = Vec::new();
    if file.auto_trip.leaks == 0 {
        errors.push(locate(
            sources,
            "auto_trip.leaks",
            "must be at least 1".into(),
        ));
    }
    if file.auto_trip.window.is_zero() {
        errors.push(locate(
            sources,
            "auto_trip.window",
            "must be longer than 0s".into(),
        ));
    }
    if let Some(url) = &file.alerts.webhook {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(locate(
                sources,
                "alerts.webhook",
                format!("expected an http:// or https:// URL, found {url:?}"),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PolicyErrors(errors))
    }
}

/// Merges `src` into `dst`: tables key by key, arrays concatenated, other values replaced.
fn merge(dst: &mut toml::Table, src: toml::Table) {
    for (k, v) in src {
        match (dst.get_mut(&k), v) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => merge(d, s),
            (Some(toml::Value::Array(d)), toml::Value::Array(s)) => d.extend(s),
            (_, v) => {
                dst.insert(k, v);
            }
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key at a line: the nearest `[table]` header above it plus the key before `=`.
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let idx = line.saturating_sub(1).min(lines.len().saturating_sub(1));
    let here = lines.get(idx).copied().unwrap_or("");
    let key = here
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let table = lines[..=idx.min(lines.len().saturating_sub(1))]
        .iter()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("[[")
                .and_then(|r| r.strip_suffix("]]"))
                .or_else(|| l.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
                .map(|t| t.trim().to_string())
        });
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    }
}

fn from_toml_error(path: &Path, text: &str, e: &toml::de::Error) -> PolicyError {
    let line = e.span().map(|s| line_of(text, s.start));
    let key = line.map(|l| key_at(text, l)).unwrap_or_default();
    err(path, line, &key, e.message().trim().to_string())
}

/// Finds the file and line that define a dotted key (`placeholder.custom[1].regex` looks for the
/// last plain segment, `regex`, under a `[placeholder…]` table), for errors found after merging.
pub(crate) fn locate(sources: &[PathBuf], key: &str, message: String) -> PolicyError {
    let section = key.split(['.', '[']).next().unwrap_or("");
    let leaf = key
        .rsplit('.')
        .next()
        .unwrap_or(key)
        .split('[')
        .next()
        .unwrap_or("");
    for path in sources.iter().rev() {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut in_section = false;
        for (i, l) in text.lines().enumerate() {
            let t = l.trim();
            if t.starts_with('[') {
                let name = t.trim_matches(|c| c == '[' || c == ']').trim();
                in_section = name == section || name.starts_with(&format!("{section}."));
                continue;
            }
            if in_section {
                if let Some((k, _)) = t.split_once('=') {
                    if k.trim() == leaf {
                        return err(path, Some(i + 1), key, message);
                    }
                }
            }
        }
    }
    err(
        sources
            .last()
            .map_or(Path::new("(policies)"), |p| p.as_path()),
        None,
        key,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reports_file_line_and_key() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "a.toml",
            "[auto_trip]\nleaks = 3\nwindow = \"10m\"\n\n[alerts]\nwebhok = \"x\"\n",
        );
        let e = load_dir(d.path()).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].line, Some(6), "{e}");
        assert_eq!(e.0[0].key, "alerts.webhok", "{e}");
        assert!(e.0[0].message.contains("unknown field"), "{e}");
    }

    #[test]
    fn reports_every_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.toml", "[auto_trip]\nleaks = \"three\"\n");
        write(d.path(), "b.toml", "[identity\n");
        let e = load_dir(d.path()).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.to_string().contains("a.toml:2: auto_trip.leaks"), "{e}");
        assert!(e.to_string().contains("b.toml:1"), "{e}");
    }

    #[test]
    fn validates_after_merge_with_location() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.toml", "# x\n[auto_trip]\nleaks = 0\n");
        let e = load_dir(d.path()).unwrap_err();
        assert_eq!(e.0[0].line, Some(3), "{e}");
        assert_eq!(e.0[0].key, "auto_trip.leaks");
    }

    #[test]
    fn merges_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "10-base.toml",
            "[auto_trip]\nleaks = 3\n[identity]\ntenant_headers = [\"A\"]\n",
        );
        write(
            d.path(),
            "20-site.toml",
            "[auto_trip]\nleaks = 5\n[identity]\ntenant_headers = [\"B\"]\n",
        );
        let (f, files) = load_dir(d.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(f.auto_trip.leaks, 5);
        assert_eq!(f.identity.tenant_headers, vec!["A", "B"]);
        assert_eq!(f.identity.campaign_headers.len(), 3);
    }

    #[test]
    fn missing_dir_is_an_error() {
        let e = load_dir(Path::new("does-not-exist-here")).unwrap_err();
        assert!(e.to_string().contains("cannot read policies directory"));
    }
}
