//! The side-by-side comparison: strata against an SQLite event store, on one machine,
//! in one run, on the same deterministic CRM-like workload.
//!
//! ```text
//! cargo bench --bench compare -- --quick      # 100,000 events, about a minute
//! cargo bench --bench compare                 # 1,000,000 events over 50,000 entities
//! cargo bench --bench compare -- --json       # one JSON object per figure and system
//! ```
//!
//! Each system is measured in child processes (this binary re-executed with `--child`),
//! so that the two never share a heap, a page-cache-warm handle or a peak-RSS counter:
//!
//! 1. `append`: durable single-event appends for a fixed time, from 1 thread and from
//!    8 threads, on fresh stores.
//! 2. `load`: the whole workload appended durably in 1,000-event batches; then bytes on
//!    disk, and a check of the store against the reference fold.
//! 3. `read`: a fresh process opens the loaded store (for strata, a full replay of the
//!    log: no checkpoint has been written) and measures as-of reads, gets, its own peak
//!    resident memory so far, and full replay; then, for strata, writes a checkpoint and
//!    measures open with it.
//!
//! Children print their figures as JSON lines on stdout and their progress on stderr;
//! the parent prints the table (or the JSON lines) with each figure's ratio and target.
//! Set `STRATA_BENCH_DIR` to choose where the stores go (default: a temporary
//! directory, removed afterwards) and `--keep` to keep them.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata::{Durability, NewEvent, Store, Timestamp};

use common::fixture::{self, new_event};
use common::sqlite::SqliteStore;
use common::workload::{self, EntityState, Op, SplitMix64, WorkloadConfig};

/// Threads in the concurrent append figure.
const THREADS: usize = 8;
/// Events per batch in the batched load.
const BATCH: usize = 1_000;
/// The seed of every random choice the measurements make (versions, entities).
const READ_SEED: u64 = 42;

/// The two run sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quick,
    Full,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }

    fn parse(text: &str) -> Mode {
        if text == "quick" { Mode::Quick } else { Mode::Full }
    }

    fn workload(self) -> WorkloadConfig {
        match self {
            Mode::Quick => WorkloadConfig::quick(),
            Mode::Full => WorkloadConfig::full(),
        }
    }

    /// How long each timed append phase runs.
    fn append_phase(self) -> Duration {
        match self {
            Mode::Quick => Duration::from_secs(3),
            Mode::Full => Duration::from_secs(6),
        }
    }

    /// The time budget of one series of reads.
    fn read_budget(self) -> Duration {
        match self {
            Mode::Quick => Duration::from_secs(2),
            Mode::Full => Duration::from_secs(5),
        }
    }

    /// How many distinct ordinary entities the get figures read.
    fn get_sample(self) -> usize {
        match self {
            Mode::Quick => 2_500,
            Mode::Full => 10_000,
        }
    }
}

/// The systems under comparison.
const SYSTEMS: [&str; 2] = ["strata", "sqlite"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let rest = &args[at + 1..];
        let [phase, system, mode, dir, ..] = rest else {
            panic!("usage: compare --child PHASE SYSTEM MODE DIR, got {rest:?}");
        };
        run_child(phase, system, Mode::parse(mode), Path::new(dir));
        return;
    }
    // Cargo passes `--bench`; anything else unknown is ignored too.
    let mode = if args.iter().any(|a| a == "--quick") { Mode::Quick } else { Mode::Full };
    let as_json = args.iter().any(|a| a == "--json");
    let keep = args.iter().any(|a| a == "--keep");
    run_parent(mode, as_json, keep);
}

// ---------------------------------------------------------------------------------------
// The parent: runs the children, gathers their figures, prints the comparison.

/// One measured figure of one system.
#[derive(Debug, Clone, PartialEq)]
struct Figure {
    system: String,
    figure: String,
    value: f64,
    unit: String,
}

