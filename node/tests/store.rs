//! The content-addressed store on a real directory: budget, LRU eviction, verification.

#![allow(clippy::unwrap_used)]

use kith_node::store::{Store, StoreError};
use kith_protocol::FunctionId;

fn blob(tag: u8, len: usize) -> Vec<u8> {
    let mut v = vec![tag; len];
    v[0] = tag.wrapping_add(1);
    v
}

#[test]
fn stores_by_hash_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    let bytes = blob(1, 1000);
    let (id, created) = store.put(&bytes).unwrap();
    assert!(created);
    assert_eq!(id, FunctionId::of(&bytes));
    assert!(!store.put(&bytes).unwrap().1, "second put is a no-op");
    drop(store);
    let store = Store::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(store.get(&id).unwrap(), bytes);
    assert_eq!(store.stats().functions, 1);
    assert_eq!(store.stats().bytes, 1000);
}

#[test]
fn evicts_least_recently_used_to_stay_in_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 3000).unwrap();
    let (a, _) = store.put(&blob(1, 1000)).unwrap();
    let (b, _) = store.put(&blob(2, 1000)).unwrap();
    let (c, _) = store.put(&blob(3, 1000)).unwrap();
    store.get(&a).unwrap(); // a is now more recent than b
    let (d, _) = store.put(&blob(4, 1000)).unwrap();
    assert!(store.contains(&a) && store.contains(&c) && store.contains(&d));
    assert!(!store.contains(&b), "b was least recently used");
    assert!(matches!(store.get(&b), Err(StoreError::NotFound(_))));
    assert_eq!(store.stats().evicted, 1);
    assert!(store.stats().bytes <= 3000);
    let on_disk = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(on_disk, 3);
}

#[test]
fn a_blob_bigger_than_the_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 500).unwrap();
    let err = store.put(&blob(1, 1000)).unwrap_err();
    assert!(
        err.to_string().contains("store budget of 500 bytes"),
        "{err}"
    );
    assert_eq!(store.stats().functions, 0);
}

#[test]
fn artifacts_count_against_the_budget_and_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 10_000).unwrap();
    let (a, _) = store.put(&blob(1, 1000)).unwrap();
    store.put_artifact(&a, "tag", &[7u8; 2000]).unwrap();
    assert_eq!(store.stats().bytes, 1000 + 2000 + 40);
    assert_eq!(store.get_artifact(&a, "tag").unwrap(), vec![7u8; 2000]);
    assert!(store.get_artifact(&a, "other-engine").is_none());

    let path = dir.path().join(format!("artifacts/{a}.tag.bin"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(
        store.get_artifact(&a, "tag").is_none(),
        "a corrupt artifact is never returned"
    );
    assert!(!path.exists());
    assert_eq!(store.stats().bytes, 1000);
}

#[test]
fn a_corrupt_blob_is_deleted_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 10_000).unwrap();
    let (a, _) = store.put(&blob(1, 1000)).unwrap();
    std::fs::write(dir.path().join(format!("blobs/{a}")), blob(9, 1000)).unwrap();
    assert!(matches!(store.get(&a), Err(StoreError::Corrupt(id)) if id == a));
    assert!(!store.contains(&a));
    assert_eq!(store.stats().corrupt_dropped, 1);
}
