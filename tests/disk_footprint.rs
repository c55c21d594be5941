//! Bytes on disk per event for a CRM-like workload, the figures behind the compression
//! choice in format-spec.md. The measurement is slow in debug builds, so it is ignored by
//! default:
//!
//! ```text
//! cargo test --release --test disk_footprint -- --ignored --nocapture
//! ```
//!
//! The quick test at the end keeps an eye on the batched figure in every run.

mod layout;

use std::path::Path;

use serde_json::{Value, json};
#[path = "support/rng.rs"]
mod rng;
use rng::Rng;
use strata::{Durability, NewEvent, Options, Store};

const FIRST: &[&str] = &["Alice", "Bob", "Chloé", "David", "Emma", "Farid", "Giulia", "Hiro", "Ines", "Jonas", "Kemal", "Lea"];
const LAST: &[&str] = &["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau"];
const COMPANIES: &[&str] = &["Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises", "Soylent"];
const TITLES: &[&str] = &["CEO", "CTO", "Head of Sales", "Buyer", "Engineer", "Office Manager", "VP Marketing"];
const STAGES: &[&str] = &["Lead", "Contacted", "Qualified", "Proposal", "Negotiation", "Won", "Lost"];
const CITIES: &[&str] = &["Paris", "Lyon", "Berlin", "Madrid", "London", "Milan", "Lisbon", "Brussels", "Amsterdam"];

/// The workload: `contacts` creations of 8-field contacts, each followed on average by
/// `updates_per_contact` updates of 1 to 3 fields, interleaved as a CRM would see them.
fn workload(seed: u64, contacts: usize, updates_per_contact: usize) -> Vec<NewEvent> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut created = 0usize;
    let total = contacts * (1 + updates_per_contact);
    while out.len() < total {
        let create = created < contacts && (created == 0 || rng.below(1 + updates_per_contact as u64) == 0);
        let actor = format!("agent_{}", rng.below(12));
        if create {
            let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
            let data = json!({
                "name": format!("{first} {last}"),
                "email": format!("{}.{}{}@{}.com", first.to_lowercase(), last.to_lowercase(), rng.below(100), rng.pick(COMPANIES).to_lowercase().replace(' ', "")),
                "phone": format!("+33 6 {:02} {:02} {:02} {:02}", rng.below(100), rng.below(100), rng.below(100), rng.below(100)),
                "company": rng.pick(COMPANIES),
                "title": rng.pick(TITLES),
                "stage": "Lead",
                "owner": actor,
                "city": rng.pick(CITIES),
            });
            out.push(NewEvent::create("Contact", format!("contact_{created}"), data).actor(actor));
            created += 1;
            continue;
        }
        let id = format!("contact_{}", rng.below(created as u64));
        let mut patch = serde_json::Map::new();
        let fields = 1 + rng.below(3);
        let mut verb = None;
        for _ in 0..fields {
            match rng.below(6) {
                0 | 1 => {
                    let stage = rng.pick(STAGES);
                    if stage == "Qualified" || stage == "Won" {
                        verb = Some(stage);
                    }
                    patch.insert("stage".into(), Value::from(stage));
                }
                2 => {
                    patch.insert("owner".into(), Value::from(format!("agent_{}", rng.below(12))));
                }
                3 => {
                    patch.insert("title".into(), Value::from(rng.pick(TITLES)));
                }
                4 => {
                    patch.insert("score".into(), Value::from(rng.below(100)));
                }
                _ => {
                    patch.insert("city".into(), Value::from(rng.pick(CITIES)));
                }
            }
        }
        let mut ev = NewEvent::update(id, Value::Object(patch)).actor(actor);
        if let Some(v) = verb {
            ev = ev.verb(v);
        }
        out.push(ev);
    }
    out
}

/// Bytes of data in segments and dictionaries. While the store is open, its active segment
/// ends in reserved space (zeros for the next frames, not data): it is not counted.
fn bytes_on_disk(dir: &Path) -> u64 {
    let dictionaries: u64 = layout::dir_sizes(dir).iter().filter(|(n, _)| n.ends_with(".zdict")).map(|(_, s)| s).sum();
    let segments: u64 = layout::segments(dir)
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            match layout::trailer_index_offset(&bytes) {
                Some(_) => bytes.len(),
                None => layout::frames_in(&bytes).last().map_or(layout::SEGMENT_HEADER_BYTES, |f| f.offset + f.len),
            }
        })
        .map(|len| len as u64)
        .sum();
    dictionaries + segments
}