fn run_parent(mode: Mode, as_json: bool, keep: bool) {
    let started = Instant::now();
    let (base, temp) = match std::env::var_os("STRATA_BENCH_DIR") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let temp = tempfile::Builder::new().prefix("strata-compare-").tempdir().expect("create a temporary directory");
            (temp.path().to_owned(), Some(temp))
        }
    };
    let config = mode.workload();
    eprintln!(
        "compare ({}): {} events over {} ordinary entities plus deep entities {:?}; stores under {}",
        mode.name(),
        config.total_events,
        config.entities,
        config.deep_depths,
        base.display()
    );
    // Phase by phase, strata then SQLite: on a shared machine whose load drifts, the two
    // figures of a pair are measured minutes apart at most.
    let mut figures = Vec::new();
    for phase in ["append", "load", "read"] {
        for system in SYSTEMS {
            let t = Instant::now();
            figures.extend(spawn_child(phase, system, mode, &base.join(system)));
            eprintln!("[{system}] {phase} done in {:.1?}", t.elapsed());
        }
    }
    if !keep {
        for system in SYSTEMS {
            let _ = fs::remove_dir_all(base.join(system));
        }
    }
    if keep {
        eprintln!("stores kept under {}", base.display());
    } else if let Some(temp) = temp {
        drop(temp);
    }
    if as_json {
        let mut out = std::io::stdout().lock();
        for f in &figures {
            let line = json!({"system": f.system, "figure": f.figure, "value": f.value, "unit": f.unit});
            writeln!(out, "{line}").expect("write to stdout");
        }
    } else {
        print!("{}", markdown_table(&figures));
    }
    eprintln!("compare ({}) finished in {:.1?}", mode.name(), started.elapsed());
}

/// Runs one child and returns the figures it printed.
fn spawn_child(phase: &str, system: &str, mode: Mode, dir: &Path) -> Vec<Figure> {
    let exe = std::env::current_exe().expect("the path of this benchmark binary");
    let mut child = Command::new(exe)
        .args(["--child", phase, system, mode.name()])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a measurement child");
    let stdout = child.stdout.take().expect("child stdout is piped");
    let mut figures = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            eprintln!("{line}");
            continue;
        };
        figures.push(Figure {
            system: v["system"].as_str().unwrap_or_default().to_owned(),
            figure: v["figure"].as_str().unwrap_or_default().to_owned(),
            value: v["value"].as_f64().unwrap_or(f64::NAN),
            unit: v["unit"].as_str().unwrap_or_default().to_owned(),
        });
    }
    let status = child.wait().expect("wait for a measurement child");
    assert!(status.success(), "the {phase} child of {system} failed: {status}");
    figures
}

/// How a figure is judged: which way is better and what the issues ask of it.
struct Spec {
    figure: &'static str,
    label: &'static str,
    /// Targets on the strata/SQLite ratio or on strata's own value.
    targets: &'static [Target],
}

