//! Group commit: one task turns the appends of every live document into as few store
//! transactions as possible.
//!
//! Each document task has at most one append in flight. While a transaction runs, the appends
//! of other documents (and later appends of the same ones) queue up here and are committed
//! together in the next transaction, so the commit rate stays bounded by the database's fsync
//! rate while throughput grows with load. Transactions run one at a time: overlapping two was
//! measured on Postgres and lost, because more, smaller commits cost more CPU on a small machine
//! than the overlap saved (bench/README.md).

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::store::{AppendBatch, DynStore};

/// Appends waiting for the committer. Document tasks wait for their reply, so this only bounds
/// how many documents can be queued at once; senders beyond it wait.
const QUEUE: usize = 1024;
/// Most documents folded into one transaction.
const MAX_DOCS_PER_COMMIT: usize = 256;

pub(crate) type CommitResult = Result<i64, String>;

struct Request {
    batch: AppendBatch,
    reply: oneshot::Sender<CommitResult>,
}

/// The sending side, held by the engine.
#[derive(Clone)]
pub(crate) struct Committer {
    tx: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts the commit task; it ends when `stop` is cancelled, which the engine does only
    /// after every document task (the only senders) has finished.
    pub(crate) fn spawn(store: DynStore, stop: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(run(store, rx, stop));
        (Self { tx }, handle)
    }

    /// Appends a document's updates durably; returns the seq of the first one.
    pub(crate) async fn append(&self, batch: AppendBatch) -> CommitResult {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request { batch, reply }).await.map_err(|_| "the committer has stopped".to_string())?;
        answer.await.map_err(|_| "the committer has stopped".to_string())?
    }
}

async fn run(store: DynStore, mut rx: mpsc::Receiver<Request>, stop: CancellationToken) {
    let mut requests = Vec::with_capacity(MAX_DOCS_PER_COMMIT);
    loop {
        let received = tokio::select! {
            biased;
            n = rx.recv_many(&mut requests, MAX_DOCS_PER_COMMIT) => n,
            _ = stop.cancelled() => 0,
        };
        if received == 0 {
            break;
        }
        commit(&store, std::mem::take(&mut requests)).await;
    }
}

/// One transaction for these requests; every sender hears the outcome.
async fn commit(store: &DynStore, requests: Vec<Request>) {
    let (batches, replies): (Vec<_>, Vec<_>) = requests.into_iter().map(|r| (r.batch, r.reply)).unzip();
    let started = std::time::Instant::now();
    let outcome = store.append_updates(&batches).await;
    tracing::trace!(
        documents = batches.len(),
        updates = batches.iter().map(|b| b.updates.len()).sum::<usize>(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "group commit"
    );
    match outcome {
        Ok(firsts) => {
            for (reply, first) in replies.into_iter().zip(firsts) {
                let _ = reply.send(Ok(first));
            }
        }
        Err(error) => {
            tracing::error!(%error, documents = batches.len(), "group commit failed");
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}