/// What one scenario measured.
#[derive(Debug)]
struct Figures {
    events: usize,
    bytes: u64,
    /// Bytes per event over the last `steady_events` events only (after any dictionary).
    steady_bytes_per_event: f64,
    frames: usize,
    frame_overhead_bytes: u64,
    raw_record_bytes: u64,
    dictionary_bytes: u64,
    /// The events' data as JSON text.
    data_json_bytes: u64,
    /// Each whole event as one JSON object (`Event::to_json`).
    event_json_bytes: u64,
}

/// Appends `events` in commits of `per_commit` and measures the files.
fn measure(events: Vec<NewEvent>, per_commit: usize, train_dictionary: bool) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    measure_in(dir.path(), events, per_commit, train_dictionary)
}

fn measure_in(dir: &Path, events: Vec<NewEvent>, per_commit: usize, train_dictionary: bool) -> Figures {
    let options = Options { durability: Durability::Never, train_dictionary, ..Options::default() };
    let store = Store::open(dir, options).unwrap();
    let count = events.len();
    let steady_from = count / 2;
    let (mut at_steady, mut steady_done) = (0, 0);
    let mut done = 0;
    let mut iter = events.into_iter().peekable();
    while iter.peek().is_some() {
        let commit: Vec<NewEvent> = iter.by_ref().take(per_commit).collect();
        done += commit.len();
        store.append_batch(commit).unwrap();
        if at_steady == 0 && done >= steady_from {
            store.sync().unwrap();
            at_steady = bytes_on_disk(dir);
            steady_done = done;
        }
    }
    let stored = store.events(&strata::EventQuery::new()).unwrap();
    let data_json_bytes = stored.iter().map(|e| e.data.to_string().len() as u64).sum();
    let event_json_bytes = stored.iter().map(|e| e.to_json().to_string().len() as u64).sum();
    drop(store);
    let bytes = bytes_on_disk(dir);
    let frames: Vec<layout::Frame> = layout::segments(dir).iter().flat_map(|s| layout::frames(s)).collect();
    let frame_overhead_bytes =
        frames.iter().map(|f| (layout::FRAME_HEADER_BYTES + layout::CHUNK_ENTRY_BYTES * f.codecs.len()) as u64).sum();
    let dictionary_bytes = layout::dir_sizes(dir).iter().filter(|(n, _)| n.ends_with(".zdict")).map(|(_, s)| s).sum();
    Figures {
        events: count,
        bytes,
        steady_bytes_per_event: (bytes - at_steady) as f64 / (count - steady_done) as f64,
        frames: frames.len(),
        frame_overhead_bytes,
        raw_record_bytes: frames.iter().map(|f| u64::from(f.raw_len)).sum(),
        dictionary_bytes,
        data_json_bytes,
        event_json_bytes,
    }
}

/// Commits the first 2,000 events one by one (which trains a dictionary), then the rest in
/// 1,000-event batches; the second-half figure is the batches' cost with a dictionary.
fn batches_after_training(events: Vec<NewEvent>) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Never, ..Options::default() };
    let mut events = events.into_iter();
    {
        let store = Store::open(dir.path(), options).unwrap();
        for ev in events.by_ref().take(2_000) {
            store.append(ev).unwrap();
        }
    }
    assert!(dir.path().join("dict-0000000001.zdict").exists());
    let rest: Vec<NewEvent> = events.collect();
    measure_in(dir.path(), rest, 1000, true)
}

fn report(name: &str, f: &Figures) {
    let per = |b: u64| b as f64 / f.events as f64;
    println!(
        "{name}: {} events in {} frames: {:.1} B/event on disk overall, {:.1} B/event in the second half; \
         raw records {:.1} B/event; frame headers + chunk tables {:.1} B/event; dictionary file {} B; \
         data as JSON {:.1} B/event, whole event as JSON {:.1} B/event",
        f.events,
        f.frames,
        per(f.bytes),
        f.steady_bytes_per_event,
        per(f.raw_record_bytes),
        per(f.frame_overhead_bytes),
        f.dictionary_bytes,
        per(f.data_json_bytes),
        per(f.event_json_bytes),
    );
}