#[derive(Clone, Copy)]
enum Target {
    /// strata / SQLite >= this.
    RatioAtLeast(f64),
    /// strata / SQLite <= this.
    RatioAtMost(f64),
    /// strata's value >= this.
    AtLeast(f64),
    /// strata's value <= this.
    AtMost(f64),
    /// strata's value <= this times strata's value of another figure.
    WithinOf(f64, &'static str),
}

const SPECS: &[Spec] = &[
    Spec { figure: "append_1_thread", label: "durable single-event appends, 1 thread", targets: &[Target::RatioAtLeast(1.2)] },
    Spec { figure: "append_8_threads", label: "durable single-event appends, 8 threads", targets: &[Target::RatioAtLeast(6.0)] },
    Spec { figure: "append_batch_1000", label: "durable appends in 1,000-event batches", targets: &[Target::RatioAtLeast(6.0)] },
    Spec { figure: "bytes_per_event", label: "bytes on disk per event", targets: &[Target::RatioAtMost(0.25)] },
    Spec { figure: "as_of_p50_depth_100", label: "as-of read p50, depth 100", targets: &[] },
    Spec { figure: "as_of_p99_depth_100", label: "as-of read p99, depth 100", targets: &[] },
    Spec {
        figure: "as_of_p50_depth_10000",
        label: "as-of read p50, depth 10,000",
        targets: &[Target::RatioAtMost(1.0 / 50.0), Target::AtMost(25.0), Target::WithinOf(1.5, "as_of_p50_depth_100")],
    },
    Spec { figure: "as_of_p99_depth_10000", label: "as-of read p99, depth 10,000", targets: &[] },
    Spec { figure: "get_p50_cold", label: "get p50, first read of the entity since open", targets: &[Target::AtMost(2.0)] },
    Spec { figure: "get_p50_warm", label: "get p50, entity read before", targets: &[Target::AtMost(2.0)] },
    Spec {
        figure: "get_p50_after_checkpoint_open",
        label: "get p50, first read after open with a checkpoint",
        targets: &[Target::AtMost(2.0)],
    },
    Spec {
        figure: "full_replay",
        label: "full replay (strata: open without checkpoint)",
        targets: &[Target::RatioAtLeast(2.0), Target::AtLeast(2_000_000.0)],
    },
    Spec { figure: "open_with_checkpoint", label: "open with a checkpoint", targets: &[Target::AtMost(0.3)] },
    Spec { figure: "peak_rss", label: "peak resident memory (open, as-of reads, gets)", targets: &[] },
    Spec { figure: "index_bytes_per_event", label: "index memory per event (`Store::stats`)", targets: &[Target::AtMost(48.0)] },
    Spec {
        figure: "open_heap_bytes_per_event",
        label: "heap growth of open without checkpoint, per event",
        targets: &[Target::AtMost(48.0)],
    },
];

fn markdown_table(figures: &[Figure]) -> String {
    let value = |system: &str, figure: &str| figures.iter().find(|f| f.system == system && f.figure == figure);
    let mut out = String::new();
    out.push_str("| figure | strata | SQLite | strata / SQLite | target | met |\n");
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for spec in SPECS {
        let strata = value("strata", spec.figure);
        let sqlite = value("sqlite", spec.figure);
        let unit = strata.or(sqlite).map_or("", |f| f.unit.as_str());
        let show = |f: Option<&Figure>| f.map_or_else(|| "n/a".to_owned(), |f| format!("{} {unit}", number(f.value)));
        let ratio = match (strata, sqlite) {
            (Some(a), Some(b)) if b.value > 0.0 => Some(a.value / b.value),
            _ => None,
        };
        let ratio_text = ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.3}"));
        let mut target_text = Vec::new();
        let mut met_text = Vec::new();
        for target in spec.targets {
            let (text, met) = match *target {
                Target::RatioAtLeast(x) => (format!(">= {x}x SQLite"), ratio.map(|r| r >= x)),
                Target::RatioAtMost(x) if x < 1.0 && spec.figure.starts_with("as_of") => {
                    (format!(">= {:.0}x faster than SQLite", 1.0 / x), ratio.map(|r| r <= x))
                }
                Target::RatioAtMost(x) => (format!("<= {x}x SQLite"), ratio.map(|r| r <= x)),
                Target::AtLeast(x) => (format!(">= {} {unit}", number(x)), strata.map(|f| f.value >= x)),
                Target::AtMost(x) => (format!("<= {} {unit}", number(x)), strata.map(|f| f.value <= x)),
                Target::WithinOf(x, other) => {
                    let base = value("strata", other).map(|f| f.value);
                    (format!("<= {x}x strata's {}", other.replace('_', " ")), strata.zip(base).map(|(f, b)| f.value <= x * b))
                }
            };
            target_text.push(text);
            met_text.push(match met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "pending",
            });
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            spec.label,
            show(strata),
            show(sqlite),
            ratio_text,
            target_text.join("; "),
            met_text.join("; ")
        );
    }
    out
}

