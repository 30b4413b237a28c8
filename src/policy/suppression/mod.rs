//! Suppression lists: recipients that must never receive mail (unsubscribed, complained, bounced).
//!
//! Lists are text files, one entry a line: an address, `@domain`, or the hash of a lower-cased
//! address, `md5:HEX` / `sha256:HEX` or a bare 32- or 64-digit hex line (see [`Entry`]). They are
//! loaded into a [`SuppressionIndex`], an immutable structure built off the hot path (ten million
//! entries take about two seconds) and swapped in whole; a lookup takes well under a microsecond.
//! Entries added or removed at run time through the admin API live in an [`Overlay`], consulted
//! together with the index by [`check`].
//!
//! # Memory and exactness
//!
//! The index does not keep the addresses: it keeps a 64-bit fingerprint of each (xxh3 of the
//! normalised address) in an ordered linear-probing table, about 9.4 bytes per entry (11.8 when
//! several lists hold addresses, to remember which list each came from); a lookup is one random
//! memory access. Hashed entries keep the first 8 bytes of their digest, and digests are computed
//! on lookup only when the index holds hashed entries.
//!
//! Two different addresses share a fingerprint with probability 2⁻⁶⁴, so an address that is in no
//! list is wrongly found in a list of ten million with probability about 10⁷ / 2⁶⁴ ≈ 5 × 10⁻¹³
//! per lookup (one false refusal in two trillion lookups); an address in a list is always found.
//!
//! # Matching
//!
//! An address is normalised (trimmed, `<>` removed, lower-cased) and matches
//! - an address entry equal to it,
//! - a domain entry equal to its domain (`@x.test` covers `anna@x.test`, not `anna@sub.x.test`),
//! - a hashed entry equal to the MD5 or SHA-256 of the normalised address.
//!
//! With [`SuppressionPolicy::normalize_plus`], a tagged address `anna+news@x.test` also matches
//! the entries of `anna@x.test`, hashed entries included (both forms are hashed).

mod entry;
mod fingerprint;
mod load;
mod overlay;
mod policy;

pub use entry::{Entry, EntryError};
pub use load::{parse_lines, parse_lines_as, FileReport, LoadReport};
pub use overlay::{check, Overlay};
pub use policy::{
    default_action, default_lists, default_normalize_plus, ListFormat, ListSpec, SuppressionPolicy,
};

use crate::model::{domain_of, strip_plus_tag};
use entry::{normalize_into, EntryRef};
use fingerprint::{FingerprintSet, SetBuilder, TooManyKeys};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// The list name of entries added through the admin API.
pub const ADMIN_LIST: &str = "admin";

/// Read buffer for list files.
const READ_BUFFER: usize = 256 * 1024;

/// What suppressed an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionMatch {
    /// The entry that matched, as a list line: `anna@x.test`, `@x.test`, `md5:HEX` or `sha256:HEX`
    /// (the full digest of the matching address).
    pub entry: String,
    /// The list the entry is in: its path relative to the policies directory, or `admin`.
    pub list: Arc<str>,
}

/// A list could not be loaded. The text names the list.
#[derive(Debug, thiserror::Error)]
pub enum SuppressionError {
    /// A list file or directory could not be opened.
    #[error("cannot open suppression list {name:?} ({}): {error}", path.display())]
    Open {
        /// The list as named in the policy.
        name: String,
        /// The path that was tried.
        path: PathBuf,
        /// The operating system's reason.
        error: io::Error,
    },
    /// A list file failed while being read.
    #[error("cannot read suppression list {name:?} at line {line}: {error}")]
    Read {
        /// The list as named in the policy.
        name: String,
        /// The path being read.
        path: PathBuf,
        /// The line being read when it failed.
        line: usize,
        /// The operating system's reason.
        error: io::Error,
    },
    /// More list files than the index can tell apart.
    #[error("too many suppression lists: {0} (at most 65535)")]
    TooManyLists(usize),
    /// More entries of one kind than the index can hold.
    #[error("too many suppression entries: {0} (at most 4294967295 of each kind)")]
    TooManyEntries(usize),
}

