//! The store test suite, run against SQLite and the real Postgres.

mod common;

use serde_json::json;
use tandem::store::{AppendBatch, ChannelRecord, DynStore, NewSnapshot, SnapshotKind, UserRecord};

fn batch(doc: &str, updates: &[&[u8]]) -> AppendBatch {
    AppendBatch {
        doc_id: doc.into(),
        authors: updates.iter().map(|_| Some("alice".to_string())).collect(),
        updates: updates.iter().map(|u| u.to_vec()).collect(),
    }
}

fn snapshot(seq: i64, state: &[u8], kind: SnapshotKind) -> NewSnapshot {
    NewSnapshot { seq, state: state.to_vec(), state_vector: vec![0], kind, label: None }
}

async fn users(store: DynStore) {
    assert_eq!(store.user("alice").await.unwrap(), None);
    let alice = UserRecord { id: "alice".into(), name: "Alice".into(), role: "user".into(), last_active_at: 0 };
    store.upsert_user(&alice).await.unwrap();
    assert_eq!(store.user("alice").await.unwrap(), Some(alice.clone()));
    store.touch_user("alice", 1234).await.unwrap();
    let renamed = UserRecord { name: "Alice B".into(), role: "admin".into(), ..alice };
    store.upsert_user(&renamed).await.unwrap();
    let got = store.user("alice").await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.role.as_str(), got.last_active_at), ("Alice B", "admin", 1234));
}

async fn channels(store: DynStore) {
    let channel = ChannelRecord { id: "c1".into(), name: "general".into(), owner_id: "alice".into(), created_at: 1 };
    store.create_channel(&channel, &["alice".into(), "bob".into()]).await.unwrap();
    assert_eq!(store.channel("c1").await.unwrap(), Some(channel));
    assert_eq!(store.channel_ids_for_user("bob").await.unwrap(), vec!["c1".to_string()]);
    assert!(store.channel_ids_for_user("carol").await.unwrap().is_empty());
    assert!(store.is_channel_member("c1", "alice").await.unwrap());
    assert!(!store.is_channel_member("c1", "carol").await.unwrap());
    store.add_channel_member("c1", "carol").await.unwrap();
    store.add_channel_member("c1", "carol").await.unwrap();
    assert_eq!(store.channel_member_ids("c1").await.unwrap(), vec!["alice", "bob", "carol"]);
    assert!(store.mark_channel_read("c1", "bob", 99).await.unwrap());
    assert!(!store.mark_channel_read("c1", "zed", 99).await.unwrap());
}

async fn document_records(store: DynStore) {
    assert!(store.document("note:1").await.unwrap().is_none());
    let created = store.create_document("note:1", Some("alice")).await.unwrap();
    assert_eq!(created.owner_id.as_deref(), Some("alice"));
    assert_eq!(created.access_control, None);
    // A second create keeps the first owner.
    let again = store.create_document("note:1", Some("bob")).await.unwrap();
    assert_eq!(again.owner_id.as_deref(), Some("alice"));
    let rules = json!({"read": {"user_ids": ["bob"]}, "write": {"user_ids": []}});
    store.set_access_control("note:1", Some(&rules)).await.unwrap();
    store.save_content("note:1", &json!({"md": "# hi", "html": "<h1>hi</h1>", "json": null})).await.unwrap();
    let doc = store.document("note:1").await.unwrap().unwrap();
    assert_eq!(doc.access_control, Some(rules));
    assert_eq!(doc.content.unwrap()["md"], "# hi");
    store.set_access_control("note:1", None).await.unwrap();
    assert_eq!(store.document("note:1").await.unwrap().unwrap().access_control, None);
    assert!(store.set_access_control("missing", None).await.is_err());
    assert!(store.save_content("missing", &json!({})).await.is_err());
}

