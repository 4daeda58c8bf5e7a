//! `tandem-loadgen`: a load generator for tandem's `ydoc:*` Socket.IO protocol.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself (tokio-tungstenite), as Open WebUI's
//! notes editor does: updates go out as JSON number arrays, and every client owns a real `yrs::Doc`
//! so the server validates real Yjs updates and each client applies what it receives.
//!
//! Three modes (`tandem-loadgen <mode> --help`):
//! - `load`: D documents × E editors, each typing into an XmlFragment `prosemirror` at R keystrokes
//!   per second for S seconds. Reports end-to-end latency (send → every other editor's receipt),
//!   deliveries per second, convergence, and the server's CPU time and peak RSS.
//! - `join`: documents with long histories (typed through the server), then the time from
//!   `ydoc:document:join` to `ydoc:document:state`, cold (document unloaded) and warm.
//! - `idle`: N idle authenticated connections; server memory per connection, and whether all are
//!   held.
//!
//! The server is either started here (`--server-bin target/release/tandem`, fresh database, raised
//! fd limit) or attached to (`--url` + `--pid` + `--token`). Output: one JSON line on stdout (also
//! appended to `--out`), and a readable summary on stderr.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures_util::{SinkExt, StreamExt, stream::SplitSink, stream::SplitStream};
use serde::Deserialize;
use serde_json::{Value, json};
use tandem::typing::Typist;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::watch,
};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Parser, Debug)]
#[command(name = "tandem-loadgen", about = "Load generator for tandem's ydoc:* Socket.IO protocol")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// D documents × E editors typing at R keystrokes/s for S seconds.
    Load(LoadArgs),
    /// Join latency for documents with long histories.
    Join(JoinArgs),
    /// N idle connections: server memory per connection, connections held.
    Idle(IdleArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Start this tandem binary (`serve --port 0`) on a fresh database.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Database for a started server: a fresh SQLite file or a fresh Postgres database.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// Admin URL of the Postgres on which the fresh database is created (and dropped).
    #[arg(long, env = "TANDEM_TEST_PG_URL", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_admin_url: String,
    /// Query string appended to the started server's Postgres URL, e.g. `sslmode=disable`.
    #[arg(long)]
    pg_options: Option<String>,
    /// Extra environment for a started server, KEY=VALUE (repeatable).
    #[arg(long = "server-env", value_parser = parse_kv)]
    server_env: Vec<(String, String)>,
    /// Attach to a running server instead (http://host:port) ...
    #[arg(long, conflicts_with = "server_bin")]
    url: Option<String>,
    /// ... whose process id is this (for CPU and memory readings) ...
    #[arg(long)]
    pid: Option<u32>,
    /// ... with these tokens (repeatable; clients use them round-robin).
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Append the JSON result line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Free-form label stored in the result.
    #[arg(long, default_value = "")]
    label: String,
    /// Keep the data directory (and the server log) of a started server.
    #[arg(long)]
    keep: bool,
    /// Before starting, wait up to this many seconds for the machine to be quiet (under 10% CPU
    /// busy over 2 s): other work on the machine skews every number.
    #[arg(long, default_value_t = 0.0)]
    wait_quiet: f64,
}

