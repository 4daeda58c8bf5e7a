//! The shared application state: one cheap-to-clone handle passed to every Socket.IO handler
//! and HTTP route.

use std::{ops::Deref, sync::Arc};

use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{auth::TokenKeys, bus::DynBus, config::Config, directory::DynDirectory, docs::Docs, store::DynStore};

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub store: DynStore,
    pub directory: DynDirectory,
    pub bus: DynBus,
    pub keys: TokenKeys,
    pub docs: Docs,
    /// Cancelled when the server starts shutting down; long-lived loops select on it.
    pub shutdown: CancellationToken,
    /// Background work (debounced saves, sweeps) that shutdown waits for.
    pub tasks: TaskTracker,
    pub content_saver: crate::realtime::docs::ContentSaver,
    /// The Socket.IO rooms, set once the Socket.IO layer is built (before serving).
    pub rooms: std::sync::OnceLock<crate::realtime::rooms::DynRooms>,
    /// Where `POST /api/v1/chat/completions` streams from; `None` runs the built-in demo model.
    pub upstream: Option<crate::config::Upstream>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self { inner: Arc::new(inner) }
    }

    /// The Socket.IO rooms; `None` only before the server finished starting.
    pub fn rooms(&self) -> Option<crate::realtime::rooms::DynRooms> {
        self.inner.rooms.get().cloned()
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}
