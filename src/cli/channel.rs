//! `tandem channel create`: a standalone channel with its members.

use clap::{Args, Subcommand};

use crate::{
    config::DataArgs,
    directory::{Directory, StandaloneDirectory},
    store,
};

#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(subcommand)]
    action: ChannelAction,
}

#[derive(Debug, Subcommand)]
enum ChannelAction {
    /// Create a channel and print its id (only the id, on stdout). Members already connected to
    /// a running server join its room on their next `user-join`; `POST /api/v1/channels` makes
    /// them join at once.
    Create {
        #[arg(long)]
        name: String,
        /// A member's user id (repeat for more).
        #[arg(long = "member", value_name = "USER_ID")]
        members: Vec<String>,
    },
}

pub async fn run(args: &ChannelArgs, data: &DataArgs) -> anyhow::Result<()> {
    match &args.action {
        ChannelAction::Create { name, members } => {
            let name = name.trim();
            if name.is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            let directory = StandaloneDirectory::new(store::open(&data.database_url()).await?);
            let owner = members.first().cloned().unwrap_or_default();
            println!("{}", directory.create_channel(name, &owner, members).await?);
        }
    }
    Ok(())
}
