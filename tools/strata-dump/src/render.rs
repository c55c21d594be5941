//! How each command's result is printed: a readable text form, and a documented, stable
//! JSON form (docs/strata-dump.md lists every field).

use std::io::{self, Write};

use serde_json::{Value, json};
use strata::inspect::{AsOf, FrameDump, Problem, RepairReport, SegmentSummary, Stats, VerifyReport};
use strata::{Entity, Event, Timestamp};

type Out<'a> = super::Out<'a>;

fn ts(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::from(t.to_rfc3339()))
}

fn ts_text(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

/// `1536` -> `1.5 KiB`.
fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn problem_json(p: &Problem) -> Value {
    json!({"file": p.file.display().to_string(), "offset": p.offset, "reason": p.reason, "torn_tail": p.torn_tail})
}

/// Prints rows as left-aligned columns separated by two spaces.
fn table(out: &mut Out<'_>, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..columns).map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

pub(crate) fn segments(out: &mut Out<'_>, segments: &[SegmentSummary], problems: &[Problem], json: bool) -> io::Result<()> {
    if json {
        for s in segments {
            let mine: Vec<Value> = problems.iter().filter(|p| p.file == s.path).map(problem_json).collect();
            let row = json!({
                "file": s.path.display().to_string(),
                "base_seq": s.base_seq,
                "last_seq": s.last_seq(),
                "frames": s.frames,
                "records": s.records,
                "file_bytes": s.file_bytes,
                "stored_bytes": s.stored_bytes,
                "raw_bytes": s.raw_bytes,
                "compression_ratio": s.compression_ratio(),
                "min_timestamp": ts(s.min_ts),
                "max_timestamp": ts(s.max_ts),
                "state": s.state.to_string(),
                "uncommitted_bytes": s.uncommitted_bytes,
                "reserved_bytes": s.reserved_bytes,
                "problems": mine,
            });
            writeln!(out, "{row}")?;
        }
        return Ok(());
    }
    let mut rows = vec![
        ["FILE", "BASE", "LAST", "FRAMES", "RECORDS", "STORED", "RAW", "RATIO", "MIN TIMESTAMP", "MAX TIMESTAMP", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for s in segments {
        let name = s.path.file_name().map_or_else(|| s.path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut state = s.state.to_string();
        if s.uncommitted_bytes > 0 {
            state.push_str(&format!(" (+{} uncommitted)", bytes_text(s.uncommitted_bytes)));
        }
        if s.reserved_bytes > 0 {
            state.push_str(&format!(" (+{} reserved)", bytes_text(s.reserved_bytes)));
        }
        rows.push(vec![
            name,
            s.base_seq.to_string(),
            s.last_seq().map_or_else(|| "-".into(), |l| l.to_string()),
            s.frames.to_string(),
            s.records.to_string(),
            bytes_text(s.stored_bytes),
            bytes_text(s.raw_bytes),
            format!("{:.2}", s.compression_ratio()),
            ts_text(s.min_ts),
            ts_text(s.max_ts),
            state,
        ]);
    }
    table(out, &rows)?;
    for p in problems {
        writeln!(out, "problem: {p}")?;
    }
    Ok(())
}

pub(crate) fn event(out: &mut Out<'_>, ev: &Event, json: bool) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", ev.to_json());
    }
    let actor = ev.actor.as_deref().map_or_else(String::new, |a| format!("  actor={a}"));
    let batch = if ev.batch != ev.seq { format!("  batch={}", ev.batch) } else { String::new() };
    let metadata = match ev.metadata.as_object() {
        Some(m) if m.is_empty() => String::new(),
        _ => format!("  metadata={}", ev.metadata),
    };
    writeln!(out, "{}  {}  {}  {}  v{}{actor}{batch}  {}{metadata}", ev.seq, ev.timestamp, ev.event_type, ev.entity, ev.version, ev.data)
}

pub(crate) fn entity(out: &mut Out<'_>, id: &str, at: AsOf, entity: Option<&Entity>, json: bool) -> io::Result<()> {
    if json {
        return writeln!(out, "{}", entity.map_or(Value::Null, Entity::to_json));
    }
    let Some(e) = entity else {
        let when = match at {
            AsOf::Latest => String::new(),
            AsOf::Version(v) => format!(" at version {v}"),
            AsOf::Time(t) => format!(" as of {t}"),
        };
        return writeln!(out, "entity {id} does not exist{when}");
    };
    let when = if let AsOf::Time(t) = at { format!(" as of {t}") } else { String::new() };
    writeln!(out, "entity {} ({}) version {}{}{when}", e.id, e.kind, e.version, if e.deleted { ", deleted" } else { "" })?;
    writeln!(out, "created {}, last changed {}", e.created_at, e.updated_at)?;
    let state = serde_json::to_string_pretty(&*e.state).map_err(io::Error::other)?;
    writeln!(out, "{state}")
}

pub(crate) fn verify(out: &mut Out<'_>, r: &VerifyReport, json: bool) -> io::Result<()> {
    if json {
        let report = json!({
            "clean": r.is_clean(),
            "segments": r.segments,
            "frames": r.frames,
            "events": r.events,
            "last_seq": r.last_seq,
            "entities": r.entities,
            "dictionaries": r.dictionaries,
            "checkpoints": r.checkpoints,
            "reserved_bytes": r.reserved_bytes,
            "problems": r.problems.iter().map(problem_json).collect::<Vec<_>>(),
            "notes": r.notes,
        });
        return writeln!(out, "{report}");
    }
    for p in &r.problems {
        writeln!(out, "{p}")?;
    }
    for n in &r.notes {
        writeln!(out, "note: {n}")?;
    }
    let mut counts = format!(
        "{} segments, {} frames, {} events (last seq {}), {} entities, {} dictionaries, {} checkpoints",
        r.segments, r.frames, r.events, r.last_seq, r.entities, r.dictionaries, r.checkpoints
    );
    if r.reserved_bytes > 0 {
        counts.push_str(&format!(", {} of reserved space after the last frame (not data)", bytes_text(r.reserved_bytes)));
    }
    match r.problems.len() {
        0 => writeln!(out, "ok: {counts}"),
        n => writeln!(out, "{n} problem{} found; checked {counts}", if n == 1 { "" } else { "s" }),
    }
}

pub(crate) fn stats(out: &mut Out<'_>, s: &Stats, json: bool) -> io::Result<()> {
    if json {
        let stats = json!({
            "segments": s.segments,
            "sealed_segments": s.sealed_segments,
            "events": s.events,
            "frames": s.frames,
            "last_seq": s.last_seq,
            "first_timestamp": ts(s.first_timestamp),
            "last_timestamp": ts(s.last_timestamp),
            "events_by_type": s.events_by_type,
            "events_by_kind": s.events_by_kind,
            "entities": s.entities,
            "deleted_entities": s.deleted_entities,
            "deepest": s.deepest.iter().map(|d| json!({"id": d.id, "kind": d.kind, "versions": d.versions, "deleted": d.deleted})).collect::<Vec<_>>(),
            "file_bytes": s.file_bytes,
            "stored_bytes": s.stored_bytes,
            "raw_bytes": s.raw_bytes,
            "compression_ratio": s.compression_ratio(),
            "uncommitted_bytes": s.uncommitted_bytes,
            "reserved_bytes": s.reserved_bytes,
            "dictionaries": s.dictionaries.iter().map(|(id, bytes)| json!({"id": id, "bytes": bytes})).collect::<Vec<_>>(),
            "checkpoints": s.checkpoints.iter().map(|c| json!({
                "file": c.path.display().to_string(),
                "covers_to_seq": c.covers_to_seq,
                "bytes": c.bytes,
                "entities": c.entities,
                "frames": c.frames,
                "problem": c.problem,
            })).collect::<Vec<_>>(),
            "index_memory_bytes": s.index_memory_bytes,
        });
        return writeln!(out, "{stats}");
    }
    writeln!(out, "events       {} in {} frames (last seq {})", s.events, s.frames, s.last_seq)?;
    writeln!(out, "time range   {} .. {}", ts_text(s.first_timestamp), ts_text(s.last_timestamp))?;
    writeln!(out, "entities     {} ({} deleted)", s.entities, s.deleted_entities)?;
    writeln!(out, "segments     {} ({} sealed), {} on disk", s.segments, s.sealed_segments, bytes_text(s.file_bytes))?;
    writeln!(
        out,
        "bytes        {} raw, {} stored, compression ratio {:.2}",
        bytes_text(s.raw_bytes),
        bytes_text(s.stored_bytes),
        s.compression_ratio()
    )?;
    if s.uncommitted_bytes > 0 {
        writeln!(out, "uncommitted  {} after the last committed frame", bytes_text(s.uncommitted_bytes))?;
    }
    if s.reserved_bytes > 0 {
        writeln!(out, "reserved     {} of zeros reserved for the next frames (not data)", bytes_text(s.reserved_bytes))?;
    }
    writeln!(out, "index memory about {} once open", bytes_text(s.index_memory_bytes))?;
    let dicts: Vec<String> = s.dictionaries.iter().map(|(id, b)| format!("#{id} ({})", bytes_text(*b))).collect();
    writeln!(out, "dictionaries {}", if dicts.is_empty() { "none".into() } else { dicts.join(", ") })?;
    if s.checkpoints.is_empty() {
        writeln!(out, "checkpoints  none")?;
    }
    for c in &s.checkpoints {
        let name = c.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let holds = match (&c.problem, c.entities, c.frames) {
            (Some(p), _, _) => format!("unreadable ({p})"),
            (None, Some(e), Some(f)) => format!("{e} entities, {f} frames"),
            _ => String::new(),
        };
        writeln!(out, "checkpoint   {name}: covers seqs 1..={}, {}, {holds}", c.covers_to_seq, bytes_text(c.bytes))?;
    }
    writeln!(out, "\nevents by kind")?;
    for (kind, n) in &s.events_by_kind {
        writeln!(out, "  {n:>10}  {kind}")?;
    }
    writeln!(out, "events by type")?;
    for (t, n) in &s.events_by_type {
        writeln!(out, "  {n:>10}  {t}")?;
    }
    writeln!(out, "deepest entities")?;
    for d in &s.deepest {
        writeln!(out, "  {:>10}  {} ({}){}", d.versions, d.id, d.kind, if d.deleted { ", deleted" } else { "" })?;
    }
    Ok(())
}

/// A damaged header can claim thousands of chunks: list this many.
const CHUNKS_LISTED: usize = 64;

/// Prints `bytes` (which start at file offset `at`) like `hexdump -C`.
fn hex_lines(out: &mut Out<'_>, at: u64, bytes: &[u8]) -> io::Result<()> {
    for (i, line) in bytes.chunks(16).enumerate() {
        let mut hex = String::new();
        for (j, b) in line.iter().enumerate() {
            hex.push_str(&format!("{b:02x} "));
            if j == 7 {
                hex.push(' ');
            }
        }
        let text: String = line.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(out, "  {:08x}  {hex:<49} |{text}|", at + 16 * i as u64)?;
    }
    Ok(())
}

pub(crate) fn frame(out: &mut Out<'_>, d: &FrameDump, max_bytes: usize) -> io::Result<()> {
    writeln!(out, "frame at {} offset {} ({} bytes from there to the end of the file)", d.file.display(), d.offset, d.available_bytes)?;
    let Some(f) = d.fields else {
        writeln!(out, "check: the file ends inside the frame header")?;
        return hex_lines(out, d.offset, &d.bytes);
    };
    let crc = match f.computed_crc {
        Some(c) if c == f.crc => format!("computed {c:#010x} (ok)"),
        Some(c) => format!("computed {c:#010x} (MISMATCH)"),
        None => "not computed: the file ends before the frame does".into(),
    };
    let seqs = if f.record_count > 0 {
        format!("seqs {}..={}", f.base_seq, f.base_seq.saturating_add(u64::from(f.record_count) - 1))
    } else {
        String::new()
    };
    let dict = if f.dict_id == 0 { "none".to_string() } else { format!("dict-{:010}.zdict", f.dict_id) };
    let rows = [
        ("+0", "len", "u32", f.len.to_string(), String::new()),
        ("+4", "crc", "u32", format!("{:#010x}", f.crc), crc),
        ("+8", "base_seq", "u64", f.base_seq.to_string(), String::new()),
        ("+16", "record_count", "u32", f.record_count.to_string(), seqs),
        ("+20", "chunk_count", "u16", f.chunk_count.to_string(), String::new()),
        ("+22", "flags", "u16", f.flags.to_string(), durable_mark(&f, &d.bytes)),
        ("+24", "min_ts", "i64", f.min_ts.to_string(), Timestamp::from_micros(f.min_ts).to_rfc3339()),
        ("+32", "max_ts", "i64", f.max_ts.to_string(), Timestamp::from_micros(f.max_ts).to_rfc3339()),
        ("+40", "dict_id", "u32", f.dict_id.to_string(), dict),
        ("+44", "raw_len", "u32", f.raw_len.to_string(), String::new()),
    ];
    for (at, name, ty, value, note) in rows {
        writeln!(out, "{}", format!("  {at:<5} {name:<13} {ty}  {value:<20} {note}").trim_end())?;
    }
    writeln!(out, "chunk table ({} of {} entries in the file):", d.chunks.len(), f.chunk_count)?;
    for (i, c) in d.chunks.iter().enumerate().take(CHUNKS_LISTED) {
        let computed = match c.computed_crc {
            Some(x) if x == c.crc => format!("computed {x:#010x} (ok)"),
            Some(x) => format!("computed {x:#010x} (MISMATCH)"),
            None => "not computed: the frame ends first".into(),
        };
        writeln!(
            out,
            "  +{:<4} chunk {i}: records {}, codec {} ({}), reserved {}, raw_len {}, stored_len {}, crc {:#010x} {computed}, payload at +{}",
            48 + 16 * i,
            c.records,
            c.codec,
            c.codec_name(),
            c.reserved,
            c.raw_len,
            c.stored_len,
            c.crc,
            c.payload_offset
        )?;
    }
    if d.chunks.len() > CHUNKS_LISTED {
        writeln!(out, "  ... {} more entries", d.chunks.len() - CHUNKS_LISTED)?;
    }
    match &d.problem {
        None => writeln!(out, "check: ok")?,
        Some(p) => writeln!(out, "check: FAILED: {p}")?,
    }
    let shown = if max_bytes == 0 { d.bytes.len() } else { d.bytes.len().min(max_bytes) };
    let table_end = (48 + 16 * d.chunks.len()).min(shown);
    writeln!(out, "header bytes:")?;
    hex_lines(out, d.offset, &d.bytes[..48.min(shown)])?;
    if table_end > 48 {
        writeln!(out, "chunk table bytes:")?;
        hex_lines(out, d.offset + 48, &d.bytes[48..table_end])?;
    }
    for (i, c) in d.chunks.iter().enumerate() {
        let start = usize::try_from(c.payload_offset).unwrap_or(usize::MAX).min(shown);
        let end = start.saturating_add(c.stored_len as usize).min(shown);
        if start >= end {
            break;
        }
        writeln!(out, "chunk {i} payload ({} stored bytes at +{}):", c.stored_len, c.payload_offset)?;
        hex_lines(out, d.offset + start as u64, &d.bytes[start..end])?;
    }
    if shown < d.bytes.len() {
        writeln!(out, "... {} more bytes (--max-bytes 0 shows all)", d.bytes.len() - shown)?;
    }
    Ok(())
}

pub(crate) fn repair(out: &mut Out<'_>, r: &RepairReport) -> io::Result<()> {
    let Some(damage) = &r.damage else {
        return writeln!(out, "nothing to repair: the log is intact (last seq {})", r.kept_to_seq);
    };
    writeln!(out, "damage: {damage}")?;
    match r.first_lost_seq {
        Some(first) => writeln!(out, "keeps seqs 1..={}; first seq lost: {first}", r.kept_to_seq)?,
        None => writeln!(out, "keeps seqs 1..={}", r.kept_to_seq)?,
    }
    for p in &r.cut {
        let what = if p.from_offset == 0 { "whole file".to_string() } else { format!("from offset {}", p.from_offset) };
        let seqs = p.readable_seqs.map_or_else(|| "no readable frames".into(), |(a, b)| format!("readable seqs {a}..={b}"));
        let verb = if r.dry_run { "would cut" } else { "cut" };
        writeln!(out, "{verb} {} {what}: {} bytes ({seqs}) -> {}", p.file.display(), p.bytes, p.moved_to.display())?;
    }
    writeln!(out, "total: {} bytes in {} piece{}", r.cut_bytes(), r.cut.len(), if r.cut.len() == 1 { "" } else { "s" })?;
    if r.dry_run { writeln!(out, "dry run: nothing was changed") } else { writeln!(out, "repaired: the store opens again") }
}

/// What the flags say: the durable mark at the end of the frame (format version 3), if any.
fn durable_mark(f: &strata::inspect::FrameFields, bytes: &[u8]) -> String {
    match (f.flags & 1 != 0, f.durable_mark(bytes)) {
        (_, Some(to)) => format!("durable mark: durable_to {to} (the frame's last 8 bytes)"),
        (true, None) => "durable mark (the file ends before it)".into(),
        (false, None) => String::new(),
    }
}
