//! Configuration: the `tandem serve` flags and their environment twins, turned once into a
//! validated [`Config`].
//!
//! Variable names and defaults follow Open WebUI where it has them, so an Open WebUI `.env` can
//! drive tandem unchanged. Values Open WebUI would silently replace by a default (bad ping
//! intervals) are replaced here too, with a warning; values that would make tandem do
//! something other than asked (an unknown `WEBSOCKET_MANAGER`, a Redis manager without a URL)
//! are errors.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;

/// Where the data lives: shared by `serve` and every subcommand that touches the database.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Database URL: sqlite://relative/path.db, sqlite:///absolute/path.db or postgres://…
    /// [default: sqlite://<DATA_DIR>/tandem.db]
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Directory for the default SQLite database and the generated secret key.
    #[arg(long, env = "DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,

    /// Secret that signs and verifies the HS256 session tokens (Open WebUI's variable). When
    /// unset, a random key is generated once and kept in <DATA_DIR>/.webui_secret_key.
    #[arg(long, env = "WEBUI_SECRET_KEY", hide_env_values = true, global = true)]
    pub webui_secret_key: Option<String>,
}

/// Where the secret came from; the demo sign-in is only on by default for a generated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `WEBUI_SECRET_KEY` (or the deprecated `WEBUI_JWT_SECRET_KEY`) was set.
    Configured,
    /// Read from, or just written to, `<DATA_DIR>/.webui_secret_key`.
    Generated,
}

impl DataArgs {
    /// The database URL, defaulting to a SQLite file under the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.trim().to_string(),
            _ => format!("sqlite://{}", self.data_dir.join("tandem.db").display()),
        }
    }

    /// The signing secret: configured, or generated once and persisted under the data dir.
    pub fn secret(&self) -> anyhow::Result<(String, SecretSource)> {
        let configured = self
            .webui_secret_key
            .clone()
            .or_else(|| std::env::var("WEBUI_JWT_SECRET_KEY").ok())
            .filter(|s| !s.is_empty());
        if let Some(secret) = configured {
            return Ok((secret, SecretSource::Configured));
        }
        let path = self.data_dir.join(".webui_secret_key");
        Ok((load_or_create_secret(&path)?, SecretSource::Generated))
    }
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let secret: String = {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "WEBUI_SECRET_KEY is not set: generated a random key and saved it; set WEBUI_SECRET_KEY to share tokens with Open WebUI"
    );
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// `tandem serve` flags. Each has an environment twin; flags win.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Allowed browser origins, `;`-separated, or `*` for any.
    #[arg(long, env = "CORS_ALLOW_ORIGIN", default_value = "*")]
    pub cors_allow_origin: String,

    /// `true`: WebSocket transport only (Open WebUI's default); `false`: HTTP long-polling only.
    #[arg(long, env = "ENABLE_WEBSOCKET_SUPPORT", default_value = "true")]
    pub enable_websocket_support: String,

    /// Engine.IO ping interval in seconds.
    #[arg(long, env = "WEBSOCKET_SERVER_PING_INTERVAL", default_value = "25")]
    pub websocket_server_ping_interval: String,

    /// Engine.IO ping timeout in seconds.
    #[arg(long, env = "WEBSOCKET_SERVER_PING_TIMEOUT", default_value = "20")]
    pub websocket_server_ping_timeout: String,

    /// `redis` to run several instances sharing one Redis; empty for a single instance.
    #[arg(long, env = "WEBSOCKET_MANAGER", default_value = "")]
    pub websocket_manager: String,

    /// Redis URL for the cluster bus [default: $REDIS_URL].
    #[arg(long, env = "WEBSOCKET_REDIS_URL")]
    pub websocket_redis_url: Option<String>,

    /// Prefix of every Redis key tandem uses (Open WebUI's default, so both can share Redis).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "open-webui")]
    pub redis_key_prefix: String,

    /// Seconds a server-to-client call waits for the tab's answer.
    #[arg(long, env = "WEBSOCKET_EVENT_CALLER_TIMEOUT", default_value = "60")]
    pub websocket_event_caller_timeout: String,

    /// Largest single Yjs update accepted, in bytes.
    #[arg(long, env = "MAX_UPDATE_BYTES", default_value_t = 4 << 20)]
    pub max_update_bytes: usize,

    /// Largest document (encoded state) accepted, in bytes; updates that would grow a
    /// document past it are refused.
    #[arg(long, env = "MAX_DOCUMENT_BYTES", default_value_t = 64 << 20)]
    pub max_document_bytes: usize,

    /// Key that backends present as `Authorization: Bearer <key>` to the backend-facing API.
    #[arg(long, env = "TANDEM_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,

    /// Fold a document's update log into a new version after this many updates.
    #[arg(long, env = "TANDEM_SNAPSHOT_EVERY_UPDATES", default_value_t = 500)]
    pub snapshot_every_updates: u32,

    /// Seconds a document nobody is editing stays in memory before it is unloaded.
    #[arg(long, env = "TANDEM_IDLE_UNLOAD_SECS", default_value_t = 30.0)]
    pub idle_unload_secs: f64,

    /// OpenAI-compatible API that chat completions stream from (e.g. https://api.openai.com/v1);
    /// unset, the built-in `tandem-demo` model answers.
    #[arg(long, env = "OPENAI_API_BASE_URL")]
    pub openai_api_base_url: Option<String>,

    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// Seconds the usage-sweeping leader's lock lives without renewal (Open WebUI's name).
    #[arg(long, env = "WEBSOCKET_REDIS_LOCK_TIMEOUT", default_value_t = 60)]
    pub websocket_redis_lock_timeout: u64,

    /// Offer `POST /api/v1/demo/signin`, which gives a token to anyone who names themselves
    /// [default: true only when WEBUI_SECRET_KEY is not set].
    #[arg(long, env = "TANDEM_DEMO_SIGNIN")]
    pub demo_signin: Option<bool>,

    /// Automatic versions kept per document (manual, compact and restore versions are kept
    /// until `tandem compact` drops them).
    #[arg(long, env = "TANDEM_KEEP_AUTO_VERSIONS", default_value_t = 20)]
    pub keep_auto_versions: u32,
}