/// Waits until the machine's CPU is under 10% busy for 2 s, or `max` seconds pass; returns the
/// last reading.
async fn wait_quiet(max: f64) -> Option<f64> {
    if max <= 0.0 {
        return None;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(max);
    let mut announced = false;
    loop {
        let a = machine_cpu()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let b = machine_cpu()?;
        let busy = (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64;
        if busy < 0.10 || Instant::now() >= deadline {
            if busy >= 0.10 {
                eprintln!("warning: the machine is still {:.0}% busy; measuring anyway", busy * 100.0);
            }
            return Some(busy);
        }
        if !announced {
            eprintln!("waiting for the machine to be quiet ({:.0}% busy)...", busy * 100.0);
            announced = true;
        }
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    #[command(flatten)]
    common: Common,
    /// Documents.
    #[arg(long, default_value_t = 50)]
    docs: usize,
    /// Editors per document.
    #[arg(long, default_value_t = 4)]
    editors: usize,
    /// Keystrokes (updates) per second per editor.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of typing.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Send `data.content` ({md, html, json}) with every update, as Open WebUI's editor does.
    #[arg(long)]
    content: bool,
    /// Seconds to wait after typing stops for the last deliveries.
    #[arg(long, default_value_t = 15.0)]
    drain_timeout: f64,
    /// Record a CPU profile of the server during the typing window with
    /// `perf record -e cpu-clock -g` into this file (needs perf).
    #[arg(long)]
    perf: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct JoinArgs {
    #[command(flatten)]
    common: Common,
    /// History lengths (updates) to build and join.
    #[arg(long, value_delimiter = ',', default_value = "5000,50000")]
    history: Vec<usize>,
    /// Cold joins per document (each waits for the document to unload first).
    #[arg(long, default_value_t = 10)]
    cold_samples: usize,
    /// Warm joins per document (document live in memory).
    #[arg(long, default_value_t = 50)]
    warm_samples: usize,
    /// Seconds after the last leave before a document counts as unloaded; a started server gets
    /// TANDEM_IDLE_UNLOAD_SECS=1, so 1.5 s is enough.
    #[arg(long, default_value_t = 1.5)]
    unload_wait: f64,
    /// Also build "steady" documents: the smallest history's typing followed by insert/delete
    /// churn up to each longer history, so the content stays the same while history grows.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    steady: bool,
}

#[derive(Args, Debug, Clone)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// Idle connections to open.
    #[arg(long, default_value_t = 5000)]
    idle: usize,
    /// Memory readings on the way (evenly spaced).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Seconds to hold all connections before checking they are still open.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Connections opened concurrently.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.mode {
        Mode::Load(a) => a.common.threads,
        Mode::Join(a) => a.common.threads,
        Mode::Idle(a) => a.common.threads,
    };
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).enable_all().build()?;
    runtime.block_on(async move {
        match cli.mode {
            Mode::Load(args) => {
                let server = Server::start(&args.common, 8, &[]).await?;
                let common = args.common.clone();
                let outcome = load(&server, args).await;
                finish(&server, &common, outcome).await
            }
            Mode::Join(args) => {
                // Documents nobody is in unload after a second, so cold joins can be repeated.
                let server = Server::start(&args.common, 2, &[("TANDEM_IDLE_UNLOAD_SECS", "1")]).await?;
                let common = args.common.clone();
                let outcome = join_bench(&server, args).await;
                finish(&server, &common, outcome).await
            }
            Mode::Idle(args) => {
                let server = Server::start(&args.common, 1, &[]).await?;
                let common = args.common.clone();
                let outcome = idle(&server, args).await;
                finish(&server, &common, outcome).await
            }
        }
    })
}

/// Raises the soft fd limit to the hard one; a started server inherits it.
fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc call on a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// Stops what was started, then prints the mode's result.
async fn finish(server: &Server, common: &Common, outcome: anyhow::Result<(Value, String)>) -> anyhow::Result<()> {
    let stopped = server.stop().await;
    let (mut result, summary) = outcome?;
    stopped?;
    if let Value::Object(map) = &mut result {
        map.insert("label".into(), json!(common.label));
        map.insert("store".into(), json!(server.store_name));
        map.insert("pg_options".into(), json!(common.pg_options));
        map.insert("loadgen_threads".into(), json!(common.threads));
        map.insert("fd_limit".into(), json!(fd_limit()));
        map.insert(
            "unix_time".into(),
            json!(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()),
        );
    }
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if let Some(out) = &common.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(out).await?;
        file.write_all(format!("{line}\n").as_bytes()).await?;
    }
    eprintln!("{summary}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The server under test

struct Server {
    addr: SocketAddr,
    host: String,
    pid: Option<u32>,
    tokens: Vec<String>,
    store_name: String,
    child: Mutex<Option<tokio::process::Child>>,
    pg: Option<(String, String)>,
    data_dir: Option<PathBuf>,
    keep: bool,
}

impl Server {
    async fn start(common: &Common, users: usize, defaults: &[(&str, &str)]) -> anyhow::Result<Self> {
        wait_quiet(common.wait_quiet).await;
        if let Some(url) = &common.url {
            if common.tokens.is_empty() {
                bail!("--url needs at least one --token (mint one with `tandem token`)");
            }
            let host = url.trim_start_matches("http://").trim_end_matches('/').to_string();
            let addr = tokio::net::lookup_host(&host).await?.next().ok_or_else(|| anyhow!("cannot resolve {host}"))?;
            if common.pid.is_none() {
                eprintln!("warning: no --pid, so no server CPU or memory readings");
            }
            return Ok(Self {
                addr,
                host,
                pid: common.pid,
                tokens: common.tokens.clone(),
                store_name: "attached".into(),
                child: Mutex::new(None),
                pg: None,
                data_dir: None,
                keep: true,
            });
        }
        let bin = common.server_bin.clone().ok_or_else(|| anyhow!("give --server-bin PATH or --url URL"))?;
        let data_dir = std::env::temp_dir().join(format!("tandem-loadgen-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir)?;
        let (database_url, pg) = match common.store {
            StoreKind::Sqlite => (format!("sqlite://{}", data_dir.join("tandem.db").display()), None),
            StoreKind::Postgres => {
                let name = format!("tandem_loadgen_{}", uuid::Uuid::new_v4().simple());
                pg_exec(&common.pg_admin_url, &format!("CREATE DATABASE {name}")).await?;
                let slash =
                    common.pg_admin_url.rfind('/').ok_or_else(|| anyhow!("the Postgres URL must name a database"))?;
                let options = common.pg_options.as_deref().map(|o| format!("?{o}")).unwrap_or_default();
                (
                    format!("{}/{name}{options}", &common.pg_admin_url[..slash]),
                    Some((common.pg_admin_url.clone(), name)),
                )
            }
        };
        let mut env: Vec<(String, String)> = vec![
            ("DATA_DIR".into(), data_dir.display().to_string()),
            ("DATABASE_URL".into(), database_url),
            ("WEBUI_SECRET_KEY".into(), format!("loadgen-{}", uuid::Uuid::new_v4())),
            ("RUST_LOG".into(), "warn,tandem::server=info".into()),
        ];
        env.extend(defaults.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        for (k, v) in &common.server_env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        let mut server = Self {
            addr: "127.0.0.1:0".parse()?,
            host: String::new(),
            pid: None,
            tokens: Vec::new(),
            store_name: match common.store {
                StoreKind::Sqlite => "sqlite".into(),
                StoreKind::Postgres => "postgres".into(),
            },
            child: Mutex::new(None),
            pg,
            data_dir: Some(data_dir.clone()),
            keep: common.keep,
        };
        // From here on, `server.stop()` cleans up whatever exists.
        let started = async {
            for k in 0..users.max(1) {
                let out = tokio::process::Command::new(&bin)
                    .args([
                        "token",
                        "--user-id",
                        &format!("loadgen-{k}"),
                        "--name",
                        &format!("Loadgen {k}"),
                        "--ttl",
                        "12h",
                    ])
                    .envs(env.iter().cloned())
                    .stderr(Stdio::inherit())
                    .output()
                    .await
                    .with_context(|| format!("running {} token", bin.display()))?;
                if !out.status.success() {
                    bail!("`tandem token` failed: {}", out.status);
                }
                server.tokens.push(String::from_utf8(out.stdout)?.trim().to_string());
            }
            let mut child = tokio::process::Command::new(&bin)
                .args(["serve", "--host", "127.0.0.1", "--port", "0"])
                .envs(env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            server.pid = child.id();
            let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
            *server.child.lock().unwrap() = Some(child);
            let mut lines = BufReader::new(stderr).lines();
            let mut log = tokio::fs::File::create(data_dir.join("server.log")).await?;
            let host = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(line) = lines.next_line().await? {
                    log.write_all(line.as_bytes()).await?;
                    log.write_all(b"\n").await?;
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        return Ok::<_, anyhow::Error>(rest.split_whitespace().next().unwrap_or_default().to_string());
                    }
                }
                bail!("the server exited before listening; see {}", data_dir.join("server.log").display())
            })
            .await
            .map_err(|_| anyhow!("the server did not listen within 30 s"))??;
            // Keep draining the log so the server never blocks on a full pipe.
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = log.write_all(line.as_bytes()).await;
                    let _ = log.write_all(b"\n").await;
                }
            });
            server.addr = host.parse()?;
            eprintln!("server pid {} listening on {host} ({})", server.pid.unwrap_or(0), server.store_name);
            server.host = host;
            Ok(())
        }
        .await;
        if let Err(error) = started {
            let _ = server.stop().await;
            return Err(error);
        }
        Ok(server)
    }

    /// SIGTERM (graceful), then SIGKILL after 15 s; drops a created Postgres database.
    async fn stop(&self) -> anyhow::Result<()> {
        let child = self.child.lock().unwrap().take();
        if let Some(mut child) = child {
            if let Some(pid) = child.id() {
                // SAFETY: signalling the child we started, by its pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!("warning: the server did not stop within 15 s; killing it");
                    let _ = child.kill().await;
                }
            }
        }
        if let Some((admin, name)) = &self.pg {
            pg_exec(admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
        }
        if let Some(dir) = &self.data_dir {
            if self.keep {
                eprintln!("kept {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        Ok(())
    }

    fn token(&self, k: usize) -> &str {
        &self.tokens[k % self.tokens.len()]
    }

    fn proc(&self) -> Option<ProcReading> {
        self.pid.and_then(ProcReading::read)
    }
}

async fn pg_exec(admin: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.with_context(|| format!("connecting to {admin}"))?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// CPU time and memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcReading {
    /// utime + stime, seconds.
    cpu: f64,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

impl ProcReading {
    fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; fields restart after its closing parenthesis.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name.
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Some(Self {
            cpu: ticks as f64 / hz,
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        })
    }
}

/// Busy and total jiffies of the whole machine, from /proc/stat.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// CPU seconds used so far by every process named `postgres` (the database's backends).
fn postgres_cpu() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut ticks = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
            if &stat[open + 1..close] != "postgres" {
                continue;
            }
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            ticks += fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
                + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    ticks as f64 / hz
}

/// CPU seconds this process has used.
fn self_cpu() -> f64 {
    // SAFETY: getrusage fills a local struct.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(usage.ru_utime) + tv(usage.ru_stime)
    }
}

// ---------------------------------------------------------------------------------------------
// Engine.IO v4 / Socket.IO v5 over WebSocket

type Ws = WebSocketStream<TcpStream>;
type WsTx = SplitSink<Ws, Message>;
type WsRx = SplitStream<Ws>;

/// An open, authenticated Socket.IO connection to the default namespace.
struct Conn {
    tx: WsTx,
    rx: WsRx,
    /// The Socket.IO session id (what broadcasts carry as `socket_id`).
    #[allow(dead_code)]
    sid: String,
}

#[derive(Deserialize)]
struct ConnectAck {
    sid: String,
}

async fn connect(server: &Server, token: &str) -> anyhow::Result<Conn> {
    let tcp = TcpStream::connect(server.addr).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let url = format!("ws://{}/ws/socket.io/?EIO=4&transport=websocket", server.host);
    let config = WebSocketConfig::default().read_buffer_size(16 << 10).write_buffer_size(0);
    let (ws, _) = client_async_with_config(url, tcp, Some(config)).await.context("websocket handshake")?;
    let (mut tx, mut rx) = ws.split();
    // Engine.IO open packet: 0{"sid":...,"pingInterval":...}
    loop {
        let text = next_text(&mut rx).await?;
        if text.starts_with('0') {
            break;
        }
    }
    tx.send(Message::text(format!("40{}", json!({ "token": token })))).await?;
    loop {
        let text = next_text(&mut rx).await?;
        if let Some(body) = text.strip_prefix("40") {
            let ack: ConnectAck = serde_json::from_str(body).context("namespace connect packet")?;
            return Ok(Conn { tx, rx, sid: ack.sid });
        } else if text.starts_with("44") {
            bail!("namespace connect refused: {text}");
        } else if text == "2" {
            tx.send(Message::text("3")).await?;
        }
    }
}

async fn next_text(rx: &mut WsRx) -> anyhow::Result<String> {
    loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(_))) | None => bail!("connection closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// `42["event",payload]`.
fn event_frame(event: &str, payload: &Value) -> Message {
    Message::text(format!("42{}", json!([event, payload])))
}

/// `42["ydoc:document:update",{document_id, update:[..], data?}]`, written without a JSON value
/// tree: this is the load generator's hottest send path. `ack` asks for an ack with that id.
fn update_frame(doc_id: &str, update: &[u8], content: Option<&str>, ack: Option<u64>) -> Message {
    let mut s = String::with_capacity(64 + doc_id.len() + update.len() * 4 + content.map_or(0, |c| c.len() + 64));
    s.push_str("42");
    if let Some(id) = ack {
        let _ = write!(s, "{id}");
    }
    s.push_str("[\"ydoc:document:update\",{\"document_id\":");
    s.push_str(&serde_json::to_string(doc_id).unwrap_or_default());
    s.push_str(",\"update\":[");
    for (i, b) in update.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{b}");
    }
    s.push(']');
    if let Some(text) = content {
        let text = serde_json::to_string(text).unwrap_or_default();
        let _ = write!(s, ",\"data\":{{\"content\":{{\"md\":{text},\"html\":null,\"json\":null}}}}");
    }
    s.push_str("}]");
    Message::text(s)
}