impl From<TooManyKeys> for SuppressionError {
    fn from(e: TooManyKeys) -> Self {
        SuppressionError::TooManyEntries(e.0)
    }
}

type DomainMap = HashMap<Box<str>, u16, foldhash::fast::FixedState>;

/// The loaded suppression lists: immutable, `Send + Sync`, cheap to query.
///
/// Hold it in an `Arc` (and swap it with `arc-swap` on reload): it is large, and `Clone` copies it.
#[derive(Clone, Default)]
pub struct SuppressionIndex {
    addresses: FingerprintSet,
    md5: FingerprintSet,
    sha256: FingerprintSet,
    domains: DomainMap,
    lists: Vec<Arc<str>>,
    normalize_plus: bool,
}

impl std::fmt::Debug for SuppressionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuppressionIndex")
            .field("addresses", &self.addresses.len())
            .field("domains", &self.domains.len())
            .field("md5", &self.md5.len())
            .field("sha256", &self.sha256.len())
            .field("lists", &self.lists)
            .field("normalize_plus", &self.normalize_plus)
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

/// The forms of one looked-up address.
pub(crate) struct Candidates<'a> {
    pub(crate) exact: &'a str,
    pub(crate) untagged: Option<&'a str>,
}

impl Candidates<'_> {
    fn iter(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.exact).chain(self.untagged)
    }
}

/// Normalises `address` and, with plus normalisation, its untagged form; calls `f` with both.
pub(crate) fn with_candidates<T>(
    address: &str,
    normalize_plus: bool,
    f: impl FnOnce(&Candidates<'_>) -> T,
) -> T {
    let mut buf = [0u8; 256];
    let exact = normalize_into(address, &mut buf);
    let untagged = match normalize_plus.then(|| strip_plus_tag(&exact)) {
        Some(Cow::Owned(s)) => Some(s),
        _ => None,
    };
    f(&Candidates {
        exact: &exact,
        untagged: untagged.as_deref(),
    })
}

pub(crate) fn md5_of(s: &str) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(s.as_bytes()).into()
}

pub(crate) fn sha256_of(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// The fingerprint of a digest: its first 8 bytes.
fn digest_key(digest: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    if let Some(d) = digest.get(..8) {
        head.copy_from_slice(d);
    }
    u64::from_be_bytes(head)
}

fn address_key(address: &str) -> u64 {
    xxh3_64(address.as_bytes())
}

/// The keys of one list, collected while reading it.
#[derive(Default)]
struct ListKeys {
    addresses: Vec<u64>,
    md5: Vec<u64>,
    sha256: Vec<u64>,
}

/// Collects keys from every list, then builds the index.
#[derive(Default)]
struct IndexBuilder {
    addresses: SetBuilder,
    md5: SetBuilder,
    sha256: SetBuilder,
    domains: DomainMap,
    lists: Vec<Arc<str>>,
}

impl IndexBuilder {
    fn next_id(&self) -> Result<u16, SuppressionError> {
        u16::try_from(self.lists.len())
            .map_err(|_| SuppressionError::TooManyLists(self.lists.len() + 1))
    }

    fn add(keys: &mut ListKeys, domains: &mut DomainMap, id: u16, entry: EntryRef<'_>) {
        match entry {
            EntryRef::Address(a) => keys.addresses.push(address_key(&a)),
            EntryRef::Domain(d) => {
                if !domains.contains_key(&*d) {
                    domains.insert(d.into(), id);
                }
            }
            EntryRef::Md5(h) => keys.md5.push(digest_key(&h)),
            EntryRef::Sha256(h) => keys.sha256.push(digest_key(&h)),
        }
    }

    fn finish_list(&mut self, id: u16, name: Arc<str>, keys: ListKeys) {
        self.lists.push(name);
        self.addresses.add_list(id, keys.addresses);
        self.md5.add_list(id, keys.md5);
        self.sha256.add_list(id, keys.sha256);
    }

    fn finish(mut self, normalize_plus: bool) -> Result<SuppressionIndex, SuppressionError> {
        self.domains.shrink_to_fit();
        Ok(SuppressionIndex {
            addresses: self.addresses.finish()?,
            md5: self.md5.finish()?,
            sha256: self.sha256.finish()?,
            domains: self.domains,
            lists: self.lists,
            normalize_plus,
        })
    }
}

/// A list file to read.
struct ListFile {
    name: String,
    path: PathBuf,
    format: ListFormat,
}

/// The list files the policy names, directories expanded.
fn resolve_lists(
    policy: &SuppressionPolicy,
    base_dir: &Path,
) -> Result<Vec<ListFile>, SuppressionError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for spec in &policy.lists {
        let path = base_dir.join(&spec.path);
        let name = spec.path.display().to_string();
        let open_error = |error| SuppressionError::Open {
            name: name.clone(),
            path: path.clone(),
            error,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound && *spec == policy::default_list_dir() =>
            {
                continue
            }
            Err(e) => return Err(open_error(e)),
        };
        if meta.is_dir() {
            let mut found = Vec::new();
            for dirent in std::fs::read_dir(&path).map_err(open_error)? {
                let dirent = dirent.map_err(open_error)?;
                let file_name = dirent.file_name();
                let is_txt = Path::new(&file_name)
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("txt"));
                // `metadata` follows symlinks, so a link to a list counts as a list.
                if is_txt && std::fs::metadata(dirent.path()).is_ok_and(|m| m.is_file()) {
                    found.push(file_name);
                }
            }
            found.sort();
            for file_name in found {
                let path = path.join(&file_name);
                if seen.insert(path.clone()) {
                    files.push(ListFile {
                        name: spec.path.join(&file_name).display().to_string(),
                        path,
                        format: spec.format,
                    });
                }
            }
        } else if seen.insert(path.clone()) {
            files.push(ListFile {
                name,
                path,
                format: spec.format,
            });
        }
    }
    Ok(files)
}

