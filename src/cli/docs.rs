//! `tandem docs`: list documents, or set a document's access rules.

use clap::{Args, Subcommand};
use serde_json::json;

use crate::{config::DataArgs, store};

#[derive(Debug, Args)]
pub struct DocsArgs {
    #[command(subcommand)]
    action: Option<DocsAction>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DocsAction {
    /// Set who may use a document. With no flags it becomes open to every signed-in user.
    Access(AccessArgs),
}

#[derive(Debug, Args)]
struct AccessArgs {
    /// The document id, e.g. note:1234 or any other name.
    document_id: String,
    /// Only the owner and admins (plus anyone listed below).
    #[arg(long)]
    private: bool,
    /// A user who may read.
    #[arg(long = "read", value_name = "USER_ID")]
    read: Vec<String>,
    /// A user who may read and write.
    #[arg(long = "write", value_name = "USER_ID")]
    write: Vec<String>,
}

pub async fn run(args: &DocsArgs, data: &DataArgs) -> anyhow::Result<()> {
    let store = store::open(&data.database_url()).await?;
    match &args.action {
        None => {
            let docs = store.list_documents().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&docs)?);
            } else {
                println!("{:<40} {:>12} {:>8}  UPDATED", "DOCUMENT", "BYTES", "UPDATES");
                for d in docs {
                    println!("{:<40} {:>12} {:>8}  {}", d.document_id, d.bytes, d.updates, format_ms(d.updated_at));
                }
            }
        }
        Some(DocsAction::Access(access)) => {
            let rules = if access.private || !access.read.is_empty() || !access.write.is_empty() {
                Some(json!({
                    "read": { "user_ids": access.read, "group_ids": [] },
                    "write": { "user_ids": access.write, "group_ids": [] },
                }))
            } else {
                None
            };
            if store.document(&access.document_id).await?.is_none() {
                store.create_document(&access.document_id, None).await?;
            }
            store.set_access_control(&access.document_id, rules.as_ref()).await?;
            let shown = json!({ "document_id": access.document_id, "access_control": rules });
            println!("{}", if args.json { shown.to_string() } else { serde_json::to_string_pretty(&shown)? });
        }
    }
    Ok(())
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn format_ms(ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64))
        .to_string()
}