/// A figure with three significant digits and thousands separators.
fn number(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 {
        let digits = format!("{:.0}", x.round());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

// ---------------------------------------------------------------------------------------
// The children: each measures one phase of one system and prints JSON lines.

fn run_child(phase: &str, system: &str, mode: Mode, dir: &Path) {
    let report = |figure: &str, value: f64, unit: &str| {
        println!("{}", json!({"system": system, "figure": figure, "value": value, "unit": unit}));
    };
    match (phase, system) {
        ("append", "strata") => strata_appends(mode, dir, &report),
        ("append", "sqlite") => sqlite_appends(mode, dir, &report),
        ("load", "strata") => strata_load(mode, dir, &report),
        ("load", "sqlite") => sqlite_load(mode, dir, &report),
        ("read", "strata") => strata_reads(mode, dir, &report),
        ("read", "sqlite") => sqlite_reads(mode, dir, &report),
        _ => panic!("unknown child {phase} {system}"),
    }
}

type Report<'a> = dyn Fn(&str, f64, &str) + 'a;

/// The ops of the append phases: more than 8 group-committing threads append in a
/// phase, so that no thread runs out of work before the deadline.
fn append_ops() -> Vec<Op> {
    let config = WorkloadConfig { total_events: 500_000, entities: 25_000, ..WorkloadConfig::quick() };
    workload::generate(&config).expect("workload config is valid")
}

/// Splits ops into `n` shares by entity, so that each share stays valid in order.
fn shares<T>(ops: Vec<Op>, n: usize, convert: impl Fn(Op) -> T) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for op in ops {
        let h = op.entity().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        out[(h % n as u64) as usize].push(convert(op));
    }
    out
}

/// Runs `append` over `share` on each of several threads until `phase` has passed;
/// returns the events appended and the seconds taken.
fn timed_threads<T: Send + 'static>(
    shares: Vec<Vec<T>>,
    phase: Duration,
    append: impl Fn(usize, T) + Send + Sync + 'static,
) -> (usize, f64) {
    let append = Arc::new(append);
    let start = Instant::now();
    let deadline = start + phase;
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(thread_no, share)| {
            let append = Arc::clone(&append);
            thread::spawn(move || {
                let mut done = 0;
                for item in share {
                    append(thread_no, item);
                    done += 1;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                done
            })
        })
        .collect();
    let events: usize = handles.into_iter().map(|h| h.join().expect("append thread panicked")).sum();
    (events, start.elapsed().as_secs_f64())
}

fn strata_appends(mode: Mode, dir: &Path, report: &Report<'_>) {
    for threads in [1, THREADS] {
        let store_dir = dir.join(format!("append-{threads}"));
        let _ = fs::remove_dir_all(&store_dir);
        let store = Arc::new(Store::open(&store_dir, fixture::options(Durability::Always)).expect("open strata store"));
        let work = shares(append_ops(), threads, new_event);
        let appender = Arc::clone(&store);
        let (events, secs) = timed_threads(work, mode.append_phase(), move |_, ev: NewEvent| {
            appender.append(ev).expect("durable append");
        });
        assert_eq!(store.last_seq(), events as u64);
        report_appends(threads, events, secs, report);
        drop(store);
        let _ = fs::remove_dir_all(&store_dir);
    }
}

fn sqlite_appends(mode: Mode, dir: &Path, report: &Report<'_>) {
    for threads in [1, THREADS] {
        let store_dir = dir.join(format!("append-{threads}"));
        let _ = fs::remove_dir_all(&store_dir);
        let store = SqliteStore::open(&store_dir).expect("open sqlite store");
        let work = shares(append_ops(), threads, |op| op);
        // One connection per thread, as a careful user would give each writer.
        let connections: Vec<_> = (0..threads).map(|_| std::sync::Mutex::new(store.connect().expect("connect"))).collect();
        let (events, secs) = timed_threads(work, mode.append_phase(), move |thread_no, op: Op| {
            let mut conn = connections[thread_no].lock().expect("one thread per connection");
            conn.append_one(&op).expect("durable append");
        });
        assert_eq!(store.event_count().expect("count"), events as u64);
        report_appends(threads, events, secs, report);
        drop(store);
        let _ = fs::remove_dir_all(&store_dir);
    }
}

fn report_appends(threads: usize, events: usize, secs: f64, report: &Report<'_>) {
    let figure = if threads == 1 { "append_1_thread".to_owned() } else { format!("append_{threads}_threads") };
    eprintln!("  {figure}: {events} events in {secs:.2}s = {:.0}/s", events as f64 / secs);
    report(&figure, events as f64 / secs, "events/s");
}

