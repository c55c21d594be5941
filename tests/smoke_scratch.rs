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
        let e = store.get("c1").unwrap().unwrap();
        assert_eq!(e.version, 301);
        assert_eq!(e.state["n"], 299);
    }
    let store = Store::open(dir.path(), opts).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!(e.version, 301);
    assert_eq!(e.state["n"], 299);
    assert_eq!(store.history("c1").unwrap().len(), 301);
    assert_eq!(store.events(&EventQuery::new().event_type("Deal.*")).unwrap().len(), 100);
    println!("{:?}", std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>());
}