#[derive(Deserialize)]
struct UpdateIn<'a> {
    #[serde(borrow)]
    document_id: std::borrow::Cow<'a, str>,
    update: Vec<u8>,
}

#[derive(Deserialize)]
struct StateIn<'a> {
    #[serde(borrow)]
    document_id: std::borrow::Cow<'a, str>,
    state: Vec<u8>,
}

const UPDATE_PREFIX: &str = "42[\"ydoc:document:update\",";
const STATE_PREFIX: &str = "42[\"ydoc:document:state\",";
const ERROR_PREFIX: &str = "42[\"error\",";

/// What a received text frame is, for the frames the load generator cares about.
enum Frame<'a> {
    Ping,
    Update(UpdateIn<'a>),
    State(StateIn<'a>),
    Error(&'a str),
    Ack,
    Other,
}

fn classify(text: &str) -> anyhow::Result<Frame<'_>> {
    if text == "2" {
        Ok(Frame::Ping)
    } else if text.starts_with(UPDATE_PREFIX) {
        let (_, update): (serde::de::IgnoredAny, UpdateIn) = serde_json::from_str(&text[2..])?;
        Ok(Frame::Update(update))
    } else if text.starts_with(STATE_PREFIX) {
        let (_, state): (serde::de::IgnoredAny, StateIn) = serde_json::from_str(&text[2..])?;
        Ok(Frame::State(state))
    } else if text.starts_with(ERROR_PREFIX) {
        Ok(Frame::Error(text))
    } else if let Some(rest) = text.strip_prefix("43") {
        let _ = rest;
        Ok(Frame::Ack)
    } else {
        Ok(Frame::Other)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// Load mode

/// Updates of one document on their way: send time and receivers still to come, by hash.
#[derive(Default)]
struct InFlight {
    pending: Mutex<HashMap<u64, (Instant, u32)>>,
}

struct Shared {
    /// Deliveries still expected, across documents.
    outstanding: AtomicU64,
    unmatched: AtomicU64,
    errors: AtomicU64,
    apply_failures: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop_typing: AtomicBool,
    /// Editors that have not yet seen `stop_typing`; the drain starts when none is left, so no
    /// update can be sent after the drain's check.
    typing: AtomicU64,
}

struct EditorResult {
    doc_index: usize,
    typist: Typist,
    latencies_us: Vec<u32>,
    /// Second (since typing started) in which each latency's update was sent.
    sent_second: Vec<u16>,
    sent: u64,
    received: u64,
    send_failed: bool,
}

async fn load(server: &Server, args: LoadArgs) -> anyhow::Result<(Value, String)> {
    let n = args.docs * args.editors;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let doc_ids: Vec<String> = (0..args.docs).map(|d| format!("note:lg-{run}-{d}")).collect();
    eprintln!("connecting {n} clients ({} documents × {} editors)...", args.docs, args.editors);
    let conns = connect_many(server, n, 64).await?;
    let shared = Arc::new(Shared {
        outstanding: AtomicU64::new(0),
        unmatched: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        apply_failures: AtomicU64::new(0),
        first_error: Mutex::new(None),
        stop_typing: AtomicBool::new(false),
        typing: AtomicU64::new(n as u64),
    });
    let inflight: Vec<Arc<InFlight>> = (0..args.docs).map(|_| Arc::new(InFlight::default())).collect();

    // Join every document (each client applies the state it gets) before typing starts.
    let join_started = Instant::now();
    let (start_tx, start_rx) = watch::channel::<Option<Instant>>(None);
    let (finish_tx, finish_rx) = watch::channel(false);
    let joined = Arc::new(tokio::sync::Barrier::new(n + 1));
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tasks = Vec::with_capacity(n);
    for (i, conn) in conns.into_iter().enumerate() {
        let doc_index = i % args.docs;
        let editor = Editor {
            conn,
            doc_id: doc_ids[doc_index].clone(),
            doc_index,
            receivers: (args.editors - 1) as u32,
            inflight: inflight[doc_index].clone(),
            shared: shared.clone(),
            // Spread the editors' ticks evenly over one period.
            offset: period.mul_f64(i as f64 / n as f64),
            period,
            content: args.content,
        };
        tasks.push(tokio::spawn(editor.run(joined.clone(), start_rx.clone(), finish_rx.clone())));
    }
    joined.wait().await;
    let join_secs = join_started.elapsed().as_secs_f64();
    eprintln!("all joined in {join_secs:.2} s; typing for {} s at {} keys/s each...", args.duration, args.rate);

    let before = server.proc();
    let self_before = self_cpu();
    let machine_before = machine_cpu();
    let pg_before = postgres_cpu();
    let start = Instant::now() + Duration::from_millis(50);
    start_tx.send(Some(start))?;
    let mut perf = match (&args.perf, server.pid) {
        (Some(path), Some(pid)) => Some(
            tokio::process::Command::new("perf")
                .args(["record", "-q", "-e", "cpu-clock", "-F", "1999", "-g", "-p", &pid.to_string(), "-o"])
                .arg(path)
                .args(["--", "sleep", &format!("{}", args.duration)])
                .stdout(Stdio::null())
                .spawn()
                .context("starting perf record")?,
        ),
        _ => None,
    };
    let typing = Duration::from_secs_f64(args.duration);
    let mut rss_peak_during = 0u64;
    while start.elapsed() < typing {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(p) = server.proc() {
            rss_peak_during = rss_peak_during.max(p.rss_kib);
        }
    }
    shared.stop_typing.store(true, Ordering::SeqCst);
    let typing_end = Instant::now();
    // Every editor sees the stop at its next tick (one period); an editor whose connection
    // failed never will, hence the bound.
    let stop_deadline = Instant::now() + period * 2 + Duration::from_millis(500);
    while shared.typing.load(Ordering::SeqCst) > 0 && Instant::now() < stop_deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Some(perf) = perf.as_mut() {
        let _ = perf.wait().await;
    }
    // Drain: wait for every expected delivery (or give up).
    let drain_deadline = Instant::now() + Duration::from_secs_f64(args.drain_timeout);
    while shared.outstanding.load(Ordering::SeqCst) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_after = typing_end.elapsed().as_secs_f64();
    let window = start.elapsed().as_secs_f64();
    let after = server.proc();
    let self_after = self_cpu();
    let machine_after = machine_cpu();
    let pg_cpu = postgres_cpu() - pg_before;
    let machine_util = match (machine_before, machine_after) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    };
    let missing = shared.outstanding.load(Ordering::SeqCst);
    // Which updates never reached everyone: document, when they were sent, receivers missing.
    let mut missing_detail = Vec::new();
    for (d, f) in inflight.iter().enumerate() {
        for (at, left) in f.pending.lock().unwrap().values() {
            missing_detail.push(json!({ "doc": d, "sent_at_s": at.saturating_duration_since(start).as_secs_f64(), "receivers_missing": left }));
        }
    }
    finish_tx.send(true)?;
    let mut editors = Vec::with_capacity(n);
    for task in tasks {
        editors.push(task.await??);
    }

    // Convergence: every editor of a document holds the same state, and so does the server (a
    // fresh client joining now).
    let mut diverged = 0usize;
    let mut server_diverged = 0usize;
    let mut by_doc: Vec<Vec<&EditorResult>> = vec![Vec::new(); args.docs];
    for e in &editors {
        by_doc[e.doc_index].push(e);
    }
    let mut verifier = connect(server, server.token(0)).await?;
    for (d, group) in by_doc.iter().enumerate() {
        let reference = (group[0].typist.state_vector(), group[0].typist.plain_text());
        if group.iter().any(|e| (e.typist.state_vector(), e.typist.plain_text()) != reference) {
            diverged += 1;
        }
        let state = join_and_wait(&mut verifier, &doc_ids[d]).await?.1;
        let fresh = Typist::new();
        fresh.apply(&state)?;
        if (fresh.state_vector(), fresh.plain_text()) != reference {
            server_diverged += 1;
        }
        verifier.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": doc_ids[d] }))).await?;
    }
    let _ = verifier.tx.close().await;

    let sent: u64 = editors.iter().map(|e| e.sent).sum();
    let received: u64 = editors.iter().map(|e| e.received).sum();
    let mut per_second: Vec<Vec<u32>> = Vec::new();
    for e in &editors {
        for (&l, &sec) in e.latencies_us.iter().zip(&e.sent_second) {
            if per_second.len() <= sec as usize {
                per_second.resize(sec as usize + 1, Vec::new());
            }
            per_second[sec as usize].push(l);
        }
    }
    let timeline: Vec<Value> = per_second
        .iter_mut()
        .enumerate()
        .map(|(sec, v)| {
            v.sort_unstable();
            let p = Percentiles::of(v);
            json!({ "second": sec, "deliveries": p.count, "p50_ms": p.p50, "p99_ms": p.p99, "max_ms": p.max })
        })
        .collect();
    let mut latencies: Vec<u32> = editors.iter().flat_map(|e| e.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    let lat = Percentiles::of(&latencies);
    let expected = sent * (args.editors as u64 - 1);
    let server_cpu = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu - b.cpu),
        _ => None,
    };
    let loadgen_cpu = self_after - self_before;
    let cpu_per_delivery_us = server_cpu.map(|c| c * 1e6 / received.max(1) as f64);
    let cpu_per_update_us = server_cpu.map(|c| c * 1e6 / sent.max(1) as f64);
    let converged = diverged == 0 && server_diverged == 0 && missing == 0;
    let errors = shared.errors.load(Ordering::SeqCst);
    let result = json!({
        "mode": "load",
        "docs": args.docs,
        "editors_per_doc": args.editors,
        "clients": n,
        "rate_per_editor": args.rate,
        "duration_s": args.duration,
        "content": args.content,
        "join_all_s": join_secs,
        "window_s": window,
        "drain_s": drained_after,
        "updates_sent": sent,
        "updates_per_s": sent as f64 / args.duration,
        "deliveries": received,
        "deliveries_expected": expected,
        "deliveries_missing": missing,
        "missing_detail": missing_detail,
        "deliveries_per_s": received as f64 / window,
        "unmatched": shared.unmatched.load(Ordering::SeqCst),
        "errors": errors,
        "first_error": *shared.first_error.lock().unwrap(),
        "apply_failures": shared.apply_failures.load(Ordering::SeqCst),
        "latency_ms": lat.to_json(),
        "converged": converged,
        "docs_diverged_between_clients": diverged,
        "docs_diverged_from_server": server_diverged,
        "server_cpu_s": server_cpu,
        "server_cpu_util": server_cpu.map(|c| c / window),
        "server_cpu_per_delivery_us": cpu_per_delivery_us,
        "server_cpu_per_update_us": cpu_per_update_us,
        "server_rss_peak_during_kib": rss_peak_during,
        "server_vmhwm_kib": after.map(|a| a.hwm_kib),
        "server_threads": after.map(|a| a.threads),
        "loadgen_cpu_s": loadgen_cpu,
        "loadgen_cpu_util": loadgen_cpu / window,
        "postgres_cpu_s": pg_cpu,
        "machine_cpu_util": machine_util,
        // CPU the machine spent on anything but the server, Postgres and the load generator:
        // other work skewing the run.
        "other_cpu_s": machine_util.map(|u| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            (u * cores * window - server_cpu.unwrap_or(0.0) - pg_cpu - loadgen_cpu).max(0.0)
        }),
        "timeline": timeline,
    });
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "== load: {} docs × {} editors × {} keys/s for {} s ({})",
        args.docs, args.editors, args.rate, args.duration, server.store_name
    );
    let _ = writeln!(summary, "  updates sent      {sent} ({:.0}/s)", sent as f64 / args.duration);
    let _ = writeln!(
        summary,
        "  deliveries        {received} of {expected} ({:.0}/s), missing {missing}, errors {errors}",
        received as f64 / window
    );
    let _ = writeln!(
        summary,
        "  latency ms        p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        lat.p50, lat.p95, lat.p99, lat.p999, lat.max
    );
    let _ = writeln!(
        summary,
        "  converged         {converged} (diverged: {diverged} between clients, {server_diverged} from server)"
    );
    if let Some(c) = server_cpu {
        let _ = writeln!(
            summary,
            "  server CPU        {c:.2} s ({:.0}% of a core); {:.2} µs per delivery, {:.2} µs per update",
            100.0 * c / window,
            cpu_per_delivery_us.unwrap_or(0.0),
            cpu_per_update_us.unwrap_or(0.0)
        );
    }
    if let Some(a) = after {
        let _ = writeln!(summary, "  server memory     peak RSS (VmHWM) {:.1} MiB", a.hwm_kib as f64 / 1024.0);
    }
    let _ = writeln!(summary, "  postgres CPU      {pg_cpu:.2} s ({:.0}% of a core)", 100.0 * pg_cpu / window);
    if let Some(u) = machine_util {
        let _ = writeln!(
            summary,
            "  machine CPU       {:.0}% busy ({} cores)",
            100.0 * u,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    let worst: Vec<String> = timeline.iter().map(|t| format!("{:.0}", t["p99_ms"].as_f64().unwrap_or(0.0))).collect();
    let _ = writeln!(summary, "  p99 by second     [{}] ms", worst.join(" "));
    let _ = write!(summary, "  loadgen CPU       {loadgen_cpu:.2} s ({:.0}% of a core)", 100.0 * loadgen_cpu / window);
    if loadgen_cpu / window > 0.9 * args.common.threads as f64 {
        let _ =
            write!(summary, "\n  WARNING: the load generator was near its CPU limit; results understate the server");
    }
    Ok((result, summary))
}

struct Editor {
    conn: Conn,
    doc_id: String,
    doc_index: usize,
    receivers: u32,
    inflight: Arc<InFlight>,
    shared: Arc<Shared>,
    offset: Duration,
    period: Duration,
    content: bool,
}

impl Editor {
    async fn run(
        self,
        joined: Arc<tokio::sync::Barrier>,
        mut start: watch::Receiver<Option<Instant>>,
        mut finish: watch::Receiver<bool>,
    ) -> anyhow::Result<EditorResult> {
        let Editor { mut conn, doc_id, doc_index, receivers, inflight, shared, offset, period, content } = self;
        let typist = Typist::new();
        let joined_state = join_and_wait(&mut conn, &doc_id).await;
        let mut result = EditorResult {
            doc_index,
            typist,
            latencies_us: Vec::with_capacity(1 << 12),
            sent_second: Vec::with_capacity(1 << 12),
            sent: 0,
            received: 0,
            send_failed: false,
        };
        match joined_state {
            Ok((_, state)) => result.typist.apply(&state)?,
            Err(e) => {
                joined.wait().await;
                return Err(e.context("joining"));
            }
        }
        joined.wait().await;
        let start_at = *start.wait_for(|s| s.is_some()).await?.as_ref().unwrap_or(&Instant::now());
        let mut ticker = tokio::time::interval_at((start_at + offset).into(), period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let Conn { mut tx, mut rx, .. } = conn;
        let mut stopped = false;
        loop {
            tokio::select! {
                biased;
                frame = rx.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_))) | None => bail!("the server closed the connection"),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                    };
                    let now = Instant::now();
                    match classify(text.as_str())? {
                        Frame::Ping => tx.send(Message::text("3")).await?,
                        Frame::Update(update) => {
                            if update.document_id != doc_id {
                                continue;
                            }
                            result.received += 1;
                            let hash = fnv1a(&update.update);
                            let sent_at = {
                                let mut pending = inflight.pending.lock().unwrap();
                                match pending.get_mut(&hash) {
                                    Some((at, left)) => {
                                        let at = *at;
                                        *left -= 1;
                                        if *left == 0 {
                                            pending.remove(&hash);
                                        }
                                        Some(at)
                                    }
                                    None => None,
                                }
                            };
                            match sent_at {
                                Some(at) => {
                                    shared.outstanding.fetch_sub(1, Ordering::SeqCst);
                                    result.latencies_us.push(now.duration_since(at).as_micros().min(u32::MAX as u128) as u32);
                                    result.sent_second.push(at.saturating_duration_since(start_at).as_secs().min(u16::MAX as u64) as u16);
                                }
                                None => { shared.unmatched.fetch_add(1, Ordering::Relaxed); }
                            }
                            if result.typist.apply(&update.update).is_err() {
                                shared.apply_failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Frame::Error(text) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            shared.first_error.lock().unwrap().get_or_insert_with(|| text.to_string());
                        }
                        _ => {}
                    }
                }
                _ = ticker.tick(), if !stopped => {
                    if shared.stop_typing.load(Ordering::SeqCst) || result.send_failed {
                        stopped = true;
                        shared.typing.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let update = result.typist.keystroke();
                    let md = if content { Some(result.typist.plain_text()) } else { None };
                    let frame = update_frame(&doc_id, &update, md.as_deref(), None);
                    if receivers > 0 {
                        shared.outstanding.fetch_add(receivers as u64, Ordering::SeqCst);
                        inflight.pending.lock().unwrap().insert(fnv1a(&update), (Instant::now(), receivers));
                    }
                    result.sent += 1;
                    if tx.send(frame).await.is_err() {
                        result.send_failed = true;
                    }
                }
                _ = finish.changed() => break,
            }
        }
        let _ = tx.close().await;
        Ok(result)
    }
}