/// The ids the read phase samples: the deep entities, then distinct ordinary ones.
fn sample_ids(mode: Mode, config: &WorkloadConfig, ops: &[Op]) -> Vec<String> {
    let mut ids: Vec<String> = (0..config.deep_depths.len()).map(|i| config.deep_id(i)).collect();
    let mut ordinary: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Create { id, .. } if !id.starts_with("deep_") => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut rng = SplitMix64::new(READ_SEED);
    // A partial Fisher-Yates shuffle: the first `take` are a uniform sample.
    let take = mode.get_sample().min(ordinary.len());
    for i in 0..take {
        let j = i + rng.below(ordinary.len() - i);
        ordinary.swap(i, j);
    }
    ids.extend(ordinary[..take].iter().map(|s| (*s).to_owned()));
    ids
}

const IDS_FILE: &str = "sample-ids.txt";

fn write_ids(dir: &Path, ids: &[String]) {
    fs::write(dir.join(IDS_FILE), ids.join("\n")).expect("write the sample ids");
}

fn read_ids(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join(IDS_FILE)).expect("read the sample ids").lines().map(str::to_owned).collect()
}

/// The size of every file in `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).expect("list store directory") {
        let entry = entry.expect("directory entry");
        let meta = entry.metadata().expect("file metadata");
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

/// The workload of a load phase and its reference fold, with `dir` emptied and the sampled
/// ids written into it (the read phases read them back).
fn fresh_load(mode: Mode, dir: &Path) -> (Vec<Op>, Reference) {
    let config = mode.workload();
    let ops = workload::generate(&config).expect("workload config is valid");
    let reference = Reference::new(&config, &ops);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("create the system directory");
    write_ids(dir, &sample_ids(mode, &config, &ops));
    (ops, reference)
}

fn strata_load(mode: Mode, dir: &Path, report: &Report<'_>) {
    let (ops, reference) = fresh_load(mode, dir);
    let store_dir = dir.join("store");
    let store = Store::open(&store_dir, fixture::options(Durability::Always)).expect("open strata store");

    let total = ops.len();
    let mut batches: Vec<Vec<NewEvent>> = Vec::with_capacity(total / BATCH + 1);
    let mut stamper = fixture::Stamper::new();
    let mut ops = ops.into_iter().map(|op| stamper.stamp(new_event(op))).peekable();
    while ops.peek().is_some() {
        batches.push(ops.by_ref().take(BATCH).collect());
    }
    let mut stamps = Vec::with_capacity(total);
    let start = Instant::now();
    for batch in batches {
        let events = store.append_batch(batch).expect("durable batch append");
        stamps.extend(events.iter().map(|e| e.timestamp.as_micros()));
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("  append_batch_1000: {total} events in {secs:.2}s = {:.0}/s", total as f64 / secs);
    report("append_batch_1000", total as f64 / secs, "events/s");

    reference.check(&StrataReads(&store), &stamps);
    drop(store);
    let bytes = dir_bytes(&store_dir);
    eprintln!("  bytes on disk: {bytes} = {:.1}/event", bytes as f64 / total as f64);
    report("bytes_per_event", bytes as f64 / total as f64, "bytes");
}

fn sqlite_load(mode: Mode, dir: &Path, report: &Report<'_>) {
    let (ops, reference) = fresh_load(mode, dir);
    let mut store = SqliteStore::open(&dir.join("store")).expect("open sqlite store");

    let mut stamps = Vec::with_capacity(ops.len());
    let start = Instant::now();
    for batch in ops.chunks(BATCH) {
        stamps.extend(store.append_batch(batch).expect("durable batch append"));
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!("  append_batch_1000: {} events in {secs:.2}s = {:.0}/s", ops.len(), ops.len() as f64 / secs);
    report("append_batch_1000", ops.len() as f64 / secs, "events/s");

    reference.check(&SqliteReads(&store), &stamps);
    let bytes = store.bytes_on_disk().expect("bytes on disk");
    eprintln!("  bytes on disk (after a WAL checkpoint): {bytes} = {:.1}/event", bytes as f64 / ops.len() as f64);
    report("bytes_per_event", bytes as f64 / ops.len() as f64, "bytes");
}

/// The read operations both systems offer, returning the visible state (`None` when the
/// entity is absent or deleted).
trait Reads {
    fn timestamps(&self, id: &str) -> Vec<i64>;
    fn as_of(&self, id: &str, ts: i64) -> Option<Value>;
    fn get(&self, id: &str) -> Option<Value>;
    /// The timed get: reads the entity through the system's own API, as a caller would,
    /// and says whether it is visible. `get` above converts strata's shared state into
    /// an owned `Value` for comparison, a copy a caller reading fields does not make.
    fn get_visible(&self, id: &str) -> bool;
}

struct StrataReads<'a>(&'a Store);

impl Reads for StrataReads<'_> {
    fn timestamps(&self, id: &str) -> Vec<i64> {
        self.0.history(id).expect("history").iter().map(|e| e.timestamp.as_micros()).collect()
    }
    fn as_of(&self, id: &str, ts: i64) -> Option<Value> {
        fixture::visible(self.0.get_as_of(id, Timestamp::from_micros(ts)).expect("get_as_of"))
    }
    fn get(&self, id: &str) -> Option<Value> {
        fixture::visible(self.0.get(id).expect("get"))
    }
    fn get_visible(&self, id: &str) -> bool {
        self.0.get(id).expect("get").is_some_and(|e| !e.deleted)
    }
}

