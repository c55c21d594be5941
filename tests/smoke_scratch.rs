use serde_json::json;
use strata::*;

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_size_bytes: 4096, ..Options::default() };
    {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})).actor("a1")).unwrap();
        for i in 0..300 {
            store.append(NewEvent::update("c1", json!({"n": i}))).unwrap();
        }
        store.append_batch((0..100).map(|i| NewEvent::create("Deal", format!("d{i}"), json!({"amount": i}))).collect()).unwrap();
        assert_eq!(store.checkpoint().unwrap(), Some(401));
        store.append(NewEvent::update("c1", json!({"n": 1000}))).unwrap();
        let e = store.get("c1").unwrap().unwrap();
        assert_eq!(e.version, 302);
    }
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!(e.version, 302);
    assert_eq!(e.state["n"], 1000);
    assert_eq!(store.get_version("c1", 150).unwrap().unwrap().state["n"], 148);
    assert_eq!(store.history("c1").unwrap().len(), 302);
    assert_eq!(store.events(&EventQuery::new().event_type("Deal.*")).unwrap().len(), 100);
    store.append(NewEvent::update("c1", json!({"n": 1001}))).unwrap();
    drop(store);
    // Corrupt the checkpoint: open must fall back.
    let ck =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "ckpt")).unwrap();
    let mut b = std::fs::read(&ck).unwrap();
    let n = b.len();
    b[n - 10] ^= 1;
    std::fs::write(&ck, b).unwrap();
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.get("c1").unwrap().unwrap().state["n"], 1001);
    println!("{:?}", std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>());
}
