//! The server: wires the store, bus, directory, document engine, Socket.IO layer and HTTP
//! routes together, and shuts them down in order.
//!
//! [`run`] takes an already-bound listener and a shutdown future, so tests bind port 0 and
//! stop the server when they like.

use std::{
    future::{Future, IntoFuture},
    sync::Arc,
    time::Duration,
};

use axum::{Router, http::HeaderValue, serve::ListenerExt};
use socketioxide::{
    SocketIo, TransportType,
    adapter::{Adapter, Emitter, LocalAdapter},
    handler::ConnectHandler,
    layer::SocketIoLayer,
};
use socketioxide_redis::{FredAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

use crate::{
    auth::TokenKeys,
    bus::{DynBus, LocalBus, RedisBus},
    config::{Config, Cors, Manager, Transports},
    directory::StandaloneDirectory,
    docs::{Docs, EngineSettings},
    realtime::{self, docs::IoSink, session},
    state::{AppState, Inner},
    store,
};

/// Everything needed to build a server, for callers (tests) that tune the engine.
pub struct ServerOptions {
    pub config: Config,
    pub engine: EngineSettings,
}

impl ServerOptions {
    pub fn new(config: Config) -> Self {
        let engine = EngineSettings {
            limits: config.limits,
            snapshot_every_updates: config.history.snapshot_every_updates,
            idle_unload: config.history.idle_unload,
            keep_auto_versions: config.history.keep_auto_versions,
            ..EngineSettings::default()
        };
        Self { config, engine }
    }
}

/// Runs the server on `listener` until `shutdown` resolves, then closes every socket, flushes
/// the documents and returns.
pub async fn run(
    options: ServerOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ServerOptions { config, engine } = options;
    let store = store::open(&config.database_url).await?;
    let bus: DynBus = match &config.manager {
        Manager::Local => Arc::new(LocalBus::new()),
        Manager::Redis { url } => Arc::new(RedisBus::connect(url, &config.redis_key_prefix).await?),
    };
    let directory = Arc::new(StandaloneDirectory::new(store.clone()));
    let docs = Docs::new(store.clone(), bus.clone(), engine);
    let state = AppState::new(Inner {
        keys: TokenKeys::new(&config.secret),
        config: config.clone(),
        store,
        directory,
        bus,
        docs,
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
        content_saver: Default::default(),
        rooms: Default::default(),
        upstream: config.upstream.clone(),
    });

    let builder = SocketIo::builder()
        .req_path("/ws/socket.io")
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .max_payload(frame_limit(&config) as u64)
        .ws_max_message_size(frame_limit(&config))
        .ws_max_frame_size(frame_limit(&config))
        .max_buffer_size(1024)
        // Idle connections dominate a collaboration server's memory; tungstenite's 4 KiB default
        // read buffer would be a sixth of an idle socket's cost, and large frames just take more
        // reads.
        .ws_read_buffer_size(1024)
        .with_state(state.clone());
    let builder = match config.transports {
        Transports::WebSocketOnly => builder.transports([TransportType::Websocket]),
        Transports::PollingOnly => builder.transports([TransportType::Polling]),
    };
    let app = match &config.manager {
        Manager::Local => {
            let (layer, io) = builder.build_layer();
            io.ns("/", realtime::on_connect::<LocalAdapter>.with(session::authenticate::<LocalAdapter>));
            finish(state.clone(), layer, io)
        }
        Manager::Redis { url } => {
            let client = crate::bus::redis_builder(url)?.build_subscriber_client()?;
            let adapter = RedisAdapterCtr::new_with_fred_config(
                client,
                RedisAdapterConfig::new().with_prefix(format!("{}-tandem-sio", config.redis_key_prefix)),
            )
            .await?;
            let (layer, io) = builder.with_adapter::<FredAdapter<Emitter>>(adapter).build_layer();
            io.ns(
                "/",
                realtime::on_connect::<FredAdapter<Emitter>>.with(session::authenticate::<FredAdapter<Emitter>>),
            )
            .await?;
            finish(state.clone(), layer, io)
        }
    };

    state.tasks.spawn(crate::realtime::chat::sweep_usage_until_shutdown(state.clone()));

    let addr = listener.local_addr()?;
    // "listening on" comes last: scripts and tests wait for it as the readiness line, so
    // everything the operator needs is already in the log when it appears.
    tracing::info!(
        database = %redact(&config.database_url),
        bus = state.bus.kind(),
        "data goes to {}",
        redact(&config.database_url)
    );
    tracing::info!("mint a token: tandem token --user-id alice --name Alice");
    if config.demo_signin {
        tracing::info!(
            "web demo: open http://{addr}/ in two windows (demo sign-in is on; it is off once WEBUI_SECRET_KEY is set)"
        );
    }
    tracing::info!("listening on http://{addr} (Socket.IO at /ws/socket.io)");

    let cancelled = state.shutdown.clone();
    let closing = app.closer;
    let mut serving = tokio::spawn(
        // Small frames (a keystroke's update) must leave at once; Nagle's algorithm would hold
        // them back waiting for the previous segment's ACK.
        axum::serve(
            listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    tracing::debug!(%error, "cannot set TCP_NODELAY");
                }
            }),
            app.router,
        )
        .with_graceful_shutdown(async move {
            cancelled.cancelled().await;
            closing.await;
        })
        .into_future(),
    );
    tokio::select! {
        result = &mut serving => {
            // The server stopped on its own: an accept error.
            result??;
        }
        _ = shutdown => {}
    }
    tracing::info!("shutting down: closing sockets");
    state.shutdown.cancel();
    // A long-poll request can stay open until its next ping; don't wait for it past the grace.
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
        Ok(result) => result??,
        Err(_) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            serving.abort();
        }
    }

    tracing::info!("flushing documents");
    state.docs.shutdown().await;
    state.tasks.close();
    state.tasks.wait().await;
    state.bus.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// How long open HTTP connections get to finish after the sockets were closed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The largest Socket.IO message accepted: big enough that an update at the size limit,