struct SqliteReads<'a>(&'a SqliteStore);

impl Reads for SqliteReads<'_> {
    fn timestamps(&self, id: &str) -> Vec<i64> {
        self.0.timestamps(id).expect("timestamps")
    }
    fn as_of(&self, id: &str, ts: i64) -> Option<Value> {
        self.0.get_as_of(id, ts).expect("get_as_of")
    }
    fn get(&self, id: &str) -> Option<Value> {
        self.0.get(id).expect("get")
    }
    fn get_visible(&self, id: &str) -> bool {
        self.get(id).is_some()
    }
}

/// What the loaded store must agree with: the reference fold of every entity and, for
/// the deep ones, the op positions of their events.
struct Reference {
    states: HashMap<String, EntityState>,
    deep: Vec<(String, Vec<usize>)>,
    ops: Vec<(workload::EventKind, Option<Value>)>,
}

impl Reference {
    fn new(config: &WorkloadConfig, ops: &[Op]) -> Self {
        let deep_ids: Vec<String> = (0..config.deep_depths.len()).map(|i| config.deep_id(i)).collect();
        let deep = deep_ids
            .iter()
            .map(|id| (id.clone(), ops.iter().enumerate().filter(|(_, op)| op.entity() == id).map(|(i, _)| i).collect()))
            .collect();
        let deep_ops = ops
            .iter()
            .map(|op| {
                let is_deep = deep_ids.iter().any(|d| d == op.entity());
                (op.event_kind(), if is_deep { op.payload().cloned() } else { None })
            })
            .collect();
        Reference { states: workload::fold_ops(ops), deep, ops: deep_ops }
    }

    /// Checks gets of a sample of entities and as-of reads of the deep entities at
    /// sampled timestamps. `stamps[i]` is the timestamp the store gave op `i`.
    fn check(&self, store: &dyn Reads, stamps: &[i64]) {
        let start = Instant::now();
        let mut checked = 0;
        for (id, state) in self.states.iter().take(2_000) {
            assert_eq!(store.get(id).as_ref(), state.current(), "get({id})");
            checked += 1;
        }
        for (id, positions) in &self.deep {
            assert_eq!(store.as_of(id, stamps[positions[0]] - 1), None, "{id} before its creation");
            let mut state = EntityState::default();
            let step = (positions.len() / 100).max(1);
            for (n, &at) in positions.iter().enumerate() {
                let (kind, payload) = &self.ops[at];
                state.apply(*kind, payload.as_ref().unwrap_or(&Value::Null));
                // An as-of read at this event's timestamp sees every event stamped the
                // same: check only the last of them (each event has its own timestamp in
                // both loads, so this is every event).
                let last_of_stamp = positions.get(n + 1).is_none_or(|&next| stamps[next] != stamps[at]);
                if last_of_stamp && (n % step == 0 || n + 1 == positions.len()) {
                    assert_eq!(store.as_of(id, stamps[at]).as_ref(), state.current(), "{id} as of version {}", n + 1);
                    checked += 1;
                }
            }
        }
        eprintln!("  checked against the reference fold: {checked} reads in {:.2?}", start.elapsed());
    }
}

