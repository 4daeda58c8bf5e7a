//! Runs the web demo's browser tests (`web-demo/tests/*.test.mjs`: headless Debian chromium
//! driven by playwright-core against the real server) from `cargo test`.

use std::{path::Path, process::Command, sync::Mutex};

const CHROMIUM: &str = "/usr/bin/chromium";

/// `npm ci` must not run twice at once in one checkout.
static NPM: Mutex<()> = Mutex::new(());

fn web_demo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web-demo")
}

fn ensure_node_modules(dir: &Path) {
    let _guard = NPM.lock().unwrap_or_else(|p| p.into_inner());
    if dir.join("node_modules/playwright-core").exists() && dir.join("node_modules/esbuild").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is needed for the web demo's browser tests (Node 20)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

#[test]
fn web_demo_in_a_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the web demo's browser tests need Debian's chromium. \
         Install it with `apt-get install -y chromium` (playwright never downloads a browser here)."
    );
    let dir = web_demo();
    ensure_node_modules(&dir);
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec", "tests/"])
        .current_dir(&dir)
        .env("TANDEM_BIN", env!("CARGO_BIN_EXE_tandem"))
        .env("CHROMIUM_PATH", CHROMIUM)
        .env_remove("WEBUI_SECRET_KEY")
        .env_remove("WEBUI_JWT_SECRET_KEY")
        .env_remove("WEB_DEMO_DEV_FALLBACK")
        .env("NO_COLOR", "1")
        .output()
        .expect("node is needed for the web demo's browser tests (Node 20)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "web demo browser tests failed:\n{stdout}\n{stderr}");
}

/// The server embeds the committed `web-demo/dist/`: it must be what `npm run build` makes from
/// `web-demo/src/`.
#[test]
fn web_demo_dist_matches_its_sources() {
    let dir = web_demo();
    ensure_node_modules(&dir);
    let output = Command::new("node")
        .args(["build.mjs", "--check"])
        .current_dir(&dir)
        .output()
        .expect("node is needed to check the web demo's build (Node 20)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
