//! `tandem token`: make a user exist in the standalone directory and print a token for it.

use clap::{Args, ValueEnum};

use crate::{
    auth::TokenKeys,
    config::DataArgs,
    store::{self, UserRecord},
};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user's id (the token's `id` claim).
    #[arg(long)]
    user_id: String,
    /// The user's display name.
    #[arg(long)]
    name: String,
    #[arg(long, value_enum, default_value_t = RoleArg::User)]
    role: RoleArg,
    /// Lifetime of the token: 4w, 12h, 30m, ... or `never`.
    #[arg(long, default_value = "4w", value_parser = super::parse_ttl)]
    ttl: super::Ttl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    User,
    Admin,
}

pub async fn run(args: &TokenArgs, data: &DataArgs) -> anyhow::Result<()> {
    if args.user_id.trim().is_empty() || args.name.trim().is_empty() {
        anyhow::bail!("--user-id and --name must not be empty");
    }
    let (secret, _) = data.secret()?;
    let store = store::open(&data.database_url()).await?;
    let existing = store.user(&args.user_id).await?;
    store
        .upsert_user(&UserRecord {
            id: args.user_id.clone(),
            name: args.name.clone(),
            role: match args.role {
                RoleArg::User => "user",
                RoleArg::Admin => "admin",
            }
            .to_string(),
            last_active_at: existing.map_or(0, |u| u.last_active_at),
        })
        .await?;
    // The token is the only thing on stdout, so scripts can capture it.
    println!("{}", TokenKeys::new(&secret).mint(&args.user_id, args.ttl.0));
    Ok(())
}
