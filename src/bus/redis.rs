//! The cluster bus on Redis (fred), using Open WebUI's key names where they exist.
//!
//! Liveness: each instance refreshes `{prefix}:tandem:instance:{id}` (30 s expiry) every 10 s.
//! Session-pool entries and document session sets left behind by an instance that died are
//! ignored on read and removed lazily (Open WebUI keeps such zombies forever, weakness 17).

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use async_trait::async_trait;
use fred::{
    clients::SubscriberClient,
    prelude::{
        Builder, Client, ClientLike, Config, EventInterface, Expiration, HashesInterface, KeysInterface, LuaInterface,
        PubsubInterface, ReconnectPolicy, SetsInterface,
    },
    types::RespVersion,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, DocUpdateMessage, DocUpdateReceiver, Result, SessionEntry, UsagePool, doc_key_part};

/// Sets `sid`'s last use of a model inside the model's JSON entry, atomically (Open WebUI's
/// read-modify-write from Python loses updates between instances, weakness 20).
const TOUCH_USAGE: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local t = {}
if cur then t = cjson.decode(cur) end
t[ARGV[2]] = { updated_at = tonumber(ARGV[3]) }
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(t))
return 1
"#;

/// Removes `sid` from each model given in ARGV[2..]; drops models left empty.
const REMOVE_USAGE: &str = r#"
for i = 2, #ARGV do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur then
    local t = cjson.decode(cur)
    t[ARGV[1]] = nil
    if next(t) == nil then redis.call('HDEL', KEYS[1], ARGV[i]) else redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(t)) end
  end
end
return 1
"#;

/// Drops entries older than ARGV[1] and models left empty.
const SWEEP_USAGE: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, t = pcall(cjson.decode, all[i + 1])
  if ok and type(t) == 'table' then
    local kept = {}
    local any = false
    for sid, v in pairs(t) do
      if type(v) == 'table' and tonumber(v.updated_at) and tonumber(v.updated_at) >= tonumber(ARGV[1]) then
        kept[sid] = v
        any = true
      end
    end
    if any then redis.call('HSET', KEYS[1], all[i], cjson.encode(kept)) else redis.call('HDEL', KEYS[1], all[i]) end
  end
end
return 1
"#;

/// Takes a lock that is free, or renews one this owner holds.
const TRY_LOCK: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
elseif v == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Releases a lock only if this owner holds it.
const RELEASE_LOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// How long an instance counts as alive after its last heartbeat, unless
/// `TANDEM_INSTANCE_TTL_SECS` says otherwise. Instances beat at a third of it, so two missed
/// beats are survived.
const DEFAULT_INSTANCE_TTL_SECS: i64 = 30;
/// Incoming cross-instance updates waiting for the engine; beyond this, the bus drops and the
/// engine's gap detection fetches the missing updates from the store.
const INBOX: usize = 4096;

pub struct RedisBus {
    instance: String,
    instance_ttl_secs: i64,
    prefix: String,
    client: Client,
    subscriber: SubscriberClient,
    doc_updates: Mutex<Option<DocUpdateReceiver>>,
    stop: CancellationToken,
}

/// Builds a fred client configured as STACK.md found necessary: RESP3, reconnecting, and with
/// a command timeout so a Redis outage turns into errors instead of hung handlers.
pub fn builder(url: &str) -> Result<Builder> {
    let mut config = Config::from_url(url)?;
    config.version = RespVersion::RESP3;
    let mut builder = Builder::from_config(config);
    builder
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(5));
    Ok(builder)
}