/// Emits `ydoc:document:join` and waits for the document's state; returns (elapsed, state).
async fn join_and_wait(conn: &mut Conn, doc_id: &str) -> anyhow::Result<(Duration, Vec<u8>)> {
    let started = Instant::now();
    conn.tx.send(event_frame("ydoc:document:join", &json!({ "document_id": doc_id, "user_color": "#4ECDC4" }))).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = tokio::time::timeout_at(deadline, next_text(&mut conn.rx))
            .await
            .map_err(|_| anyhow!("no ydoc:document:state for {doc_id} within 60 s"))??;
        let elapsed = started.elapsed();
        match classify(&text)? {
            Frame::State(state) if state.document_id == doc_id => return Ok((elapsed, state.state)),
            Frame::Ping => conn.tx.send(Message::text("3")).await?,
            Frame::Error(e) => bail!("joining {doc_id}: {e}"),
            _ => {}
        }
    }
}

async fn connect_many(server: &Server, n: usize, concurrency: usize) -> anyhow::Result<Vec<Conn>> {
    let conns: Vec<anyhow::Result<Conn>> = futures_util::stream::iter(0..n)
        .map(|i| async move { connect(server, server.token(i)).await })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    conns.into_iter().collect()
}

#[derive(Debug, Default, Clone, Copy)]
struct Percentiles {
    count: usize,
    mean: f64,
    p50: f64,
    p90: f64,
    p95: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    /// Percentiles in milliseconds of sorted microsecond samples.
    fn of(sorted_us: &[u32]) -> Self {
        if sorted_us.is_empty() {
            return Self::default();
        }
        let at = |q: f64| {
            let i = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len()) - 1;
            sorted_us[i] as f64 / 1000.0
        };
        Self {
            count: sorted_us.len(),
            mean: sorted_us.iter().map(|&v| v as f64).sum::<f64>() / sorted_us.len() as f64 / 1000.0,
            p50: at(0.50),
            p90: at(0.90),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: *sorted_us.last().unwrap_or(&0) as f64 / 1000.0,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90,
            "p95": self.p95, "p99": self.p99, "p999": self.p999, "max": self.max,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Join mode

/// Sends updates with acks, keeping at most `window` in flight; returns how many were refused.
async fn send_acked(
    conn: &mut Conn,
    doc_id: &str,
    updates: impl Iterator<Item = Vec<u8>>,
    window: usize,
) -> anyhow::Result<u64> {
    let mut next_id: u64 = 1;
    let mut in_flight = 0usize;
    let mut refused = 0u64;
    let mut updates = updates.peekable();
    loop {
        while in_flight < window {
            let Some(update) = updates.next() else { break };
            conn.tx.feed(update_frame(doc_id, &update, None, Some(next_id))).await?;
            next_id += 1;
            in_flight += 1;
        }
        conn.tx.flush().await?;
        if in_flight == 0 {
            return Ok(refused);
        }
        let text = tokio::time::timeout(Duration::from_secs(60), next_text(&mut conn.rx))
            .await
            .map_err(|_| anyhow!("no ack within 60 s"))??;
        match classify(&text)? {
            Frame::Ack => {
                in_flight -= 1;
                if !text.contains("\"ok\":true") {
                    refused += 1;
                }
            }
            Frame::Ping => conn.tx.send(Message::text("3")).await?,
            _ => {}
        }
    }
}

struct JoinDoc {
    kind: &'static str,
    history: usize,
    doc_id: String,
    state_bytes: usize,
    cold_us: Vec<u32>,
    warm_us: Vec<u32>,
}

async fn join_bench(server: &Server, args: JoinArgs) -> anyhow::Result<(Value, String)> {
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut histories = args.history.clone();
    histories.sort_unstable();
    let base = *histories.first().ok_or_else(|| anyhow!("--history is empty"))?;
    let mut writer = connect(server, server.token(0)).await?;
    let mut docs: Vec<JoinDoc> = Vec::new();
    let mut build_s = Vec::new();
    for &h in &histories {
        // "grow": h keystrokes of typing; the content grows with the history.
        let doc_id = format!("note:join-{run}-grow-{h}");
        join_and_wait(&mut writer, &doc_id).await?;
        let mut typist = Typist::new();
        let started = Instant::now();
        let updates: Vec<Vec<u8>> = (0..h).map(|_| typist.keystroke()).collect();
        let refused = send_acked(&mut writer, &doc_id, updates.into_iter(), 512).await?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "built {doc_id}: {h} updates through the server in {secs:.1} s ({:.0}/s), {refused} refused",
            h as f64 / secs
        );
        build_s.push(json!({ "doc": doc_id, "updates": h, "seconds": secs, "updates_per_s": h as f64 / secs, "refused": refused }));
        writer.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": doc_id }))).await?;
        let state = typist.full_state();
        docs.push(JoinDoc { kind: "grow", history: h, doc_id, state_bytes: 0, cold_us: vec![], warm_us: vec![] });

        // "fresh": the same content as one update.
        let fresh_id = format!("note:join-{run}-fresh-{h}");
        join_and_wait(&mut writer, &fresh_id).await?;
        send_acked(&mut writer, &fresh_id, std::iter::once(state), 1).await?;
        writer.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": fresh_id }))).await?;
        docs.push(JoinDoc {
            kind: "fresh",
            history: 1,
            doc_id: fresh_id,
            state_bytes: 0,
            cold_us: vec![],
            warm_us: vec![],
        });

        // "steady": the base document's typing, then churn up to h updates: same content as
        // grow-<base>, ten times the history.
        if args.steady && h > base {
            let steady_id = format!("note:join-{run}-steady-{h}");
            join_and_wait(&mut writer, &steady_id).await?;
            let mut typist = Typist::new();
            let mut updates: Vec<Vec<u8>> = (0..base).map(|_| typist.keystroke()).collect();
            updates.extend((base..h).map(|_| typist.churn()));
            let started = Instant::now();
            send_acked(&mut writer, &steady_id, updates.into_iter(), 512).await?;
            eprintln!("built {steady_id}: {h} updates in {:.1} s", started.elapsed().as_secs_f64());
            writer.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": steady_id }))).await?;
            docs.push(JoinDoc {
                kind: "steady",
                history: h,
                doc_id: steady_id,
                state_bytes: 0,
                cold_us: vec![],
                warm_us: vec![],
            });
        }
    }
    let _ = writer.tx.close().await;

    let mut probe = connect(server, server.token(1)).await?;
    let wait = Duration::from_secs_f64(args.unload_wait);
    eprintln!(
        "measuring {} cold joins per document ({} s apart) and {} warm joins...",
        args.cold_samples, args.unload_wait, args.warm_samples
    );
    tokio::time::sleep(wait).await;
    let mut cpu_cold = 0.0;
    for _round in 0..args.cold_samples {
        for doc in docs.iter_mut() {
            let before = server.proc();
            let (elapsed, state) = join_and_wait(&mut probe, &doc.doc_id).await?;
            if let (Some(b), Some(a)) = (before, server.proc()) {
                cpu_cold += a.cpu - b.cpu;
            }
            doc.cold_us.push(elapsed.as_micros() as u32);
            doc.state_bytes = state.len();
            probe.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": doc.doc_id }))).await?;
        }
        tokio::time::sleep(wait).await;
    }
    for doc in docs.iter_mut() {
        // Keep the document live with a second member while the probe joins and leaves.
        let mut holder = connect(server, server.token(0)).await?;
        join_and_wait(&mut holder, &doc.doc_id).await?;
        for _ in 0..args.warm_samples {
            let (elapsed, _) = join_and_wait(&mut probe, &doc.doc_id).await?;
            doc.warm_us.push(elapsed.as_micros() as u32);
            probe.tx.send(event_frame("ydoc:document:leave", &json!({ "document_id": doc.doc_id }))).await?;
        }
        let _ = holder.tx.close().await;
    }
    let _ = probe.tx.close().await;

    let mut rows = Vec::new();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "== join latency ({}; ms; cold = document loaded from the store, warm = live)",
        server.store_name
    );
    let _ = writeln!(
        summary,
        "  {:<8} {:>8} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "kind", "history", "state B", "cold p50", "cold p95", "cold max", "warm p50", "warm p95"
    );
    for doc in &mut docs {
        doc.cold_us.sort_unstable();
        doc.warm_us.sort_unstable();
        let cold = Percentiles::of(&doc.cold_us);
        let warm = Percentiles::of(&doc.warm_us);
        let _ = writeln!(
            summary,
            "  {:<8} {:>8} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            doc.kind, doc.history, doc.state_bytes, cold.p50, cold.p95, cold.max, warm.p50, warm.p95
        );
        rows.push(json!({
            "kind": doc.kind, "history": doc.history, "doc_id": doc.doc_id, "state_bytes": doc.state_bytes,
            "cold_ms": cold.to_json(), "warm_ms": warm.to_json(),
        }));
    }
    let result = json!({
        "mode": "join",
        "histories": histories,
        "cold_samples": args.cold_samples,
        "warm_samples": args.warm_samples,
        "build": build_s,
        "server_cpu_cold_joins_s": cpu_cold,
        "docs": rows,
    });
    Ok((result, summary.trim_end().to_string()))
}

