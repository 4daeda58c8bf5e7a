//! The bus test suite, run against the in-process bus and the real Redis.

use std::{sync::Arc, time::Duration};

use tandem::bus::{Bus, DocUpdateMessage, DynBus, LocalBus, RedisBus, SessionEntry};

fn redis_url() -> String {
    std::env::var("TANDEM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A Redis bus under a prefix of its own, so tests never see each other's keys.
async fn redis_pair() -> (DynBus, DynBus) {
    let prefix = format!("tandem-bus-test-{}", uuid::Uuid::new_v4());
    let a = RedisBus::connect(&redis_url(), &prefix).await.expect("connect to the test Redis");
    let b = RedisBus::connect(&redis_url(), &prefix).await.expect("connect to the test Redis");
    (Arc::new(a), Arc::new(b))
}

fn entry(bus: &DynBus, user: &str) -> SessionEntry {
    SessionEntry {
        id: user.into(),
        name: user.into(),
        role: "user".into(),
        last_seen_at: 1,
        instance: bus.instance_id().into(),
    }
}

async fn sessions(bus: DynBus) {
    assert!(bus.session("s1").await.unwrap().is_none());
    bus.put_session("s1", &entry(&bus, "alice")).await.unwrap();
    bus.put_session("s2", &entry(&bus, "bob")).await.unwrap();
    assert_eq!(bus.session("s1").await.unwrap().unwrap().id, "alice");
    let mut all: Vec<String> = bus.sessions().await.unwrap().into_iter().map(|(sid, _)| sid).collect();
    all.sort();
    assert_eq!(all, vec!["s1", "s2"]);
    bus.remove_session("s1").await.unwrap();
    assert!(bus.session("s1").await.unwrap().is_none());
    assert_eq!(bus.sessions().await.unwrap().len(), 1);
}

async fn document_sessions(bus: DynBus) {
    bus.put_session("s1", &entry(&bus, "alice")).await.unwrap();
    bus.put_session("s2", &entry(&bus, "bob")).await.unwrap();
    bus.add_doc_session("note:1", "s2").await.unwrap();
    bus.add_doc_session("note:1", "s1").await.unwrap();
    bus.add_doc_session("note:2", "s1").await.unwrap();
    assert_eq!(bus.doc_sessions("note:1").await.unwrap(), vec!["s1", "s2"]);
    bus.remove_doc_session("note:1", "s2").await.unwrap();
    assert_eq!(bus.doc_sessions("note:1").await.unwrap(), vec!["s1"]);
    assert!(bus.doc_sessions("note:3").await.unwrap().is_empty());
}

async fn usage(bus: DynBus) {
    bus.touch_usage("llama", "s1", 100).await.unwrap();
    bus.touch_usage("llama", "s2", 105).await.unwrap();
    bus.touch_usage("mistral", "s1", 90).await.unwrap();
    let pool = bus.usage().await.unwrap();
    assert_eq!(pool["llama"].len(), 2);
    assert_eq!(pool["mistral"]["s1"], 90);
    bus.sweep_usage(100).await.unwrap();
    let pool = bus.usage().await.unwrap();
    assert!(!pool.contains_key("mistral"), "expired models are dropped");
    assert_eq!(pool["llama"].len(), 2);
    bus.remove_usage("s1", &["llama".into(), "unknown".into()]).await.unwrap();
    let pool = bus.usage().await.unwrap();
    assert_eq!(pool["llama"].keys().collect::<Vec<_>>(), vec!["s2"]);
    bus.remove_usage("s2", &["llama".into()]).await.unwrap();
    assert!(bus.usage().await.unwrap().is_empty());
}

async fn locks(bus: DynBus) {
    assert!(bus.try_lock("lock", Duration::from_secs(5)).await.unwrap());
    // Held by us: taking it again renews it.
    assert!(bus.try_lock("lock", Duration::from_secs(5)).await.unwrap());
    bus.release_lock("lock").await.unwrap();
    assert!(bus.try_lock("lock", Duration::from_secs(5)).await.unwrap());
}

macro_rules! bus_tests {
    ($($name:ident => $body:ident;)*) => {
        mod local {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$body(Arc::new(LocalBus::new())).await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (bus, other) = redis_pair().await;
                    super::$body(bus.clone()).await;
                    bus.shutdown().await;
                    other.shutdown().await;
                }
            )*
        }
    };
}

bus_tests! {
    session_pool => sessions;
    document_session_sets => document_sessions;
    model_usage => usage;
    leader_locks => locks;
}

#[tokio::test]
async fn redis_locks_are_owner_checked() {
    let (a, b) = redis_pair().await;
    assert!(a.try_lock("lock", Duration::from_secs(5)).await.unwrap());
    assert!(!b.try_lock("lock", Duration::from_secs(5)).await.unwrap(), "another instance cannot take or renew it");
    b.release_lock("lock").await.unwrap();
    assert!(!b.try_lock("lock", Duration::from_secs(5)).await.unwrap(), "nor release it");
    a.release_lock("lock").await.unwrap();
    assert!(b.try_lock("lock", Duration::from_secs(5)).await.unwrap());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn redis_sessions_of_a_stopped_instance_disappear() {
    let (a, b) = redis_pair().await;
    b.put_session("sb", &entry(&b, "bob")).await.unwrap();
    b.add_doc_session("note:1", "sb").await.unwrap();
    a.put_session("sa", &entry(&a, "alice")).await.unwrap();
    a.add_doc_session("note:1", "sa").await.unwrap();
    assert_eq!(a.doc_sessions("note:1").await.unwrap(), vec!["sa", "sb"]);
    b.shutdown().await;
    assert_eq!(a.doc_sessions("note:1").await.unwrap(), vec!["sa"]);
    assert_eq!(a.sessions().await.unwrap().len(), 1);
    a.shutdown().await;
}

#[tokio::test]
async fn redis_carries_document_updates_to_other_instances_only() {
    let (a, b) = redis_pair().await;
    let mut at_a = a.take_doc_updates().expect("a's inbox");
    let mut at_b = b.take_doc_updates().expect("b's inbox");
    let message = DocUpdateMessage {
        instance: a.instance_id().into(),
        doc_id: "note:1".into(),
        seq: 3,
        user_id: "alice".into(),
        socket_id: "s".into(),
        binary: false,
        update: vec![1, 2, 3],
    };
    a.publish_doc_update(&message).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(5), at_b.recv()).await.expect("b receives it").unwrap();
    assert_eq!(received, message);
    assert!(tokio::time::timeout(Duration::from_millis(300), at_a.recv()).await.is_err(), "a ignores its own message");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_local_bus_has_no_inbox() {
    assert!(LocalBus::new().take_doc_updates().is_none());
}
