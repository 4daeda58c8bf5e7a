//! Store append throughput: one `append_updates` transaction (what the engine's group committer
//! issues) with 1..256 keystroke updates, on SQLite (WAL, synchronous=FULL) and Postgres (the
//! server's defaults: fsync on, synchronous_commit on).
//!
//! - `store_append/<backend>/one_doc/<b>`: b updates of one document per transaction;
//! - `store_append/<backend>/many_docs/<b>`: b documents with one update each per transaction
//!   (a group commit across documents, the shape a busy server produces).
//!
//! Throughput is in updates per second. A fresh database per backend (Postgres: created on
//! TANDEM_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test, dropped afterwards).
//!
//! `cargo bench --bench store`.

mod common;

use std::time::{Duration, Instant};

use common::{BenchDb, keystrokes, runtime};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tandem::store::AppendBatch;

const BATCHES: [usize; 5] = [1, 4, 16, 64, 256];

fn store_append(c: &mut Criterion) {
    let rt = runtime();
    let mut dbs = vec![BenchDb::sqlite()];
    if let Some(pg) = rt.block_on(BenchDb::postgres()) {
        dbs.push(pg);
    }
    // A pool of realistic updates, reused: the store does not look inside them.
    let updates = keystrokes(4096);
    let mut group = c.benchmark_group("store_append");
    for db in &dbs {
        let store = rt.block_on(db.open());
        for shape in ["one_doc", "many_docs"] {
            for b in BATCHES {
                group.throughput(Throughput::Elements(b as u64));
                group.bench_function(BenchmarkId::new(format!("{}/{shape}", db.backend), b), |bench| {
                    bench.iter_custom(|iters| {
                        rt.block_on(async {
                            let mut total = Duration::ZERO;
                            for i in 0..iters as usize {
                                let batches: Vec<AppendBatch> = if shape == "one_doc" {
                                    vec![AppendBatch {
                                        doc_id: "doc-0".into(),
                                        authors: vec![Some("bench".into()); b],
                                        updates: (0..b).map(|k| updates[(i * b + k) % updates.len()].clone()).collect(),
                                    }]
                                } else {
                                    (0..b)
                                        .map(|d| AppendBatch {
                                            doc_id: format!("doc-{d}"),
                                            authors: vec![Some("bench".into())],
                                            updates: vec![updates[(i + d) % updates.len()].clone()],
                                        })
                                        .collect()
                                };
                                let started = Instant::now();
                                store.append_updates(&batches).await.expect("append");
                                total += started.elapsed();
                            }
                            total
                        })
                    })
                });
            }
        }
    }
    group.finish();
    for db in dbs {
        rt.block_on(db.cleanup());
    }
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = store_append
}
criterion_main!(benches);