/// Returns freed heap memory to the system (glibc keeps it in per-thread arenas, which
/// would count the buffers open's decompression thread has already freed as index).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases free memory of glibc's allocator, which is the
    // allocator of this process; it takes no pointers and is thread-safe.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

/// Resident-memory fields of this process from `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

fn strata_reads(mode: Mode, dir: &Path, report: &Report<'_>) {
    let ids = read_ids(dir);
    let store_dir = dir.join("store");
    release_free_heap();
    let heap_before = status_kib("RssAnon").unwrap_or(0);
    let start = Instant::now();
    let store = Store::open(&store_dir, fixture::options(Durability::Always)).expect("open strata store");
    let first_open = start.elapsed();
    release_free_heap();
    let heap_after = status_kib("RssAnon").unwrap_or(0);
    let events = store.last_seq();
    let heap = (heap_after.saturating_sub(heap_before) * 1024) as f64 / events as f64;
    let stats = store.stats();
    let index = stats.index_bytes as f64 / events as f64;
    eprintln!(
        "  open (full replay) of {events} events: {first_open:.2?}; heap grew {} KiB = {heap:.1} bytes/event; \
         {stats:?} = {index:.1} index bytes/event",
        heap_after - heap_before
    );
    report("index_bytes_per_event", index, "bytes");
    report("open_heap_bytes_per_event", heap, "bytes");

    measure_reads(mode, &StrataReads(&store), &ids, report);
    report_peak(report);
    check_as_of_against_history(&store, &ids);

    // Two more opens for a median of three replays.
    drop(store);
    let mut runs = vec![first_open];
    for _ in 0..2 {
        let start = Instant::now();
        let store = Store::open(&store_dir, fixture::options(Durability::Always)).expect("reopen strata store");
        runs.push(start.elapsed());
        assert_eq!(store.last_seq(), events);
    }
    report_replay(events, runs, report);
    strata_checkpoint_open(&store_dir, &ids, report);
}

/// Writes a checkpoint of the loaded store, then opens it three times: the median open
/// time, and gets right after such an open.
fn strata_checkpoint_open(store_dir: &Path, ids: &[String], report: &Report<'_>) {
    let store = Store::open(store_dir, fixture::options(Durability::Always)).expect("open strata store");
    let start = Instant::now();
    let covered = store.checkpoint().expect("checkpoint");
    eprintln!("  checkpoint (covering seq {covered:?}) written in {:.2?}", start.elapsed());
    drop(store);
    let mut runs = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        drop(last.take());
        let start = Instant::now();
        let store = Store::open(store_dir, fixture::options(Durability::Always)).expect("open with a checkpoint");
        runs.push(start.elapsed());
        last = Some(store);
    }
    runs.sort();
    eprintln!("  open with a checkpoint: runs {runs:.2?}");
    report("open_with_checkpoint", runs[1].as_secs_f64(), "s");
    let store = last.expect("opened");
    let reads = StrataReads(&store);
    let mut latencies: Vec<Duration> = ids
        .iter()
        .filter(|id| !id.starts_with("deep_"))
        .map(|id| {
            let t = Instant::now();
            std::hint::black_box(reads.get_visible(id));
            t.elapsed()
        })
        .collect();
    latencies.sort();
    eprintln!("  get right after open with a checkpoint: p50 {:.2?}", percentile(&latencies, 0.5));
    report("get_p50_after_checkpoint_open", micros(percentile(&latencies, 0.5)), "us");
}