/// Which transport Engine.IO offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    WebSocketOnly,
    PollingOnly,
}

/// Where cross-instance state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manager {
    /// One process; everything in memory.
    Local,
    /// Several instances sharing Redis at this URL.
    Redis { url: String },
}

/// Which origins may open sockets and call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    Any,
    Origins(Vec<String>),
}

/// The validated configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub secret: String,
    pub secret_source: SecretSource,
    pub cors: Cors,
    pub transports: Transports,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub manager: Manager,
    pub redis_key_prefix: String,
    pub event_caller_timeout: Duration,
    pub limits: Limits,
    pub service_key: Option<String>,
    pub history: HistorySettings,
    pub demo_signin: bool,
    pub upstream: Option<Upstream>,
    pub lock_timeout: Duration,
}

/// An OpenAI-compatible chat completions API.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Without a trailing slash; `/chat/completions` is appended.
    pub base_url: String,
    pub api_key: Option<String>,
}

/// When documents are folded into versions and unloaded.
#[derive(Debug, Clone, Copy)]
pub struct HistorySettings {
    pub snapshot_every_updates: u32,
    pub idle_unload: Duration,
    pub keep_auto_versions: u32,
}

/// Size bounds on what clients may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_update_bytes: usize,
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_update_bytes: 4 << 20, max_document_bytes: 64 << 20 }
    }
}

