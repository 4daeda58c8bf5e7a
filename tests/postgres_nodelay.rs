//! The Postgres store's connections run without Nagle's algorithm (sqlx 0.9.0 leaves it on; see
//! `store/nodelay.rs`). Its own test binary, so no other test's connections share the process.

mod common;

use std::os::fd::BorrowedFd;

/// (port of the peer, TCP_NODELAY) for every TCP socket of this process.
fn tcp_sockets() -> Vec<(u16, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // SAFETY: listed as open a moment ago; only getsockopt/getpeername, never closed here.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let Ok(nodelay) = socket.tcp_nodelay() else { continue };
        if let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) {
            found.push((peer.port(), nodelay));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_have_tcp_nodelay() {
    let db = common::TestDb::postgres().await;
    db.store.ping().await.expect("ping");
    let port: u16 = db.url.parse::<sqlx::postgres::PgConnectOptions>().expect("url").get_port();
    let to_postgres: Vec<bool> = tcp_sockets().into_iter().filter(|(p, _)| *p == port).map(|(_, n)| n).collect();
    assert!(
        !to_postgres.is_empty(),
        "the store holds a TCP connection to Postgres (a Unix socket URL skips this test's point)"
    );
    assert!(to_postgres.iter().all(|&nodelay| nodelay), "{to_postgres:?}");
    db.cleanup().await;
}
