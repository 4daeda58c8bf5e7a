//! Talking to a running server for the CLI's `--server` mode.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Go through the server at this URL (e.g. http://127.0.0.1:8080) so connected editors see
    /// the change at once.
    #[arg(long, env = "TANDEM_SERVER")]
    pub server: Option<String>,
    /// An admin token (or the document's writer) for --server.
    #[arg(long, env = "TANDEM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub struct Remote {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Remote {
    /// `None` without `--server`.
    pub fn from_args(args: &RemoteArgs) -> anyhow::Result<Option<Self>> {
        let Some(server) = args.server.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .context("--server needs --token or TANDEM_TOKEN (an admin token from `tandem token --role admin`)")?;
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("--server must be an http:// or https:// URL, got {server:?}");
        }
        Ok(Some(Self { base: server.trim_end_matches('/').to_string(), token, client: reqwest::Client::new() }))
    }

    /// Percent-encodes a path segment.
    pub fn encode(&self, segment: &str) -> String {
        let mut out = String::new();
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.client.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(body);
        Self::answer(request.send().await).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        Self::answer(request.send().await).await
    }

    async fn answer(response: reqwest::Result<reqwest::Response>) -> anyhow::Result<Value> {
        let response = response.context("cannot reach the server")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        let code = body["error"]["code"].as_str().unwrap_or("error");
        bail!("the server refused ({status}, {code}): {message}")
    }
}
