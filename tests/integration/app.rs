//! Starting the server for a test, in one place: in this process ([`spawn_app`]: the
//! real `http::serve_with` on a free port over a test dataset's store) or as a
//! `flightbench serve` process ([`ServeProcess`], which reads the addresses the
//! server prints). Nothing here sleeps: a server is ready when its listener is bound
//! (in-process) or when it has printed its address (a process).

use crate::helpers::TestDataset;
use flightbench::http::{AppState, ServerConfig, serve_with};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The server running in this process. Dropping it stops the server without waiting;
/// [`TestApp::shutdown`] stops it and waits for it to finish.
pub struct TestApp {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Serves `ds` with `config` (over TLS when `tls` is given) on `127.0.0.1:<free port>`.
pub async fn spawn_app(ds: &TestDataset, config: ServerConfig, tls: Option<tokio_rustls::TlsAcceptor>) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState::new(ds.store.clone(), config);
    let server = tokio::spawn(serve_with(listener, state, tls, async move {
        let _ = stopped.await;
    }));
    TestApp { addr, stop: Some(stop), server: Some(server) }
}

impl TestApp {
    /// Stops accepting, lets requests in flight finish, and waits for the server.
    pub async fn shutdown(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), server).await.expect("server stops").unwrap().unwrap();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
    }
}

/// A `flightbench serve` process on free ports.
pub struct ServeProcess {
    pub child: Child,
    /// The API address, from the first line `serve` prints.
    pub api: SocketAddr,
    /// The admin listener's address, when it has one (the second line).
    pub admin: Option<SocketAddr>,
    /// The rest of what `serve` prints, kept open so its writes never meet a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl ServeProcess {
    /// `flightbench [global…] serve --addr 127.0.0.1:0 --dir DIR [args…]`, its stdout
    /// piped (and its stderr, with `piped_stderr`); returns once it has printed where
    /// it listens.
    pub async fn start(dir: &Path, global: &[&str], args: &[&str], piped_stderr: bool) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightbench"))
            .args(global)
            .args(["serve", "--addr", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if piped_stderr { Stdio::piped() } else { Stdio::inherit() })
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
                .await
                .expect("serve prints within 30 s")
                .unwrap()
                .expect("serve printed a line")
        };
        let first = next().await;
        assert!(first.starts_with("listening on "), "{first}");
        let api = address_in(&first);
        let admin = if args.contains(&"--no-admin") {
            None
        } else {
            let line = next().await;
            assert!(line.starts_with("admin (CPU profiles) on http://"), "{line}");
            Some(address_in(&line))
        };
        ServeProcess { child, api, admin, _stdout: stdout }
    }
}

/// The `host:port` after the first `http://` or `https://` in a line `serve` prints.
pub fn address_in(line: &str) -> SocketAddr {
    let rest = line.split("://").nth(1).unwrap_or_else(|| panic!("no address in {line:?}"));
    rest.split(['/', ' ', ',']).next().unwrap().parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
}
