//! Suppression index at ten million entries: lookup latency (hit and miss), build time from a
//! list file, and memory per entry.
//!
//! Run with `cargo bench --bench suppression`.

use divan::{black_box, Bencher};
use sendguard::policy::suppression::{Entry, ListSpec, SuppressionIndex, SuppressionPolicy};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// Entries in the big list.
const ENTRIES: u64 = 10_000_000;
/// Distinct addresses probed by the lookup benches (more than the caches hold).
const PROBES: usize = 1 << 20;
/// Hashed entries added to the index of the hashed-list benches.
const HASHED: u64 = 1_000_000;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The i-th address of the big list: realistic lengths (25 to 35 bytes), mixed domains.
fn listed(i: u64) -> String {
    let mut s = i;
    let r = splitmix(&mut s);
    format!(
        "user.{:x}.{}@mail{}.example.test",
        r & 0xff_ffff,
        i,
        r % 1000
    )
}

/// An address that is not in the list.
fn unlisted(i: u64) -> String {
    let mut s = i ^ 0xdead_beef;
    let r = splitmix(&mut s);
    format!(
        "other.{:x}.{}@mail{}.example.test",
        r & 0xff_ffff,
        i,
        r % 1000
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    index: SuppressionIndex,
    /// The same file plus an admin list and 1 M md5 + 1 M sha256 entries.
    mixed: SuppressionIndex,
    hits: Vec<String>,
    misses: Vec<String>,
}

fn policy(file: &str) -> SuppressionPolicy {
    SuppressionPolicy {
        lists: vec![ListSpec::new(file)],
        ..SuppressionPolicy::default()
    }
}

fn write_list(path: &Path) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    writeln!(w, "# generated list of {ENTRIES} addresses")?;
    for i in 0..ENTRIES {
        writeln!(w, "{}", listed(i))?;
    }
    w.flush()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        let base = dir.path().to_path_buf();
        let t = Instant::now();
        if let Err(e) = write_list(&base.join("big.txt")) {
            panic!("cannot write the list: {e}");
        }
        eprintln!("wrote {ENTRIES} lines in {:.1?}", t.elapsed());
        let t = Instant::now();
        let index = match SuppressionIndex::build(&policy("big.txt"), &base, &[]) {
            Ok((index, _)) => index,
            Err(e) => panic!("cannot build: {e}"),
        };
        eprintln!("built the index in {:.2?}", t.elapsed());
        // An admin list next to the file (so every key carries its list id), and hashed lists.
        let extra: Vec<Entry> = (0..HASHED)
            .flat_map(|i| {
                let a = unlisted(i + (1 << 40));
                [Entry::Md5(md5_of(&a)), Entry::Sha256(sha256_of(&a))]
            })
            .chain((0..1000).map(|i| Entry::Address(unlisted(i + (1 << 41)))))
            .collect();
        let mixed = match SuppressionIndex::build(&policy("big.txt"), &base, &extra) {
            Ok((index, _)) => index,
            Err(e) => panic!("cannot build: {e}"),
        };
        let mut s = 42u64;
        let hits = (0..PROBES)
            .map(|_| listed(splitmix(&mut s) % ENTRIES))
            .collect();
        let misses = (0..PROBES as u64).map(unlisted).collect();
        Fixture {
            _dir: dir,
            base,
            index,
            mixed,
            hits,
            misses,
        }
    })
}

fn md5_of(a: &str) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(a.as_bytes()).into()
}

fn sha256_of(a: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(a.as_bytes()).into()
}

/// Looks up the probes in turn, one per iteration.
fn probe(bencher: Bencher, index: &SuppressionIndex, probes: &[String], expect_hit: bool) {
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) % probes.len();
        let found = index.lookup(black_box(&probes[i]));
        assert_eq!(found.is_some(), expect_hit);
        found
    });
}

#[divan::bench(sample_count = 200, sample_size = 1000)]
fn lookup_hit_10m(bencher: Bencher) {
    let f = fixture();
    probe(bencher, &f.index, &f.hits, true);
}

#[divan::bench(sample_count = 200, sample_size = 1000)]
fn lookup_miss_10m(bencher: Bencher) {
    let f = fixture();
    probe(bencher, &f.index, &f.misses, false);
}

