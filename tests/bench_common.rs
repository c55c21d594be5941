//! Tests of the benchmarks' support code in `benches/common`: the workload generator and
//! its reference fold, the SQLite baseline, and the strata fixture, which the comparison
//! trusts to be correct. (Bench targets build without a test harness, so these live here.)

#[path = "../benches/common/mod.rs"]
mod common;

mod workload {
    use super::common::workload::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A, plus the nested one of section 3.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (target, patch, expected) in cases {
            let mut doc = target.clone();
            merge_patch(&mut doc, &patch);
            assert_eq!(doc, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn generation_is_deterministic_and_valid() {
        let config = WorkloadConfig { total_events: 20_000, entities: 1_000, deep_depths: vec![100, 5_000], seed: 7 };
        let ops = generate(&config).expect("config is valid");
        assert_eq!(ops.len(), 20_000);
        assert_eq!(ops, generate(&config).expect("config is valid"));
        validate(&ops).expect("ops are valid in order");
        let states = fold_ops(&ops);
        assert_eq!(states.len(), 1_002);
        assert_eq!(states["deep_100"].version, 100);
        assert_eq!(states["deep_5000"].version, 5_000);
    }
}

mod sqlite {
    use std::fs;
    use std::path::PathBuf;

    use super::common::sqlite::*;
    use super::common::workload::Op;
    use serde_json::json;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-sqlite-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn appends_fold_and_reopen() {
        let dir = scratch_dir("fold");
        let mut store = SqliteStore::open(&dir).expect("open");
        let create =
            Op::Create { kind: "contact", id: "c".into(), data: json!({"name": "Ada", "address": {"city": "London", "country": "GB"}}) };
        let t1 = store.append_one(&create).expect("create");
        let update = Op::Update { id: "c".into(), patch: json!({"address": {"city": "Paris"}, "name": null}), verb: Some("Qualified") };
        let t2 = store.append_one(&update).expect("update");
        assert!(t2 > t1);
        assert!(store.append_one(&create).is_err(), "double create");
        let expected = json!({"address": {"city": "Paris", "country": "GB"}});
        assert_eq!(store.get("c").expect("get"), Some(expected.clone()));
        assert_eq!(store.get_as_of("c", t1).expect("as of"), Some(create.payload().cloned().expect("data")));
        assert_eq!(store.get_as_of("c", t1 - 1).expect("before"), None);

        let stamps = store.append_batch(&[Op::Delete { id: "c".into() }, Op::Restore { id: "c".into() }]).expect("batch");
        assert_eq!(store.get_as_of("c", stamps[0]).expect("deleted"), None);
        drop(store);

        let mut store = SqliteStore::open(&dir).expect("reopen");
        assert_eq!(store.get("c").expect("get"), Some(expected));
        assert_eq!(store.timestamps("c").expect("stamps").len(), 4);
        assert!(store.append_one(&Op::Restore { id: "c".into() }).is_err());
        store.append_one(&Op::Delete { id: "c".into() }).expect("delete after reopen");
        assert_eq!(store.replay_all().expect("replay"), 5);
        assert!(store.bytes_on_disk().expect("size") > 0);
        let _ = fs::remove_dir_all(&dir);
    }
}

mod fixture {
    use super::common::fixture;
    use super::common::workload::{self, WorkloadConfig};

    #[test]
    fn a_loaded_strata_store_agrees_with_the_reference_fold() {
        let config = WorkloadConfig { total_events: 6_000, entities: 300, deep_depths: vec![50, 1_000], seed: 11 };
        let dir = tempfile::tempdir().unwrap();
        let (store, ops) = fixture::loaded_store(dir.path(), &config, 250);
        let reference = workload::fold_ops(&ops);
        assert_eq!(store.last_seq(), 6_000);
        for (id, state) in &reference {
            let entity = store.get(id).unwrap().unwrap_or_else(|| panic!("{id} exists"));
            assert_eq!(entity.version, state.version, "{id} version");
            assert_eq!(fixture::visible(Some(entity)).as_ref(), state.current(), "{id} state");
        }
        let qualified = store.events(&strata::EventQuery::new().event_type("*.Qualified")).unwrap();
        let expected = ops.iter().filter(|op| op.event_type() == "Qualified").count();
        assert_eq!(qualified.len(), expected);
    }
}