impl SuppressionIndex {
    /// An index with no entries: nothing is suppressed.
    pub fn empty() -> Self {
        SuppressionIndex::default()
    }

    /// Loads the policy's lists (paths relative to `base_dir`, the policies directory) and the
    /// `extra` entries (named `admin` in matches) into an index.
    ///
    /// Malformed lines are skipped, counted and the first ten of each list quoted with their line
    /// numbers in the [`LoadReport`]; they never fail the build. This reads whole files: call it on
    /// a blocking thread and swap the result in.
    ///
    /// # Errors
    /// A list that cannot be opened or read (naming the list, and the line for read errors), or
    /// more lists or entries than the index can hold.
    pub fn build(
        policy: &SuppressionPolicy,
        base_dir: &Path,
        extra: &[Entry],
    ) -> Result<(SuppressionIndex, LoadReport), SuppressionError> {
        let files = resolve_lists(policy, base_dir)?;
        let mut builder = IndexBuilder::default();
        let mut report = LoadReport::default();
        for file in files {
            let id = builder.next_id()?;
            let open = File::open(&file.path).map_err(|error| SuppressionError::Open {
                name: file.name.clone(),
                path: file.path.clone(),
                error,
            })?;
            // Reserve for the common case of a plain address list, about 24 bytes a line.
            let size_hint = open.metadata().map(|m| m.len() / 24).unwrap_or(0);
            let mut keys = ListKeys {
                addresses: Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0)),
                ..ListKeys::default()
            };
            let reader = BufReader::with_capacity(READ_BUFFER, open);
            let entries_before = report.entries;
            let malformed_before = report.malformed;
            let domains = &mut builder.domains;
            let lines =
                load::read_entries(reader, file.format, Some(&file.name), &mut report, |e| {
                    IndexBuilder::add(&mut keys, domains, id, e)
                })
                .map_err(|(line, error)| SuppressionError::Read {
                    name: file.name.clone(),
                    path: file.path.clone(),
                    line,
                    error,
                })?;
            report.files.push(FileReport {
                name: file.name.clone(),
                path: file.path,
                format: file.format,
                lines,
                entries: report.entries - entries_before,
                malformed: report.malformed - malformed_before,
            });
            builder.finish_list(id, file.name.into(), keys);
        }
        if !extra.is_empty() {
            let id = builder.next_id()?;
            let mut keys = ListKeys::default();
            for entry in extra {
                // Normalised again: the variants are public and may have been built by hand.
                let e = match entry {
                    Entry::Address(a) => {
                        EntryRef::Address(entry::lowercase(entry::strip_brackets(a)))
                    }
                    Entry::Domain(d) => {
                        EntryRef::Domain(entry::lowercase(d.trim().trim_start_matches('@')))
                    }
                    Entry::Md5(h) => EntryRef::Md5(*h),
                    Entry::Sha256(h) => EntryRef::Sha256(*h),
                };
                IndexBuilder::add(&mut keys, &mut builder.domains, id, e);
            }
            report.entries += extra.len();
            builder.finish_list(id, ADMIN_LIST.into(), keys);
        }
        Ok((builder.finish(policy.normalize_plus)?, report))
    }

    /// Whether `address` is suppressed, and by which entry of which list.
    ///
    /// The address is normalised first (see the module docs); a `None` means it may be sent to.
    pub fn lookup(&self, address: &str) -> Option<SuppressionMatch> {
        if self.is_empty() {
            return None;
        }
        with_candidates(address, self.normalize_plus, |c| self.lookup_candidates(c))
    }

    pub(crate) fn normalize_plus(&self) -> bool {
        self.normalize_plus
    }

    pub(crate) fn lookup_candidates(&self, c: &Candidates<'_>) -> Option<SuppressionMatch> {
        let hit = |id: u16, entry: String| SuppressionMatch {
            entry,
            list: self
                .lists
                .get(usize::from(id))
                .cloned()
                .unwrap_or_else(|| ADMIN_LIST.into()),
        };
        // When there are hashed entries, every digest is computed before any table is read, so
        // that the reads below are issued close together and their memory latencies overlap
        // (most lookups are misses, which read every table).
        let digests = |a: &str| {
            (
                (!self.md5.is_empty()).then(|| md5_of(a)),
                (!self.sha256.is_empty()).then(|| sha256_of(a)),
            )
        };
        let hashed = !self.md5.is_empty() || !self.sha256.is_empty();
        let exact_digests = hashed.then(|| digests(c.exact));
        let untagged_digests = c.untagged.filter(|_| hashed).map(digests);

        if !self.addresses.is_empty() {
            for a in c.iter() {
                if let Some(id) = self.addresses.get(address_key(a)) {
                    return Some(hit(id, a.to_string()));
                }
            }
        }
        if !self.domains.is_empty() {
            let domain = domain_of(c.exact);
            if let Some(&id) = self.domains.get(domain) {
                return Some(hit(id, format!("@{domain}")));
            }
        }
        for (md5, sha256) in exact_digests.into_iter().chain(untagged_digests) {
            if let Some(d) = md5 {
                if let Some(id) = self.md5.get(digest_key(&d)) {
                    return Some(hit(id, format!("md5:{}", hex::encode(d))));
                }
            }
            if let Some(d) = sha256 {
                if let Some(id) = self.sha256.get(digest_key(&d)) {
                    return Some(hit(id, format!("sha256:{}", hex::encode(d))));
                }
            }
        }
        None
    }

    /// The number of distinct entries (addresses, domains and hashes).
    pub fn len(&self) -> usize {
        self.addresses.len() + self.md5.len() + self.sha256.len() + self.domains.len()
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory the index holds on the heap, in bytes (for the bytes-per-entry figure and
    /// metrics).
    pub fn heap_bytes(&self) -> usize {
        let domains = self.domains.capacity() * (size_of::<(Box<str>, u16)>() + 1)
            + self.domains.keys().map(|d| d.len()).sum::<usize>();
        let lists = self.lists.capacity() * size_of::<Arc<str>>()
            + self.lists.iter().map(|l| l.len() + 16).sum::<usize>();
        self.addresses.heap_bytes()
            + self.md5.heap_bytes()
            + self.sha256.heap_bytes()
            + domains
            + lists
    }

    /// The names of the loaded lists, in load order (`admin` last when extra entries were given).
    pub fn lists(&self) -> &[Arc<str>] {
        &self.lists
    }
}

#[cfg(test)]
mod tests;