impl RedisBus {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let builder = builder(url)?;
        let client = builder.build()?;
        client.init().await?;
        let subscriber = builder.build_subscriber_client()?;
        subscriber.init().await?;
        let instance = uuid::Uuid::new_v4().to_string();
        let instance_ttl_secs = std::env::var("TANDEM_INSTANCE_TTL_SECS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&v| v >= 3)
            .unwrap_or(DEFAULT_INSTANCE_TTL_SECS);
        let bus = Self {
            instance,
            instance_ttl_secs,
            prefix: prefix.to_string(),
            client,
            subscriber,
            doc_updates: Mutex::new(None),
            stop: CancellationToken::new(),
        };
        bus.beat().await?;
        bus.spawn_heartbeat();
        bus.spawn_doc_subscription().await?;
        Ok(bus)
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.prefix)
    }

    fn session_pool(&self) -> String {
        self.key("session_pool")
    }

    fn instance_key(&self, instance: &str) -> String {
        self.key(&format!("tandem:instance:{instance}"))
    }

    fn doc_users_key(&self, doc_id: &str) -> String {
        self.key(&format!("ydoc:documents:{}:users", doc_key_part(doc_id)))
    }

    fn doc_channel(&self) -> String {
        self.key("tandem:doc-updates")
    }

    async fn beat(&self) -> Result<()> {
        let key = self.instance_key(&self.instance);
        self.client.set::<(), _, _>(key, now_secs(), Some(Expiration::EX(self.instance_ttl_secs)), None, false).await?;
        Ok(())
    }

    fn spawn_heartbeat(&self) {
        let client = self.client.clone();
        let key = self.instance_key(&self.instance);
        let stop = self.stop.clone();
        let ttl = self.instance_ttl_secs;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs((ttl / 3) as u64));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {
                        let beat = client
                            .set::<(), _, _>(&key, now_secs(), Some(Expiration::EX(ttl)), None, false)
                            .await;
                        if let Err(error) = beat {
                            tracing::warn!(%error, "redis heartbeat failed");
                        }
                    }
                }
            }
        });
    }

    async fn spawn_doc_subscription(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel(INBOX);
        *self.doc_updates.lock().unwrap_or_else(|p| p.into_inner()) = Some(rx);
        let channel = self.doc_channel();
        let mut messages = self.subscriber.message_rx();
        self.subscriber.subscribe(channel.clone()).await?;
        // fred does not resubscribe after a reconnect on its own (STACK.md §5).
        let mut reconnects = self.subscriber.reconnect_rx();
        let resubscriber = self.subscriber.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    event = reconnects.recv() => {
                        if event.is_err() { break; }
                        if let Err(error) = resubscriber.subscribe(channel.clone()).await {
                            tracing::warn!(%error, "redis resubscribe failed");
                        }
                    }
                }
            }
        });
        let own = self.instance.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    m = messages.recv() => m,
                };
                let message = match message {
                    Ok(message) => message,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "bus lagged; documents will catch up from the store");
                        continue;
                    }
                    Err(_) => break,
                };
                let Some(bytes) = message.value.as_bytes() else { continue };
                match DocUpdateMessage::decode(bytes) {
                    Ok(update) if update.instance == own => {}
                    Ok(update) => {
                        if tx.try_send(update).is_err() {
                            tracing::warn!("document inbox full; dropping a bus update (recovered from the store)");
                        }
                    }
                    Err(error) => tracing::warn!(%error, "ignoring malformed bus message"),
                }
            }
        });
        Ok(())
    }

    /// Which of these instances are alive.
    async fn live_instances(&self, instances: HashSet<&str>) -> Result<HashSet<String>> {
        let mut live = HashSet::new();
        for instance in instances {
            if instance == self.instance {
                live.insert(instance.to_string());
                continue;
            }
            let exists: i64 = self.client.exists(self.instance_key(instance)).await?;
            if exists > 0 {
                live.insert(instance.to_string());
            }
        }
        Ok(live)
    }
}

fn now_secs() -> i64 {
    crate::store::now_ms() / 1000
}

#[async_trait]
impl Bus for RedisBus {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn instance_id(&self) -> &str {
        &self.instance
    }

    async fn ping(&self) -> Result<()> {
        self.client.ping::<()>(None).await?;
        Ok(())
    }

    async fn put_session(&self, sid: &str, entry: &SessionEntry) -> Result<()> {
        let json = serde_json::to_string(entry).map_err(|e| BusError::Malformed(e.to_string()))?;
        self.client.hset::<(), _, _>(self.session_pool(), (sid, json)).await?;
        Ok(())
    }

    async fn remove_session(&self, sid: &str) -> Result<()> {
        self.client.hdel::<(), _, _>(self.session_pool(), sid).await?;
        Ok(())
    }

    async fn session(&self, sid: &str) -> Result<Option<SessionEntry>> {
        let json: Option<String> = self.client.hget(self.session_pool(), sid).await?;
        let Some(entry) = json.and_then(|j| serde_json::from_str::<SessionEntry>(&j).ok()) else {
            return Ok(None);
        };
        let live = self.live_instances(HashSet::from([entry.instance.as_str()])).await?;
        Ok(live.contains(&entry.instance).then_some(entry))
    }

    async fn sessions(&self) -> Result<Vec<(String, SessionEntry)>> {
        let all: HashMap<String, String> = self.client.hgetall(self.session_pool()).await?;
        // Entries written by Open WebUI itself (sharing the prefix) do not parse; skip them.
        let parsed: Vec<(String, SessionEntry)> =
            all.into_iter().filter_map(|(sid, json)| serde_json::from_str(&json).ok().map(|e| (sid, e))).collect();
        let live = self.live_instances(parsed.iter().map(|(_, e)| e.instance.as_str()).collect()).await?;
        let (alive, dead): (Vec<_>, Vec<_>) = parsed.into_iter().partition(|(_, e)| live.contains(&e.instance));
        if !dead.is_empty() {
            let sids: Vec<String> = dead.into_iter().map(|(sid, _)| sid).collect();
            self.client.hdel::<(), _, _>(self.session_pool(), sids).await?;
        }
        Ok(alive)
    }