/// Checks as-of reads of the deep entities (served from the snapshots the timed reads
/// built) against a plain fold of their history, at about 200 versions each.
fn check_as_of_against_history(store: &Store, ids: &[String]) {
    let start = Instant::now();
    let mut checked = 0;
    for id in ids.iter().filter(|id| id.starts_with("deep_")) {
        let history = store.history(id).expect("history");
        let step = (history.len() / 200).max(1);
        let mut state = EntityState::default();
        for (n, event) in history.iter().enumerate() {
            let kind = workload::EventKind::from_event_type(event.verb());
            state.apply(kind, &event.data);
            let last_of_stamp = history.get(n + 1).is_none_or(|next| next.timestamp != event.timestamp);
            if last_of_stamp && (n % step == 0 || n + 1 == history.len()) {
                let got = StrataReads(store).as_of(id, event.timestamp.as_micros());
                assert_eq!(got.as_ref(), state.current(), "{id} as of version {}", n + 1);
                checked += 1;
            }
        }
    }
    eprintln!("  as-of reads checked against a fold of the history: {checked} in {:.2?}", start.elapsed());
}

fn sqlite_reads(mode: Mode, dir: &Path, report: &Report<'_>) {
    let ids = read_ids(dir);
    let store = SqliteStore::open(&dir.join("store")).expect("open sqlite store");
    measure_reads(mode, &SqliteReads(&store), &ids, report);
    report_peak(report);
    let mut runs = Vec::new();
    let mut events = 0;
    for _ in 0..3 {
        let start = Instant::now();
        events = store.replay_all().expect("replay");
        runs.push(start.elapsed());
    }
    report_replay(events, runs, report);
}

fn report_peak(report: &Report<'_>) {
    let hwm = status_kib("VmHWM").unwrap_or(0);
    eprintln!("  peak resident memory so far: {hwm} KiB (RssAnon now {} KiB)", status_kib("RssAnon").unwrap_or(0));
    report("peak_rss", hwm as f64 / 1024.0, "MiB");
}

fn report_replay(events: u64, mut runs: Vec<Duration>, report: &Report<'_>) {
    runs.sort();
    let median = runs[runs.len() / 2];
    eprintln!("  full replay of {events} events: runs {runs:.2?}, median {:.0} events/s", events as f64 / median.as_secs_f64());
    report("full_replay", events as f64 / median.as_secs_f64(), "events/s");
}

/// As-of reads of the deep entities at the timestamps of random versions, then gets of
/// the sampled ordinary entities: first reads, then the same entities again.
fn measure_reads(mode: Mode, store: &dyn Reads, ids: &[String], report: &Report<'_>) {
    let (deep, ordinary): (Vec<&String>, Vec<&String>) = ids.iter().partition(|id| id.starts_with("deep_"));
    for id in deep {
        let depth: usize = id.trim_start_matches("deep_").parse().expect("deep ids end with their depth");
        if depth != 100 && depth != 10_000 {
            continue;
        }
        // Each entity has its own generator, so that both systems read the same versions
        // however many reads their time budget allows.
        let mut rng = SplitMix64::new(READ_SEED ^ depth as u64);
        let stamps = store.timestamps(id);
        assert_eq!(stamps.len(), depth, "{id} has {depth} versions");
        let phase = Instant::now();
        let mut latencies = Vec::new();
        while latencies.len() < 2_000 && phase.elapsed() < mode.read_budget() {
            let ts = *rng.pick(&stamps);
            let t = Instant::now();
            let state = store.as_of(id, ts);
            latencies.push(t.elapsed());
            assert!(state.is_some(), "{id} exists at {ts}");
        }
        let first = latencies[0];
        latencies.sort();
        let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
        eprintln!("  as-of {id}: {} reads, first {first:.2?}, p50 {p50:.2?}, p99 {p99:.2?}", latencies.len());
        report(&format!("as_of_p50_depth_{depth}"), micros(p50), "us");
        report(&format!("as_of_p99_depth_{depth}"), micros(p99), "us");
    }
    for label in ["cold", "warm"] {
        let mut latencies = Vec::with_capacity(ordinary.len());
        let mut found = 0;
        for id in &ordinary {
            let t = Instant::now();
            let visible = store.get_visible(id);
            latencies.push(t.elapsed());
            found += usize::from(visible);
        }
        latencies.sort();
        let p50 = percentile(&latencies, 0.50);
        eprintln!("  get ({label}): {} entities ({found} live), p50 {p50:.2?}, p99 {:.2?}", latencies.len(), percentile(&latencies, 0.99));
        report(&format!("get_p50_{label}"), micros(p50), "us");
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
