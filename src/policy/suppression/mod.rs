//! Interim suppression index (replaced by the fingerprint index).
#![allow(missing_docs)]
use crate::model::Action;
use crate::model::{domain_of, normalize_address};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionPolicy {
    #[serde(default = "reject")]
    pub action: Action,
    #[serde(default = "default_lists")]
    pub lists: Vec<PathBuf>,
    #[serde(default)]
    pub normalize_plus: bool,
}
fn reject() -> Action {
    Action::Reject
}
fn default_lists() -> Vec<PathBuf> {
    vec![PathBuf::from("suppressions")]
}
impl Default for SuppressionPolicy {
    fn default() -> Self {
        SuppressionPolicy {
            action: Action::Reject,
            lists: default_lists(),
            normalize_plus: false,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionMatch {
    pub entry: String,
    pub list: Arc<str>,
}
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    Address(String),
    Domain(String),
    Md5([u8; 16]),
    Sha256([u8; 32]),
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EntryError(String);
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SuppressionError(String);
impl Entry {
    pub fn parse(line: &str) -> Result<Option<Entry>, EntryError> {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            return Ok(None);
        }
        if let Some(d) = l.strip_prefix('@') {
            return Ok(Some(Entry::Domain(d.to_lowercase())));
        }
        if l.contains('@') {
            return Ok(Some(Entry::Address(normalize_address(l))));
        }
        Err(EntryError(format!("not an address: {l:?}")))
    }
    pub fn to_line(&self) -> String {
        match self {
            Entry::Address(a) => a.clone(),
            Entry::Domain(d) => format!("@{d}"),
            Entry::Md5(h) => format!("md5:{}", hex::encode(h)),
            Entry::Sha256(h) => format!("sha256:{}", hex::encode(h)),
        }
    }
}
#[derive(Debug, Default, Clone, Serialize)]
pub struct LoadReport {
    pub entries: usize,
    pub malformed: usize,
    pub first_errors: Vec<String>,
}
pub fn parse_lines<R: BufRead>(
    reader: R,
    mut on_entry: impl FnMut(Entry),
) -> std::io::Result<LoadReport> {
    let mut r = LoadReport::default();
    for line in reader.lines() {
        match Entry::parse(&line?) {
            Ok(Some(e)) => {
                r.entries += 1;
                on_entry(e)
            }
            Ok(None) => {}
            Err(e) => {
                r.malformed += 1;
                r.first_errors.push(e.to_string())
            }
        }
    }
    Ok(r)
}
#[derive(Debug, Default)]
pub struct SuppressionIndex {
    set: HashSet<Entry>,
}
impl SuppressionIndex {
    pub fn empty() -> Self {
        Self::default()
    }
    pub fn build(
        policy: &SuppressionPolicy,
        base_dir: &Path,
        extra: &[Entry],
    ) -> Result<(SuppressionIndex, LoadReport), SuppressionError> {
        let mut set: HashSet<Entry> = extra.iter().cloned().collect();
        let mut report = LoadReport::default();
        for l in &policy.lists {
            let p = base_dir.join(l);
            let files: Vec<PathBuf> = if p.is_dir() {
                std::fs::read_dir(&p)
                    .map_err(|e| SuppressionError(e.to_string()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "txt"))
                    .collect()
            } else if p.exists() {
                vec![p]
            } else {
                vec![]
            };
            for f in files {
                let file = std::fs::File::open(&f)
                    .map_err(|e| SuppressionError(format!("{}: {e}", f.display())))?;
                let r = parse_lines(std::io::BufReader::new(file), |e| {
                    set.insert(e);
                })
                .map_err(|e| SuppressionError(e.to_string()))?;
                report.entries += r.entries;
                report.malformed += r.malformed;
            }
        }
        Ok((SuppressionIndex { set }, report))
    }
    pub fn lookup(&self, address: &str) -> Option<SuppressionMatch> {
        let a = normalize_address(address);
        let d = Entry::Domain(domain_of(&a).to_string());
        let e = Entry::Address(a);
        for k in [e, d] {
            if self.set.contains(&k) {
                return Some(SuppressionMatch {
                    entry: k.to_line(),
                    list: Arc::from("lists"),
                });
            }
        }
        None
    }
    pub fn len(&self) -> usize {
        self.set.len()
    }
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
    pub fn heap_bytes(&self) -> usize {
        self.set.len() * 48
    }
}
#[derive(Debug, Default)]
pub struct Overlay {
    adds: SuppressionIndex,
    removes: HashSet<String>,
}
impl Overlay {
    pub fn new(adds: &[Entry], removes: &[String]) -> Overlay {
        Overlay {
            adds: SuppressionIndex {
                set: adds.iter().cloned().collect(),
            },
            removes: removes.iter().map(|s| normalize_address(s)).collect(),
        }
    }
}
pub fn check(
    index: &SuppressionIndex,
    overlay: &Overlay,
    address: &str,
) -> Option<SuppressionMatch> {
    if overlay.removes.contains(&normalize_address(address)) {
        return None;
    }
    overlay
        .adds
        .lookup(address)
        .map(|m| SuppressionMatch {
            list: Arc::from("admin"),
            ..m
        })
        .or_else(|| index.lookup(address))
}