/// sent as a JSON number array (up to 4 characters a byte) with its content rendering,
/// reaches the handler and is refused with an error instead of dropping the connection.
fn frame_limit(config: &Config) -> usize {
    config.limits.max_update_bytes.saturating_mul(5).saturating_add(4 << 20)
}

struct Built {
    router: Router,
    closer: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

fn finish<A: Adapter>(state: AppState, layer: SocketIoLayer<A>, io: SocketIo<A>) -> Built {
    state.docs.set_sink(Arc::new(IoSink(io.clone())));
    let _ = state.rooms.set(Arc::new(crate::realtime::rooms::IoRooms(io.clone())));
    let router = crate::http::router(state.clone())
        .layer(layer)
        .layer(axum::middleware::map_request(own_request_head))
        .layer(cors(&state.config.cors));
    let closer = Box::pin(async move {
        // Bounded: a socket that never acknowledges its close must not hold the process.
        let _ = tokio::time::timeout(Duration::from_secs(5), io.close()).await;
    });
    Built { router, closer }
}

/// Copies the request's URI and header values out of hyper's connection read buffer.
///
/// hyper parses them as slices of that buffer (16 KiB once grown), axum keeps a clone of the URI
/// (`OriginalUri`), and engineioxide keeps the request head for the socket's whole life, so every
/// open Socket.IO connection would pin its read buffer long after the WebSocket upgrade. Copying
/// a few hundred bytes per request frees it (bench/README.md, idle connections).
async fn own_request_head(mut request: axum::extract::Request) -> axum::extract::Request {
    let mut headers = axum::http::HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        headers.append(name.clone(), HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone()));
    }
    *request.headers_mut() = headers;
    if let Ok(uri) = request.uri().to_string().parse::<axum::http::Uri>() {
        *request.uri_mut() = uri;
    }
    if let Some(original) = request.extensions_mut().get_mut::<axum::extract::OriginalUri>()
        && let Ok(uri) = original.0.to_string().parse()
    {
        original.0 = uri;
    }
    request
}

fn cors(cors: &Cors) -> CorsLayer {
    match cors {
        Cors::Any => CorsLayer::new().allow_origin(Any).allow_methods(Any).allow_headers(Any),
        Cors::Origins(origins) => {
            let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
            CorsLayer::new().allow_origin(AllowOrigin::list(origins)).allow_methods(Any).allow_headers(Any)
        }
    }
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, Uri};
    use bytes::Bytes;

    /// The request head must not point into the connection's read buffer once it has been
    /// through `own_request_head`, or that buffer lives as long as the socket.
    #[tokio::test]
    async fn the_request_head_no_longer_borrows_the_read_buffer() {
        let buffer = Bytes::from(b"/ws/socket.io/?EIO=4&transport=websocket;websocket;http://example".to_vec());
        let inside = |bytes: &[u8]| buffer.as_ptr_range().contains(&bytes.as_ptr());
        let uri = Uri::from_maybe_shared(buffer.slice(0..40)).unwrap();
        let mut request = axum::extract::Request::new(axum::body::Body::empty());
        *request.uri_mut() = uri.clone();
        request.headers_mut().insert("upgrade", HeaderValue::from_maybe_shared(buffer.slice(41..50)).unwrap());
        request.headers_mut().append("origin", HeaderValue::from_maybe_shared(buffer.slice(51..)).unwrap());
        request.extensions_mut().insert(axum::extract::OriginalUri(uri));
        assert!(inside(request.headers()["upgrade"].as_bytes()), "the test starts from borrowed slices");

        let request = super::own_request_head(request).await;
        assert_eq!(request.uri().to_string(), "/ws/socket.io/?EIO=4&transport=websocket");
        assert_eq!(request.headers()["upgrade"], "websocket");
        assert_eq!(request.headers()["origin"], "http://example");
        for value in request.headers().values() {
            assert!(!inside(value.as_bytes()));
        }
        assert!(!inside(request.uri().path().as_bytes()));
        let original = request.extensions().get::<axum::extract::OriginalUri>().unwrap();
        assert_eq!(original.0, *request.uri());
        assert!(!inside(original.0.path().as_bytes()));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(super::redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }
}