#[test]
#[ignore = "measurement: run with --release -- --ignored --nocapture"]
fn bytes_per_event_for_crm_events() {
    let seed = 0x5EED_C0DE;
    println!("seed {seed:#x}");
    let events = workload(seed, 10_000, 4);
    let a = measure(events.clone(), 1, false);
    report("(a) one event per commit, no dictionary", &a);
    let b = measure(events.clone(), 1, true);
    report("(b) one event per commit, trained dictionary", &b);
    let dir = tempfile::tempdir().unwrap();
    measure_in(dir.path(), events.clone(), 1, true);
    zstd_frame_savings(dir.path());
    let c = measure(events.clone(), 1000, true);
    report("(c) 1,000-event batches", &c);
    report("(c, dictionary trained first) 1,000-event batches", &batches_after_training(events));
    let creates = workload(seed, 20_000, 0);
    report("(a, creates only) one contact per commit, no dictionary", &measure(creates.clone(), 1, false));
    report("(b, creates only) one contact per commit, trained dictionary", &measure(creates.clone(), 1, true));
    report("(c, creates only) 1,000-contact batches", &measure(creates, 1000, true));
}

#[test]
fn batched_crm_events_stay_under_40_bytes_each() {
    // 1,000-event batches of the CRM workload (the issue's target is 30 B/event; this guard
    // leaves room for small changes and catches a regression such as losing compression).
    let events = workload(7, 1_000, 4);
    let f = measure(events, 1000, true);
    let per_event = f.bytes as f64 / f.events as f64;
    assert!(per_event < 40.0, "{per_event:.1} bytes per event: {f:?}");
}

/// How many bytes the zstd frame format itself costs in single-event chunks: re-compresses
/// every dictionary-compressed chunk of a store without the fields strata already stores
/// elsewhere (content size: the chunk's raw_len; dictionary id: the frame's dict_id;
/// checksum: off already) and reports the difference. Raw chunks are tried too, to see how
/// many would then pay for compression.
fn zstd_frame_savings(dir: &Path) {
    use zstd::zstd_safe::CParameter;
    let dict = std::fs::read(dir.join("dict-0000000001.zdict")).unwrap()[24..].to_vec();
    let mut plain = zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap();
    let mut lean = zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap();
    lean.set_parameter(CParameter::ContentSizeFlag(false)).unwrap();
    lean.set_parameter(CParameter::DictIdFlag(false)).unwrap();
    lean.set_parameter(CParameter::ChecksumFlag(false)).unwrap();
    let mut decompressor = zstd::bulk::Decompressor::with_dictionary(&dict).unwrap();
    let (mut chunks, mut stored, mut again, mut leaner, mut raw_chunks, mut raw_would_pay, mut raw_saved) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for seg in layout::segments(dir) {
        let bytes = std::fs::read(&seg).unwrap();
        for f in layout::frames_in(&bytes) {
            if f.dict_id != 1 || f.codecs.len() != 1 {
                continue;
            }
            let entry = f.offset + layout::FRAME_HEADER_BYTES;
            let stored_len = u32::from_le_bytes(bytes[entry + 8..entry + 12].try_into().unwrap()) as usize;
            let payload = &bytes[entry + layout::CHUNK_ENTRY_BYTES..entry + layout::CHUNK_ENTRY_BYTES + stored_len];
            let raw = match f.codecs[0] {
                2 => decompressor.decompress(payload, f.raw_len as usize).unwrap(),
                0 => payload.to_vec(),
                _ => continue,
            };
            let lean_len = lean.compress(&raw).unwrap().len() as u64;
            if f.codecs[0] == 0 {
                raw_chunks += 1;
                if lean_len + 8 < raw.len() as u64 {
                    raw_would_pay += 1;
                }
                raw_saved += (raw.len() as u64).saturating_sub(lean_len.min(raw.len() as u64));
                continue;
            }
            chunks += 1;
            stored += stored_len as u64;
            again += plain.compress(&raw).unwrap().len() as u64;
            leaner += lean_len;
        }
    }
    println!(
        "zstd frame overhead in {chunks} single-event dictionary chunks: stored {:.1} B/chunk (re-compressed: {:.1}); \
         without content size and dictionary id {:.1} B/chunk (-{:.1}); dropping the 4-byte magic too would give {:.1}. \
         {raw_chunks} raw single-event chunks: {raw_would_pay} would pay with the lean frame, saving {:.1} B/chunk on average",
        stored as f64 / chunks as f64,
        again as f64 / chunks as f64,
        leaner as f64 / chunks as f64,
        (stored - leaner) as f64 / chunks as f64,
        leaner as f64 / chunks as f64 - 4.0,
        raw_saved as f64 / raw_chunks.max(1) as f64,
    );
}
