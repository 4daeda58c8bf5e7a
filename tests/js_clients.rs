//! Runs the JavaScript suites in `tests/js` (the official `socket.io-client` and `yjs` against
//! the real server) from `cargo test`, once per store and bus backend.

use std::{path::Path, process::Command, sync::Mutex};

/// `npm ci` must not run twice at once in one checkout.
static NPM: Mutex<()> = Mutex::new(());
/// The suites start many servers each; one suite at a time keeps a small machine responsive
/// enough that no event waits run into their timeouts.
static SUITES: Mutex<()> = Mutex::new(());

fn ensure_node_modules(dir: &Path) {
    let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
    if dir.join("node_modules/socket.io-client").exists() && dir.join("node_modules/yjs").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is needed for the JavaScript client tests (Node 20)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// Runs every `*.test.mjs` matching `files` with the given backends; panics with the output on
/// failure.
fn run_suites(store: &str, bus: &str, files: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    ensure_node_modules(&dir);
    let _one_at_a_time = SUITES.lock().unwrap_or_else(|p| p.into_inner());
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(files)
        .current_dir(&dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("TANDEM_TEST_BACKEND", store)
        .env("TANDEM_TEST_BUS", bus)
        .env("NO_COLOR", "1")
        .output()
        .expect("node is needed for the JavaScript client tests (Node 20)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "JavaScript suites failed on {store}/{bus}:\n{stdout}\n{stderr}");
}

const CLIENT_SUITES: &[&str] = &["session.test.mjs", "docs.test.mjs", "history.test.mjs", "realtime.test.mjs"];

#[test]
fn js_clients_on_sqlite_with_local_bus() {
    run_suites("sqlite", "local", CLIENT_SUITES);
}

#[test]
fn js_clients_on_postgres_with_redis_bus() {
    run_suites("postgres", "redis", CLIENT_SUITES);
}

#[test]
fn js_cluster_on_sqlite_and_postgres_with_redis() {
    run_suites("sqlite", "redis", &["cluster.test.mjs"]);
    run_suites("postgres", "redis", &["cluster.test.mjs"]);
}