impl Config {
    /// Validates the flags; the only side effect is generating the secret key file if needed.
    pub fn from_args(args: &ServeArgs, data: &DataArgs) -> anyhow::Result<Self> {
        let manager = match args.websocket_manager.trim().to_ascii_lowercase().as_str() {
            "" | "local" => Manager::Local,
            "redis" => {
                let url = args
                    .websocket_redis_url
                    .clone()
                    .or_else(|| std::env::var("REDIS_URL").ok())
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "WEBSOCKET_MANAGER=redis needs WEBSOCKET_REDIS_URL or REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
                        )
                    })?;
                Manager::Redis { url }
            }
            other => anyhow::bail!("WEBSOCKET_MANAGER={other:?} is not supported: use \"redis\" or leave it empty"),
        };
        let cors = {
            let origins: Vec<String> =
                args.cors_allow_origin.split(';').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect();
            if origins.is_empty() || origins.iter().any(|o| o == "*") { Cors::Any } else { Cors::Origins(origins) }
        };
        if args.max_update_bytes == 0 || args.max_document_bytes == 0 {
            anyhow::bail!("MAX_UPDATE_BYTES and MAX_DOCUMENT_BYTES must be positive");
        }
        if args.snapshot_every_updates == 0 {
            anyhow::bail!("TANDEM_SNAPSHOT_EVERY_UPDATES must be positive");
        }
        if !(args.idle_unload_secs.is_finite() && args.idle_unload_secs >= 0.0) {
            anyhow::bail!("TANDEM_IDLE_UNLOAD_SECS must be a non-negative number of seconds");
        }
        let (secret, secret_source) = data.secret()?;
        Ok(Self {
            addr: SocketAddr::new(args.host, args.port),
            database_url: data.database_url(),
            data_dir: data.data_dir.clone(),
            secret,
            secret_source,
            cors,
            transports: if parse_open_webui_bool(&args.enable_websocket_support) {
                Transports::WebSocketOnly
            } else {
                Transports::PollingOnly
            },
            ping_interval: seconds_or("WEBSOCKET_SERVER_PING_INTERVAL", &args.websocket_server_ping_interval, 25),
            ping_timeout: seconds_or("WEBSOCKET_SERVER_PING_TIMEOUT", &args.websocket_server_ping_timeout, 20),
            manager,
            redis_key_prefix: args.redis_key_prefix.clone(),
            event_caller_timeout: seconds_or(
                "WEBSOCKET_EVENT_CALLER_TIMEOUT",
                &args.websocket_event_caller_timeout,
                60,
            ),
            limits: Limits { max_update_bytes: args.max_update_bytes, max_document_bytes: args.max_document_bytes },
            service_key: args.service_key.clone().filter(|k| !k.is_empty()),
            demo_signin: args.demo_signin.unwrap_or(secret_source == SecretSource::Generated),
            upstream: args.openai_api_base_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(|url| {
                Upstream {
                    base_url: url.trim_end_matches('/').to_string(),
                    api_key: args.openai_api_key.clone().filter(|k| !k.is_empty()),
                }
            }),
            lock_timeout: Duration::from_secs(args.websocket_redis_lock_timeout.max(3)),
            history: HistorySettings {
                snapshot_every_updates: args.snapshot_every_updates,
                idle_unload: Duration::from_secs_f64(args.idle_unload_secs),
                keep_auto_versions: args.keep_auto_versions,
            },
        })
    }
}

/// Open WebUI reads booleans as `value.lower() == "true"`.
fn parse_open_webui_bool(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// Open WebUI falls back to the default on an unparsable or non-positive value; so do we,
/// but say so.
fn seconds_or(name: &str, value: &str, default: u64) -> Duration {
    match value.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        _ => {
            tracing::warn!(variable = name, value, default, "invalid number of seconds; using the default");
            Duration::from_secs(default)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_webui_booleans() {
        assert!(parse_open_webui_bool("True"));
        assert!(parse_open_webui_bool("true"));
        assert!(!parse_open_webui_bool("1"));
        assert!(!parse_open_webui_bool("false"));
    }

    #[test]
    fn invalid_seconds_fall_back() {
        assert_eq!(seconds_or("X", "abc", 25), Duration::from_secs(25));
        assert_eq!(seconds_or("X", "-3", 25), Duration::from_secs(25));
        assert_eq!(seconds_or("X", "2.5", 25), Duration::from_millis(2500));
    }

    #[test]
    fn default_database_is_sqlite_under_data_dir() {
        let args = DataArgs { database_url: None, data_dir: PathBuf::from("./d"), webui_secret_key: None };
        assert_eq!(args.database_url(), "sqlite://./d/tandem.db");
    }

    #[test]
    fn generated_secret_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let args = DataArgs { database_url: None, data_dir: dir.path().to_path_buf(), webui_secret_key: None };
        let (first, source) = args.secret().unwrap();
        assert_eq!(source, SecretSource::Generated);
        let (second, _) = args.secret().unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }
}
