//! The `tandem` command line: `serve` and the operator subcommands. Arguments are parsed once
//! here and turned into validated settings before anything runs.

mod channel;
mod docs;
mod history;
mod remote;
mod token;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::{
    config::{Config, DataArgs, ServeArgs},
    server::{self, ServerOptions},
};

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "A collaborative-editing server: Yjs documents over Open WebUI's Socket.IO protocol, durable in SQLite or Postgres",
    long_about = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub data: DataArgs,

    #[command(subcommand)]
    pub command: Command,
}

// `serve` has many flags; the enum is built once per process, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (Socket.IO at /ws/socket.io, HTTP API at /api/v1).
    Serve(ServeArgs),
    /// Create or update a user in the standalone directory and print a signed token.
    Token(token::TokenArgs),
    /// List documents, or set a document's access rules.
    Docs(docs::DocsArgs),
    /// Manage standalone channels.
    Channel(channel::ChannelArgs),
    /// Show a document's versions and pending updates.
    History(history::HistoryArgs),
    /// Store a document's current state as a new (manual) version.
    Snapshot(history::SnapshotArgs),
    /// Fold update logs into versions and drop history older than what is kept.
    Compact(history::CompactArgs),
    /// Make a document's content equal to one of its versions, as a new forward change.
    Restore(history::RestoreArgs),
    /// Write a document (or a version) as a Yjs update, JSON, text or HTML.
    Export(history::ExportArgs),
    /// Read a document from a Yjs update, JSON, text or HTML.
    Import(history::ImportArgs),
}

/// Runs a parsed command line; the process exit code follows the result.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(&args, &cli.data).await,
        Command::Token(args) => token::run(&args, &cli.data).await,
        Command::Docs(args) => docs::run(&args, &cli.data).await,
        Command::Channel(args) => channel::run(&args, &cli.data).await,
        Command::History(args) => history::history(&args, &cli.data).await,
        Command::Snapshot(args) => history::snapshot(&args, &cli.data).await,
        Command::Compact(args) => history::compact(&args, &cli.data).await,
        Command::Restore(args) => history::restore(&args, &cli.data).await,
        Command::Export(args) => history::export(&args, &cli.data).await,
        Command::Import(args) => history::import(&args, &cli.data).await,
    }
}

async fn serve(args: &ServeArgs, data: &DataArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args, data)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.addr))?;
    server::run(ServerOptions::new(config), listener, shutdown_signal()).await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// A token lifetime; `None` mints a token without `exp`.
#[derive(Debug, Clone, Copy)]
pub struct Ttl(pub Option<Duration>);

/// `4w`, `12h`, `30m`...; `never` or `-1` for no expiry (Open WebUI's `JWT_EXPIRES_IN=-1`).
pub fn parse_ttl(value: &str) -> Result<Ttl, String> {
    match value.trim() {
        "never" | "-1" => Ok(Ttl(None)),
        other => humantime::parse_duration(other)
            .map(|d| Ttl(Some(d)))
            .map_err(|e| format!("{other:?}: {e} (e.g. 4w, 12h, never)")),
    }
}
