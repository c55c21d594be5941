//! API operation sequences checked against the reference model of `tests/model.rs`: the
//! input bytes become a sequence of appends, batches, reads, listings, undo, batch undo,
//! rollback, checkpoints, reopens and power cuts (on simulated storage), run against a real
//! store and the naive model and compared step by step.
#![no_main]

#[path = "../../tests/support/reference.rs"]
mod reference;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use reference::{Action, ExpectPick, Harness, IdPick, Op, QuerySpec, TimePick, TsPick, Write};
use serde_json::{Map, Value};
use strata::{Durability, Options};

fn scalar(u: &mut Unstructured<'_>) -> Result<Value> {
    Ok(match u.int_in_range(0..=4u8)? {
        0 => Value::Null,
        1 => Value::from(u.arbitrary::<i16>()?),
        2 => Value::from(["", "a", "lead", "won"][usize::from(u.int_in_range(0..=3u8)?)]),
        3 => Value::from(u.arbitrary::<bool>()?),
        _ => Value::Array(vec![Value::from(1), Value::Null]),
    })
}

fn object(u: &mut Unstructured<'_>, depth: u8) -> Result<Value> {
    let mut map = Map::new();
    for _ in 0..u.int_in_range(0..=3u8)? {
        let key = ["a", "b", "c", "n"][usize::from(u.int_in_range(0..=3u8)?)];
        let value = if depth > 0 && u.ratio(1, 5)? { object(u, depth - 1)? } else { scalar(u)? };
        map.insert(key.to_string(), value);
    }
    Ok(Value::Object(map))
}

fn time_pick(u: &mut Unstructured<'_>) -> Result<TimePick> {
    Ok(match u.int_in_range(0..=7u8)? {
        0 => TimePick::Min,
        1 => TimePick::Max,
        _ => TimePick::AtEvent(u.arbitrary()?, u.int_in_range(-1..=1)?),
    })
}

fn write(u: &mut Unstructured<'_>) -> Result<Write> {
    let action = match u.int_in_range(0..=9u8)? {
        0..=2 => Action::Create { kind: u.int_in_range(0..=1)?, data: object(u, 1)? },
        3..=7 => Action::Update { patch: object(u, 1)?, verb: if u.ratio(2, 5)? { Some(u.int_in_range(0..=3)?) } else { None } },
        8 => Action::Delete,
        _ => Action::Restore,
    };
    let id = match u.int_in_range(0..=12u8)? {
        0 => Some(IdPick::Caller(u.int_in_range(0..=3)?)),
        1 => Some(IdPick::Generated(u.int_in_range(0..=7)?)),
        _ => None,
    };
    let ts = match u.int_in_range(0..=14u8)? {
        0 => TsPick::Stale(u.int_in_range(0..=2)?),
        1 | 2 => TsPick::Future(u.int_in_range(0..=3)?),
        _ => TsPick::Auto,
    };
    let expect = match u.int_in_range(0..=9u8)? {
        0 => ExpectPick::Off(u.int_in_range(1..=2)?),
        1..=3 => ExpectPick::Current,
        _ => ExpectPick::No,
    };
    let metadata = match u.int_in_range(0..=10u8)? {
        0 => Some(false),
        1 | 2 => Some(true),
        _ => None,
    };
    let actor = if u.ratio(2, 5)? { Some(u.int_in_range(0..=2)?) } else { None };
    Ok(Write { entity: u.int_in_range(0..=6)?, action, actor, id, ts, expect, metadata })
}

fn op(u: &mut Unstructured<'_>) -> Result<Op> {
    let entity = |u: &mut Unstructured<'_>| u.int_in_range(0..=6u8);
    let undo_target = |u: &mut Unstructured<'_>| -> Result<u16> { if u.ratio(1, 16)? { Ok(u16::MAX) } else { u.arbitrary() } };
    let actor =
        |u: &mut Unstructured<'_>| -> Result<Option<u8>> { if u.ratio(3, 10)? { Ok(Some(u.int_in_range(0..=2)?)) } else { Ok(None) } };
    Ok(match u.int_in_range(0..=40u8)? {
        33..=35 => Op::Undo(undo_target(u)?, actor(u)?),
        36 => Op::CanUndo(undo_target(u)?),
        37..=38 => Op::UndoBatch(u.arbitrary()?, actor(u)?),
        39..=40 => Op::Rollback(entity(u)?, time_pick(u)?, actor(u)?),
        0..=11 => Op::Append(write(u)?),
        12..=15 => Op::Batch((0..u.int_in_range(1..=4u8)?).map(|_| write(u)).collect::<Result<_>>()?),
        16..=18 => Op::Get(entity(u)?),
        19..=21 => Op::GetAsOf(entity(u)?, time_pick(u)?),
        22..=23 => Op::GetVersion(entity(u)?, u.arbitrary()?),
        24..=25 => Op::History(entity(u)?),
        26 => Op::EventById(if u.arbitrary()? { IdPick::Caller(u.int_in_range(0..=3)?) } else { IdPick::Generated(u.arbitrary()?) }),
        27..=30 => Op::Events(QuerySpec {
            entity: if u.ratio(3, 10)? { Some(entity(u)?) } else { None },
            pattern: if u.arbitrary()? { Some(u.int_in_range(0..=8)?) } else { None },
            actor: if u.ratio(1, 5)? { Some(u.int_in_range(0..=2)?) } else { None },
            after: if u.ratio(3, 10)? { Some(time_pick(u)?) } else { None },
            before: if u.ratio(3, 10)? { Some(time_pick(u)?) } else { None },
            after_seq: if u.ratio(1, 4)? { u.arbitrary()? } else { 0 },
            limit: if u.ratio(2, 5)? { Some(u.int_in_range(0..=4)?) } else { None },
        }),
        31 => Op::Checkpoint,
        _ => {
            if u.arbitrary()? {
                Op::Reopen
            } else {
                Op::Crash
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(segment_size_bytes) = u.choose(&[300u64, 1 << 10, 64 << 20]).copied() else { return };
    let Ok(snapshot_every_versions) = u.choose(&[1u64, 2, 16]).copied() else { return };
    let mut ops = Vec::new();
    while ops.len() < 64 {
        match op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    let Ok(crash_seed) = u.arbitrary::<u64>() else { return };
    // On simulated storage: in memory (fsyncs cost nothing), and a crash can be simulated.
    let options = Options {
        durability: Durability::Always,
        segment_size_bytes,
        snapshot_every_versions,
        train_dictionary: false,
        ..Options::default()
    };
    let mut harness = Harness::new_simulated(options, crash_seed);
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = harness.run(op) {
            panic!("step {i} ({op:?}) of {ops:#?}:\n{e}");
        }
    }
    if let Err(e) = harness.check_all() {
        panic!("after the last step of {ops:#?}:\n{e}");
    }
});
