//! Turns Nagle's algorithm off on the process's connections to Postgres.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` on its sockets (launchbadge/sqlx#4335, fixed upstream
//! after 0.9.0, the newest release available). With Nagle on, a message larger than the
//! socket's send buffer (a group commit of a few hundred updates, the snapshot of a document
//! over ~16 KiB, a large paste) leaves in two writes, and the second waits for Postgres' delayed
//! ACK: 40 ms added to that commit and to every update queued behind it. Measured: a
//! 392-update group commit took 45 ms over TCP and 3 ms over a Unix socket. sqlx gives no access
//! to its socket, so after each new connection this finds the process's TCP sockets whose peer
//! is the Postgres port and sets `TCP_NODELAY` on them. Setting it on a socket that already has
//! it, or on another connection to that port, is harmless. Remove once sqlx sets it again.

/// Sets `TCP_NODELAY` on every TCP socket of this process connected to `port`; returns how
/// many it changed. A no-op (0) where `/proc/self/fd` does not exist.
///
/// A server holding 10,000 client sockets walks all of them here, so each descriptor costs one
/// system call where possible: the `TCP_NODELAY` read comes first, because the accepted client
/// sockets already have it (`server.rs`) and anything that is not a TCP socket fails it
/// (`ENOTSOCK`, `EOPNOTSUPP`); only TCP sockets without it get their peer looked up.
pub(crate) fn disable_nagle_towards(port: u16) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter(|&fd| set_nodelay_if_peer_port(fd, port))
        .count()
}

#[cfg(unix)]
fn set_nodelay_if_peer_port(fd: i32, port: u16) -> bool {
    use std::os::fd::BorrowedFd;
    // SAFETY: the descriptor was listed as open in this process a moment ago and is only
    // borrowed for get/setsockopt and getpeername; nothing is read from or written to it and it
    // is never closed here. On a descriptor that is not a socket these calls just fail; if it
    // was closed since, they fail with EBADF; if its number was reused, the new descriptor goes
    // through the same checks before anything is set.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&fd);
    if socket.tcp_nodelay().unwrap_or(true) {
        return false;
    }
    let to_port = socket.peer_addr().ok().and_then(|addr| addr.as_socket()).is_some_and(|addr| addr.port() == port);
    to_port && socket.set_tcp_nodelay(true).is_ok()
}

#[cfg(not(unix))]
fn set_nodelay_if_peer_port(_fd: i32, _port: u16) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sets_nodelay_only_on_sockets_to_that_port() {
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_target = TcpStream::connect(target.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_target.nodelay().unwrap(), "a new socket starts with Nagle on");

        assert!(super::disable_nagle_towards(target.local_addr().unwrap().port()) >= 1);
        assert!(to_target.nodelay().unwrap());
        assert!(!to_other.nodelay().unwrap());
    }
}