async fn appends_are_ordered_and_grouped(store: DynStore) {
    let firsts = store
        .append_updates(&[batch("b", &[b"b1"]), batch("a", &[b"a1", b"a2"]), batch("b", &[b"b2", b"b3"])])
        .await
        .unwrap();
    // Documents are created on first append; seqs are per document and consecutive.
    assert_eq!(firsts, vec![1, 1, 2]);
    let b = store.load_document("b").await.unwrap();
    assert!(b.snapshot.is_none());
    let seqs: Vec<i64> = b.updates.iter().map(|u| u.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(b.updates[2].data, b"b3");
    assert_eq!(store.updates_after("b", 1).await.unwrap().len(), 2);
    assert_eq!(store.document("a").await.unwrap().unwrap().last_seq, 2);
    // Created by an append, a document has no owner: the first joiner does not take it over.
    assert_eq!(store.document("a").await.unwrap().unwrap().owner_id, None);
}

async fn concurrent_appends_never_collide(store: DynStore) {
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.append_updates(&[batch("race", &[&[i], &[i, i]])]).await }));
    }
    let mut firsts = Vec::new();
    for task in tasks {
        firsts.push(task.await.unwrap().expect("append")[0]);
    }
    firsts.sort();
    assert_eq!(firsts, (0..40).map(|i| 1 + 2 * i).collect::<Vec<i64>>());
    let loaded = store.load_document("race").await.unwrap();
    assert_eq!(loaded.updates.len(), 80);
    assert!(loaded.updates.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

async fn snapshots_bound_loading(store: DynStore) {
    store.append_updates(&[batch("d", &[b"1", b"2", b"3"])]).await.unwrap();
    let v1 = store.write_snapshot("d", &snapshot(2, b"state@2", SnapshotKind::Auto), None).await.unwrap();
    assert_eq!(v1, 1);
    let loaded = store.load_document("d").await.unwrap();
    assert_eq!(loaded.snapshot.as_ref().unwrap().state, b"state@2");
    assert_eq!(loaded.updates.iter().map(|u| u.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(store.pending_update_count("d").await.unwrap(), 1);

    // A manual version at the same seq is newer but loads the same tail.
    let v2 = store.write_snapshot("d", &snapshot(2, b"manual@2", SnapshotKind::Manual), None).await.unwrap();
    assert_eq!(v2, 2);
    store.append_updates(&[batch("d", &[b"4"])]).await.unwrap();
    let v3 = store.write_snapshot("d", &snapshot(4, b"state@4", SnapshotKind::Auto), None).await.unwrap();
    let loaded = store.load_document("d").await.unwrap();
    assert_eq!(loaded.snapshot.as_ref().unwrap().version, v3);
    assert!(loaded.updates.is_empty());

    let versions = store.versions("d").await.unwrap();
    assert_eq!(
        versions.iter().map(|v| (v.version, v.kind)).collect::<Vec<_>>(),
        vec![(1, SnapshotKind::Auto), (2, SnapshotKind::Manual), (3, SnapshotKind::Auto)]
    );
    assert_eq!(versions[0].bytes, 7);
    assert_eq!(store.snapshot("d", 2).await.unwrap().unwrap().state, b"manual@2");
    assert!(store.snapshot("d", 9).await.unwrap().is_none());
    assert!(store.write_snapshot("nope", &snapshot(1, b"x", SnapshotKind::Manual), None).await.is_err());
}

async fn pruning_keeps_what_loading_needs(store: DynStore) {
    store.append_updates(&[batch("p", &[b"1", b"2", b"3", b"4"])]).await.unwrap();
    for seq in 1..=3 {
        store
            .write_snapshot("p", &snapshot(seq, format!("s{seq}").as_bytes(), SnapshotKind::Auto), None)
            .await
            .unwrap();
    }
    store.write_snapshot("p", &snapshot(1, b"manual", SnapshotKind::Manual), None).await.unwrap();
    // Folding up to seq 10 is clamped to the newest snapshot (3): update 4 stays.
    let (updates, versions) = store.prune_history("p", 10, 1, &[SnapshotKind::Auto]).await.unwrap();
    assert_eq!((updates, versions), (3, 2));
    let left = store.versions("p").await.unwrap();
    assert_eq!(
        left.iter().map(|v| (v.version, v.kind)).collect::<Vec<_>>(),
        vec![(3, SnapshotKind::Auto), (4, SnapshotKind::Manual)]
    );
    let loaded = store.load_document("p").await.unwrap();
    assert_eq!(loaded.snapshot.unwrap().state, b"s3");
    assert_eq!(loaded.updates.len(), 1);
    // Writing a version can prune in the same transaction.
    store.append_updates(&[batch("p", &[b"5"])]).await.unwrap();
    let prune = tandem::store::Prune { keep_versions: 1, kinds: &[SnapshotKind::Auto] };
    let v = store.write_snapshot("p", &snapshot(5, b"s5", SnapshotKind::Auto), Some(prune)).await.unwrap();
    let loaded = store.load_document("p").await.unwrap();
    assert_eq!((loaded.snapshot.unwrap().version, loaded.updates.len()), (v, 0));
    let kinds: Vec<_> = store.versions("p").await.unwrap().into_iter().map(|v| v.kind).collect();
    assert_eq!(kinds, vec![SnapshotKind::Manual, SnapshotKind::Auto]);
    // Keeping zero versions still keeps the one loading starts from.
    store.prune_history("p", 3, 0, &[SnapshotKind::Auto, SnapshotKind::Manual]).await.unwrap();
    let left = store.versions("p").await.unwrap();
    assert_eq!(left.iter().map(|v| v.version).collect::<Vec<_>>(), vec![v]);
}

async fn document_listing(store: DynStore) {
    store.append_updates(&[batch("x", &[b"12345", b"678"])]).await.unwrap();
    store.create_document("y", Some("bob")).await.unwrap();
    let stats = store.list_documents().await.unwrap();
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[0].document_id.as_str(), stats[0].bytes, stats[0].updates), ("x", 8, 2));
    assert_eq!((stats[1].document_id.as_str(), stats[1].bytes, stats[1].updates), ("y", 0, 0));
    store.write_snapshot("x", &snapshot(2, b"abc", SnapshotKind::Compact), None).await.unwrap();
    store.prune_history("x", 2, 5, &[SnapshotKind::Compact]).await.unwrap();
    let stats = store.list_documents().await.unwrap();
    assert_eq!((stats[0].bytes, stats[0].updates), (3, 0));
}

async fn chat_messages(store: DynStore) {
    assert!(store.chat_message("c", "m").await.unwrap().is_none());
    // Concurrent appends to one message never lose each other's text.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let piece = format!("<{i}>");
            let edit = move |m: &mut tandem::store::ChatMessage| {
                m.content.push_str(&piece);
                true
            };
            store.edit_chat_message("c", "m", Some("alice"), &edit).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let message = store.chat_message("c", "m").await.unwrap().unwrap();
    for i in 0..20 {
        assert!(message.content.contains(&format!("<{i}>")), "{}", message.content);
    }
    let edit = |m: &mut tandem::store::ChatMessage| {
        m.status_history.push(json!({"description": "x"}));
        m.embeds = vec![json!("e")];
        true
    };
    let edited = store.edit_chat_message("c", "m", None, &edit).await.unwrap();
    assert_eq!(edited.status_history.len(), 1);
    let read = store.chat_message("c", "m").await.unwrap().unwrap();
    assert_eq!(read.embeds, vec![json!("e")]);
    assert_eq!(read.updated_at, edited.updated_at);
    // An edit that changes nothing writes nothing.
    let untouched = store.edit_chat_message("c", "m", None, &|_| false).await.unwrap();
    assert_eq!(untouched.updated_at, read.updated_at);
}

async fn channel_messages(store: DynStore) {
    let channel = ChannelRecord { id: "c1".into(), name: "general".into(), owner_id: "alice".into(), created_at: 1 };
    store.create_channel(&channel, &["alice".into()]).await.unwrap();
    for i in 0..5 {
        store
            .add_channel_message(&tandem::store::ChannelMessage {
                id: format!("m{i}"),
                channel_id: "c1".into(),
                user_id: "alice".into(),
                content: format!("hello {i}"),
                created_at: 100 + i,
            })
            .await
            .unwrap();
    }
    let last = store.channel_messages("c1", 3).await.unwrap();
    assert_eq!(last.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), vec!["hello 2", "hello 3", "hello 4"]);
    assert!(store.channel_messages("nope", 3).await.unwrap().is_empty());
}

async fn history_sizes(store: DynStore) {
    store.append_updates(&[batch("h", &[b"12345", b"67"])]).await.unwrap();
    let before = store.history_stats("h").await.unwrap();
    assert_eq!((before.update_rows, before.update_bytes, before.version_rows), (2, 7, 0));
    store.write_snapshot("h", &snapshot(2, b"abc", SnapshotKind::Compact), None).await.unwrap();
    let after = store.history_stats("h").await.unwrap();
    // State plus state vector.
    assert_eq!((after.version_rows, after.version_bytes), (1, 4));
    assert_eq!(after.rows(), 3);
}

backend_tests! {
    users_roundtrip => users;
    channels_and_membership => channels;
    document_records_keep_their_owner => document_records;
    appends_are_ordered_and_grouped => appends_are_ordered_and_grouped;
    concurrent_appends_never_collide => concurrent_appends_never_collide;
    snapshots_bound_loading => snapshots_bound_loading;
    pruning_keeps_what_loading_needs => pruning_keeps_what_loading_needs;
    document_listing => document_listing;
    chat_messages_are_edited_atomically => chat_messages;
    channel_messages_newest_last => channel_messages;
    history_sizes_are_reported => history_sizes;
}
