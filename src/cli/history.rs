//! `tandem history | snapshot | compact | restore | export | import`: a document's history from
//! the command line. Reading, snapshots, compaction and export work on the database directly
//! and are safe while a server runs; restore and import go through a running server with
//! `--server` so connected editors see them at once, or work on the database of a stopped one.

use std::{io::IsTerminal, path::PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use super::remote::{Remote, RemoteArgs};
use crate::{
    config::DataArgs,
    docs::{
        DocError,
        content::{self, Format, Schema},
        history::{self, ImportMode, Run},
    },
    store::{self, DynStore, SnapshotKind},
};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    document_id: String,
    /// Print JSON: {"document_id", "versions": [...], "pending_updates"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    document_id: String,
    /// A label for the version.
    #[arg(long)]
    label: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The document to compact (or --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    document_id: Option<String>,
    /// Compact every document.
    #[arg(long)]
    all: bool,
    /// Versions to keep per document, the new one included.
    #[arg(long, default_value_t = 10)]
    keep_versions: u32,
    /// Report what would change without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON: {"documents", "bytes_before", "bytes_after", "rows_before", "rows_after"}.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    document_id: String,
    /// The version to restore.
    #[arg(long, required_unless_present = "at", conflicts_with = "at")]
    version: Option<i64>,
    /// Restore the newest version at or before this RFC 3339 time.
    #[arg(long)]
    at: Option<String>,
    /// Say which version would be restored without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON: {"document_id", "restored_version", "new_version"}.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    document_id: String,
    /// ybin (a Yjs update), json, text or html [default: from --output's extension, else json].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Export this version instead of the current content.
    #[arg(long)]
    version: Option<i64>,
    /// Write here instead of stdout.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    document_id: String,
    file: PathBuf,
    /// ybin, json, text or html [default: from the file's extension].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Replace the content of a non-empty document (as a restore). Without it, only an empty
    /// or new document is imported into.
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

async fn open(data: &DataArgs) -> anyhow::Result<DynStore> {
    Ok(store::open(&data.database_url()).await?)
}

/// Turns engine errors into the sentences an operator reads.
fn explain(e: DocError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn history(args: &HistoryArgs, data: &DataArgs) -> anyhow::Result<()> {
    let store = open(data).await?;
    let history = history::history(store.as_ref(), &args.document_id).await.map_err(explain)?;
    if args.json {
        println!("{}", serde_json::to_string(&history)?);
        return Ok(());
    }
    println!("{:>8} {:>8} {:<8} {:>10}  {:<24} LABEL", "VERSION", "SEQ", "KIND", "BYTES", "CREATED");
    for v in &history.versions {
        println!(
            "{:>8} {:>8} {:<8} {:>10}  {:<24} {}",
            v.version,
            v.seq,
            v.kind.as_str(),
            v.bytes,
            super::docs::format_ms(v.created_at),
            v.label.as_deref().unwrap_or("")
        );
    }
    println!("{} pending update(s) after the newest version", history.pending_updates);
    Ok(())
}

pub async fn snapshot(args: &SnapshotArgs, data: &DataArgs) -> anyhow::Result<()> {
    let store = open(data).await?;
    let version = history::snapshot(store.as_ref(), &args.document_id, SnapshotKind::Manual, args.label.clone())
        .await
        .map_err(explain)?;
    println!("{}", json!({ "document_id": args.document_id, "version": version }));
    Ok(())
}

pub async fn compact(args: &CompactArgs, data: &DataArgs) -> anyhow::Result<()> {
    let store = open(data).await?;
    let ids: Vec<String> = match &args.document_id {
        Some(id) => vec![id.clone()],
        None => store.list_documents().await?.into_iter().map(|d| d.document_id).collect(),
    };
    let run = if args.dry_run { Run::DryRun } else { Run::Write };
    let progress = if args.all && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(ids.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut total = history::CompactReport::default();
    for id in &ids {
        progress.set_message(id.clone());
        let report = history::compact(store.as_ref(), id, args.keep_versions, run).await.map_err(explain)?;
        total.bytes_before += report.bytes_before;
        total.bytes_after += report.bytes_after;
        total.rows_before += report.rows_before;
        total.rows_after += report.rows_after;
        progress.inc(1);
    }
    progress.finish_and_clear();
    let summary = json!({
        "documents": ids.len(),
        "bytes_before": total.bytes_before,
        "bytes_after": total.bytes_after,
        "rows_before": total.rows_before,
        "rows_after": total.rows_after,
    });
    if args.json {
        println!("{summary}");
    } else {
        let verb = if args.dry_run { "would compact" } else { "compacted" };
        println!(
            "{verb} {} document(s): {} → {} bytes, {} → {} rows",
            ids.len(),
            total.bytes_before,
            total.bytes_after,
            total.rows_before,
            total.rows_after
        );
    }
    Ok(())
}

fn parse_at(at: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(at.trim())
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("invalid --at {at:?}: expected an RFC 3339 time such as 2026-11-22T10:00:00Z"))
}

pub async fn restore(args: &RestoreArgs, data: &DataArgs) -> anyhow::Result<()> {
    if let Some(at) = &args.at {
        parse_at(at)?;
    }
    let result = match (Remote::from_args(&args.remote)?, args.dry_run) {
        (Some(remote), false) => {
            let body = match (&args.version, &args.at) {
                (Some(version), _) => json!({ "version": version }),
                (None, at) => json!({ "at": at }),
            };
            remote.post_json(&format!("/api/v1/documents/{}/restore", remote.encode(&args.document_id)), &body).await?
        }
        (_, dry_run) => {
            let store = open(data).await?;
            let version = match (args.version, &args.at) {
                (Some(version), _) => version,
                (None, Some(at)) => {
                    history::version_at(store.as_ref(), &args.document_id, parse_at(at)?)
                        .await
                        .map_err(explain)?
                        .version
                }
                (None, None) => bail!("give --version or --at"),
            };
            let snapshot = history::version(store.as_ref(), &args.document_id, version).await.map_err(explain)?;
            if dry_run {
                json!({ "document_id": args.document_id, "restored_version": version, "new_version": null })
            } else {
                let target = content::doc_from_state(&snapshot.state)?;
                let label = Some(format!("restore of version {version}"));
                let replaced = history::replace(
                    store.as_ref(),
                    &args.document_id,
                    &target,
                    ImportMode::Replace,
                    "tandem-cli",
                    label,
                )
                .await
                .map_err(explain)?;
                json!({ "document_id": args.document_id, "restored_version": version, "new_version": replaced.version })
            }
        }
    };
    if args.json {
        println!("{result}");
    } else if args.dry_run {
        println!("would restore version {} of {}", result["restored_version"], args.document_id);
    } else {
        println!(
            "restored version {} of {} as version {}",
            result["restored_version"], args.document_id, result["new_version"]
        );
    }
    Ok(())
}

pub async fn export(args: &ExportArgs, data: &DataArgs) -> anyhow::Result<()> {
    let format = args.format.or_else(|| args.output.as_deref().and_then(Format::from_path)).unwrap_or(Format::Json);
    let store = open(data).await?;
    let doc = match args.version {
        Some(version) => content::doc_from_state(
            &history::version(store.as_ref(), &args.document_id, version).await.map_err(explain)?.state,
        )?,
        None => history::load(store.as_ref(), &args.document_id).await.map_err(explain)?.doc,
    };
    let bytes = content::render(&doc, format);
    match &args.output {
        Some(path) => std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

pub async fn import(args: &ImportArgs, data: &DataArgs) -> anyhow::Result<()> {
    let format = args.format.or_else(|| Format::from_path(&args.file)).with_context(|| {
        format!("cannot tell the format of {}: pass --format ybin|json|text|html", args.file.display())
    })?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // Parse locally first so a corrupt file is refused before anything is sent or written.
    let target = content::parse(&bytes, format, Schema::for_document(&args.document_id))
        .with_context(|| format!("{} is not a valid {format:?} document", args.file.display()))?;
    let mode = if args.replace { ImportMode::Replace } else { ImportMode::IntoEmpty };
    let result: Value = match Remote::from_args(&args.remote)? {
        Some(remote) => {
            let path = format!(
                "/api/v1/documents/{}/import?format=ybin&replace={}",
                remote.encode(&args.document_id),
                args.replace
            );
            remote.post_bytes(&path, content::state_of(&target)).await?
        }
        None => {
            let store = open(data).await?;
            let label = Some(format!("import of {}", args.file.display()));
            let replaced = history::replace(store.as_ref(), &args.document_id, &target, mode, "tandem-cli", label)
                .await
                .map_err(explain)?;
            json!({ "document_id": args.document_id, "seq": replaced.seq, "version": replaced.version })
        }
    };
    println!("{result}");
    Ok(())
}
