//! tandem: a collaborative-editing server. Yjs documents (yrs) are kept durable in SQLite or
//! Postgres and shared over Open WebUI's Socket.IO protocol.
//!
//! # Layout
//! - [`cli`]: the `tandem` command line (`serve`, `token`, `docs`, ...).
//! - [`config`]: flags and environment turned into one validated [`config::Config`].
//! - [`server`]: wires everything and runs until shutdown.
//! - [`realtime`]: Socket.IO handlers, one file per concern.
//! - [`http`]: the REST API (health, documents, ...).
//! - [`docs`]: the document engine, one task per live document.
//! - [`store`]: the `Store` trait and its SQLite and Postgres implementations.
//! - [`bus`]: what instances share: local memory or Redis.
//! - [`auth`] and [`directory`]: identity, roles, channels and access rules.
//! - [`error`]: the errors shown to clients, mapped once per boundary.
//! - [`typing`]: the typing model the load generator and the benches share.
//!
//! `ARCHITECTURE.md` at the repository root has the bird's-eye view and the invariants.

pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod directory;
pub mod docs;
pub mod error;
pub mod http;
pub mod realtime;
pub mod server;
pub mod state;
pub mod store;
pub mod typing;