// ---------------------------------------------------------------------------------------------
// Idle mode

async fn idle(server: &Server, args: IdleArgs) -> anyhow::Result<(Value, String)> {
    let n = args.idle;
    let steps = args.steps.clamp(1, n.max(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.proc();
    let self_rss_before = ProcReading::read(std::process::id()).map(|p| p.rss_kib);
    let alive = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(n);
    let mut readings = Vec::new();
    let mut opened = 0usize;
    let started = Instant::now();
    for step in 1..=steps {
        let target = n * step / steps;
        let batch: Vec<anyhow::Result<Conn>> = futures_util::stream::iter(opened..target)
            .map(|i| async move { connect(server, server.token(i)).await })
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
        for conn in batch {
            let conn = conn.with_context(|| format!("opening connection {} (fd limit {})", opened + 1, fd_limit()))?;
            alive.fetch_add(1, Ordering::SeqCst);
            handles.push(tokio::spawn(hold(conn, stop_rx.clone(), alive.clone(), closed.clone())));
            opened += 1;
        }
        // Let the server settle (tasks, buffers) before reading its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(p) = server.proc() {
            eprintln!("  {opened:>6} connections: server RSS {:.1} MiB", p.rss_kib as f64 / 1024.0);
            readings.push(json!({ "connections": opened, "rss_kib": p.rss_kib, "threads": p.threads }));
        }
    }
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let held = alive.load(Ordering::SeqCst);
    let end = server.proc();
    let self_rss = ProcReading::read(std::process::id()).map(|p| p.rss_kib);
    stop_tx.send(true)?;
    for h in handles {
        let _ = h.await;
    }
    let per_conn = match (base, end) {
        (Some(b), Some(e)) => Some((e.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / n as f64),
        _ => None,
    };
    // The marginal cost between the first and the last reading leaves out one-time growth.
    let marginal = match (readings.first(), readings.last()) {
        (Some(f), Some(l)) if l["connections"].as_u64() > f["connections"].as_u64() => {
            let dc = l["connections"].as_u64().unwrap_or(0) as f64 - f["connections"].as_u64().unwrap_or(0) as f64;
            let dr = l["rss_kib"].as_u64().unwrap_or(0) as f64 - f["rss_kib"].as_u64().unwrap_or(0) as f64;
            Some(dr * 1024.0 / dc)
        }
        _ => None,
    };
    let result = json!({
        "mode": "idle",
        "connections": n,
        "held": held,
        "closed_by_server": closed.load(Ordering::SeqCst),
        "hold_s": args.hold,
        "open_s": open_s,
        "server_rss_base_kib": base.map(|b| b.rss_kib),
        "server_rss_end_kib": end.map(|e| e.rss_kib),
        "server_vmhwm_kib": end.map(|e| e.hwm_kib),
        "bytes_per_connection": per_conn,
        "marginal_bytes_per_connection": marginal,
        "readings": readings,
        "loadgen_rss_delta_kib": match (self_rss_before, self_rss) { (Some(a), Some(b)) => Some(b as i64 - a as i64), _ => None },
    });
    let summary = format!(
        "== idle: {n} connections ({}), held {held} for {} s\n  server RSS {:.1} → {:.1} MiB: {:.0} B per connection (marginal {:.0} B)",
        server.store_name,
        args.hold,
        base.map_or(0.0, |b| b.rss_kib as f64 / 1024.0),
        end.map_or(0.0, |e| e.rss_kib as f64 / 1024.0),
        per_conn.unwrap_or(0.0),
        marginal.unwrap_or(0.0),
    );
    Ok((result, summary))
}

/// Keeps a connection open, answering pings, until told to stop.
async fn hold(conn: Conn, mut stop: watch::Receiver<bool>, alive: Arc<AtomicU64>, closed: Arc<AtomicU64>) {
    let Conn { mut tx, mut rx, .. } = conn;
    loop {
        tokio::select! {
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    if tx.send(Message::text("3")).await.is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    alive.fetch_sub(1, Ordering::SeqCst);
                    closed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            },
            _ = stop.changed() => break,
        }
    }
    let _ = tx.close().await;
}