    async fn add_doc_session(&self, doc_id: &str, sid: &str) -> Result<()> {
        self.client.sadd::<(), _, _>(self.doc_users_key(doc_id), sid).await?;
        Ok(())
    }

    async fn remove_doc_session(&self, doc_id: &str, sid: &str) -> Result<()> {
        self.client.srem::<(), _, _>(self.doc_users_key(doc_id), sid).await?;
        Ok(())
    }

    async fn doc_sessions(&self, doc_id: &str) -> Result<Vec<String>> {
        let key = self.doc_users_key(doc_id);
        let sids: Vec<String> = self.client.smembers(&key).await?;
        if sids.is_empty() {
            return Ok(sids);
        }
        let entries: Vec<Option<String>> = self.client.hmget(self.session_pool(), sids.clone()).await?;
        let entries: Vec<Option<SessionEntry>> =
            entries.into_iter().map(|j| j.and_then(|j| serde_json::from_str(&j).ok())).collect();
        let live = self.live_instances(entries.iter().flatten().map(|e| e.instance.as_str()).collect()).await?;
        let mut alive = Vec::new();
        let mut dead = Vec::new();
        for (sid, entry) in sids.into_iter().zip(entries) {
            match entry {
                Some(e) if live.contains(&e.instance) => alive.push(sid),
                _ => dead.push(sid),
            }
        }
        if !dead.is_empty() {
            self.client.srem::<(), _, _>(&key, dead).await?;
        }
        alive.sort();
        Ok(alive)
    }

    async fn publish_doc_update(&self, message: &DocUpdateMessage) -> Result<()> {
        let bytes = message.encode();
        self.client.publish::<(), _, _>(self.doc_channel(), bytes).await?;
        Ok(())
    }

    fn take_doc_updates(&self) -> Option<DocUpdateReceiver> {
        self.doc_updates.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    async fn touch_usage(&self, model: &str, sid: &str, now_secs: i64) -> Result<()> {
        let keys = vec![self.key("usage_pool")];
        let args = vec![model.to_string(), sid.to_string(), now_secs.to_string()];
        self.client.eval::<i64, _, _, _>(TOUCH_USAGE, keys, args).await?;
        Ok(())
    }

    async fn remove_usage(&self, sid: &str, models: &[String]) -> Result<()> {
        if models.is_empty() {
            return Ok(());
        }
        let mut args = vec![sid.to_string()];
        args.extend(models.iter().cloned());
        self.client.eval::<i64, _, _, _>(REMOVE_USAGE, vec![self.key("usage_pool")], args).await?;
        Ok(())
    }

    async fn usage(&self) -> Result<UsagePool> {
        let all: HashMap<String, String> = self.client.hgetall(self.key("usage_pool")).await?;
        Ok(all
            .into_iter()
            .filter_map(|(model, json)| {
                let sessions: HashMap<String, serde_json::Value> = serde_json::from_str(&json).ok()?;
                let sessions = sessions
                    .into_iter()
                    .filter_map(|(sid, v)| v.get("updated_at").and_then(|t| t.as_f64()).map(|t| (sid, t as i64)))
                    .collect();
                Some((model, sessions))
            })
            .collect())
    }

    async fn sweep_usage(&self, cutoff_secs: i64) -> Result<()> {
        self.client
            .eval::<i64, _, _, _>(SWEEP_USAGE, vec![self.key("usage_pool")], vec![cutoff_secs.to_string()])
            .await?;
        Ok(())
    }

    async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool> {
        let args = vec![self.instance.clone(), ttl.as_secs().max(1).to_string()];
        let held: i64 = self.client.eval(TRY_LOCK, vec![self.key(name)], args).await?;
        Ok(held == 1)
    }

    async fn release_lock(&self, name: &str) -> Result<()> {
        self.client.eval::<i64, _, _, _>(RELEASE_LOCK, vec![self.key(name)], vec![self.instance.clone()]).await?;
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        // Forget this instance's sessions now rather than waiting for its heartbeat to expire.
        if let Ok(all) = self.client.hgetall::<HashMap<String, String>, _>(self.session_pool()).await {
            let mine: Vec<String> = all
                .into_iter()
                .filter(|(_, json)| {
                    serde_json::from_str::<SessionEntry>(json).is_ok_and(|e| e.instance == self.instance)
                })
                .map(|(sid, _)| sid)
                .collect();
            if !mine.is_empty() {
                let _ = self.client.hdel::<(), _, _>(self.session_pool(), mine).await;
            }
        }
        let _ = self.client.del::<(), _>(self.instance_key(&self.instance)).await;
        let _ = self.subscriber.quit().await;
        let _ = self.client.quit().await;
    }
}