/// A hit in an index of several lists (each key carries its list id) that also holds hashed
/// entries: found among the addresses, no digest computed.
#[divan::bench(sample_count = 200, sample_size = 1000)]
fn lookup_hit_10m_mixed(bencher: Bencher) {
    let f = fixture();
    probe(bencher, &f.mixed, &f.hits, true);
}

/// A miss in the same index: the md5 and the sha256 of the address are computed and looked up.
#[divan::bench(sample_count = 200, sample_size = 1000)]
fn lookup_miss_10m_mixed(bencher: Bencher) {
    let f = fixture();
    probe(bencher, &f.mixed, &f.misses, false);
}

/// Building the index from the ten-million-line file.
#[divan::bench(sample_count = 3, sample_size = 1)]
fn build_10m_from_file(bencher: Bencher) {
    let f = fixture();
    let p = policy("big.txt");
    bencher.bench(|| match SuppressionIndex::build(&p, &f.base, &[]) {
        Ok((index, report)) => {
            assert_eq!(report.entries as u64, ENTRIES);
            index.len()
        }
        Err(e) => panic!("cannot build: {e}"),
    });
}

/// CPU time of this thread so far, in nanoseconds (Linux; `None` elsewhere). On a shared machine
/// this leaves out the time the thread waited for a core, which wall-clock figures include.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU nanoseconds per lookup over every probe: independent lookups (throughput), and lookups
/// chained so that each waits for the previous one's result (latency).
fn cpu_per_lookup(index: &SuppressionIndex, probes: &[String]) -> Option<(f64, f64)> {
    let start = thread_cpu_ns()?;
    let mut found = 0usize;
    for p in probes {
        found += usize::from(index.lookup(black_box(p)).is_some());
    }
    let independent = thread_cpu_ns()? - start;
    let start = thread_cpu_ns()?;
    let mut i = 0usize;
    for _ in 0..probes.len() {
        let hit = index.lookup(black_box(&probes[i])).is_some();
        // The next probe depends on this result (times an opaque zero).
        i = (i + 1 + usize::from(hit) * black_box(0)) % probes.len();
    }
    let chained = thread_cpu_ns()? - start;
    black_box(found);
    let n = probes.len() as f64;
    Some((independent as f64 / n, chained as f64 / n))
}

/// CPU nanoseconds of one random read in a 96 MB array when each read waits for the previous one:
/// the memory latency a cold lookup cannot beat on this machine.
fn cpu_per_random_read() -> Option<f64> {
    let n = 12_000_000usize;
    let mut s = 7u64;
    let table: Vec<u64> = (0..n).map(|_| splitmix(&mut s)).collect();
    let reads = 1_000_000;
    let start = thread_cpu_ns()?;
    let mut x = 1u64;
    for _ in 0..reads {
        let i = ((u128::from(x) * n as u128) >> 64) as usize;
        let mut v = table.get(i).copied().unwrap_or(0) ^ x;
        x = splitmix(&mut v);
    }
    let spent = thread_cpu_ns()? - start;
    black_box(x);
    Some(spent as f64 / reads as f64)
}

fn main() {
    let f = fixture();
    if let Some(ns) = cpu_per_random_read() {
        println!("baseline: one dependent random read in a 96 MB array: {ns:.0} ns cpu");
    }
    let per_entry = |i: &SuppressionIndex| i.heap_bytes() as f64 / i.len() as f64;
    println!(
        "one list: {} entries, {} heap bytes, {:.2} bytes/entry",
        f.index.len(),
        f.index.heap_bytes(),
        per_entry(&f.index)
    );
    println!(
        "file + admin list + hashed lists: {} entries, {} heap bytes, {:.2} bytes/entry",
        f.mixed.len(),
        f.mixed.heap_bytes(),
        per_entry(&f.mixed)
    );
    for (name, index, probes) in [
        ("hit, one list", &f.index, &f.hits),
        ("miss, one list", &f.index, &f.misses),
        ("hit, mixed", &f.mixed, &f.hits),
        ("miss, mixed", &f.mixed, &f.misses),
    ] {
        if let Some((independent, chained)) = cpu_per_lookup(index, probes) {
            println!(
                "cpu time per lookup ({name}): {independent:.0} ns independent, {chained:.0} ns chained"
            );
        }
    }
    divan::main();
    // The fixture lives in a static, which is never dropped: remove the list file here.
    if let Err(e) = std::fs::remove_dir_all(&f.base) {
        eprintln!("cannot remove {}: {e}", f.base.display());
    }
}
