//! `flightbench up`: a whole split topology from one file, as `flightbench serve`
//! processes of this same program: the services first (so `127.0.0.1:0` works: each
//! one's address is read from its first line), then a gateway whose destinations are
//! those addresses. Every process's output goes to stderr, each line prefixed with
//! its name (`[query-1] …`); stdout gets one line per process (name, pid, address)
//! and then `up: gateway on http://…` once the gateway's `/readyz` answers 200.
//! SIGINT or SIGTERM stops the gateway first (no new requests), then the services,
//! each with SIGTERM and up to 10 s to finish, then SIGKILL. A process that exits by
//! itself stops the rest and makes `up` fail, naming it.

use super::{Refused, runtime::shutdown_signal};
use crate::failure::Failure;
use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The topology file (JSON; see the README's "Splitting the service"): the dataset,
    /// the broker, each role's addresses and extra `serve` flags, the gateway.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Where the generated gateway configuration is written (default: beside the
    /// topology file, `<name>.gateway.json`).
    #[arg(long)]
    pub gateway_config: Option<PathBuf>,
}

/// The topology file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpFile {
    /// The dataset every service opens (`serve --dir`).
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// `serve --bus-url` and `--bus-exchange` for every service (their defaults when absent).
    pub bus_url: Option<String>,
    pub bus_exchange: Option<String>,
    /// Role (`query`, `command`, `notify` or `all`) → its instances.
    pub services: BTreeMap<String, UpService>,
    pub gateway: UpGateway,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpService {
    /// One address per instance (`127.0.0.1:0` picks a free port).
    pub addrs: Vec<String>,
    /// Extra `serve` flags for each instance.
    #[serde(default)]
    pub args: Vec<String>,
    /// The gateway's timeout for this service, ms.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpGateway {
    pub addr: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Anything else of the gateway's file (`routes`, `health`, `timeout_ms`,
    /// `retry_budget_percent`); `services` is written by `up`.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

fn default_dir() -> PathBuf {
    PathBuf::from("shards")
}

/// Roles a service entry may name, and how many instances each may have: one
/// command service (two relays would publish every event twice) and one notify
/// service (two would deliver each webhook twice from one subscriptions file).
const ROLES: [(&str, usize); 4] = [("query", usize::MAX), ("command", 1), ("notify", 1), ("all", usize::MAX)];

impl UpFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: UpFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.services.is_empty() {
            return Err("services must name at least one role".into());
        }
        for (role, service) in &file.services {
            let Some((_, most)) = ROLES.iter().find(|(name, _)| name == role) else {
                return Err(format!("unknown role {role:?} in services (expected query, command, notify or all)"));
            };
            if service.addrs.is_empty() {
                return Err(format!("services.{role}.addrs is empty"));
            }
            if service.addrs.len() > *most {
                return Err(format!("services.{role} may have at most {most} instance"));
            }
            for addr in &service.addrs {
                addr.parse::<SocketAddr>().map_err(|_| format!("services.{role}: {addr:?} is not an ip:port"))?;
            }
        }
        file.gateway
            .addr
            .parse::<SocketAddr>()
            .map_err(|_| format!("gateway.addr {:?} is not an ip:port", file.gateway.addr))?;
        if file.gateway.settings.contains_key("services") {
            return Err("gateway.settings.services is written by up from services; leave it out".into());
        }
        for part in ["query", "command", "notify"] {
            if !file.services.contains_key(part) && !file.services.contains_key("all") {
                return Err(format!("no {part} service: name one, or an `all` service"));
            }
        }
        Ok(file)
    }

    /// The gateway's file, given each role's started addresses.
    fn gateway_file(&self, started: &BTreeMap<String, Vec<SocketAddr>>) -> serde_json::Value {
        let mut services = serde_json::Map::new();
        for part in ["query", "command", "notify"] {
            let role = if started.contains_key(part) { part } else { "all" };
            let destinations: Vec<String> = started[role].iter().map(|a| format!("http://{a}")).collect();
            let mut entry = serde_json::json!({ "destinations": destinations });
            if let Some(timeout) = self.services[role].timeout_ms {
                entry["timeout_ms"] = timeout.into();
            }
            services.insert(part.to_owned(), entry);
        }
        let mut file = self.gateway.settings.clone();
        file.insert("services".into(), services.into());
        file.into()
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let refused = |message: String| Refused { failure: Failure::BadInput, message };
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| refused(format!("cannot read {}: {e}", args.config.display())))?;
    let file = UpFile::parse(&text).map_err(|e| refused(format!("{}: {e}", args.config.display())))?;
    let gateway_path = args.gateway_config.clone().unwrap_or_else(|| args.config.with_extension("gateway.json"));
    let exe = std::env::current_exe().context("cannot find this program")?;

    let mut processes = Processes(Vec::new());
    let mut started: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    for (role, service) in &file.services {
        for (index, addr) in service.addrs.iter().enumerate() {
            let name = format!("{role}-{}", index + 1);
            let mut flags = vec!["serve", "--role", role, "--addr", addr, "--no-admin"];
            let dir = file.dir.display().to_string();
            flags.extend(["--dir", &dir]);
            if let Some(url) = &file.bus_url {
                flags.extend(["--bus-url", url]);
            }
            if let Some(exchange) = &file.bus_exchange {
                flags.extend(["--bus-exchange", exchange]);
            }
            flags.extend(service.args.iter().map(String::as_str));
            let process = Process::spawn(&exe, name, &flags)?;
            started.entry(role.clone()).or_default().push(process.addr);
            processes.0.push(process);
        }
    }
    let config = serde_json::to_string_pretty(&file.gateway_file(&started))?;
    std::fs::write(&gateway_path, config).with_context(|| format!("cannot write {}", gateway_path.display()))?;
    let path = gateway_path.display().to_string();
    let mut flags = vec!["serve", "--role", "gateway", "--addr", &file.gateway.addr, "--no-admin"];
    flags.extend(["--gateway-config", &path]);
    flags.extend(file.gateway.args.iter().map(String::as_str));
    let gateway = Process::spawn(&exe, "gateway".into(), &flags)?;
    let front = gateway.addr;
    processes.0.insert(0, gateway);

    let ready = tokio::select! {
        ready = wait_ready(front, &mut processes) => ready,
        () = shutdown_signal() => Err(anyhow::anyhow!("interrupted before the topology was ready")),
    };
    if let Err(error) = ready {
        processes.stop();
        return Err(error);
    }
    println_flushed(&format!("up: gateway on http://{front}, {} services behind it", processes.0.len() - 1));

    let exited = tokio::select! {
        exited = processes.first_exit() => Some(exited),
        () = shutdown_signal() => None,
    };
    processes.stop();
    match exited {
        Some(why) => Err(anyhow::anyhow!("{why}; the topology was stopped")),
        None => Ok(()),
    }
}

fn println_flushed(line: &str) {
    // Not println!: a reader that stopped reading must not make `up` panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Waits for the gateway's `/readyz` (200 once every service behind it is healthy),
/// failing if a process exits meanwhile or 60 s pass.
async fn wait_ready(front: SocketAddr, processes: &mut Processes) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exited) = processes.exited() {
            anyhow::bail!("{exited} before the topology was ready");
        }
        if readyz(front).await == Some(200) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the gateway on {front} was not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of `GET /readyz`, `None` when nothing answers.
async fn readyz(addr: SocketAddr) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /readyz HTTP/1.1\r\nhost: up\r\nconnection: close\r\n\r\n").await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await.ok()?.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// One `flightbench serve` child.
struct Process {
    name: String,
    child: Child,
    addr: SocketAddr,
}

impl Process {
    /// Starts it, reads its address from its first line, and copies the rest of its
    /// output to stderr with its name in front of each line.
    fn spawn(exe: &Path, name: String, flags: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}: {} {}", exe.display(), flags.join(" ")))?;
        let prefix = format!("[{name}] ");
        let stderr = child.stderr.take().context("no stderr")?;
        copy_lines(stderr, prefix.clone());
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                anyhow::bail!("{name} (`flightbench {}`) exited ({status}) before listening", flags.join(" "));
            }
        };
        eprintln!("{prefix}{first}");
        let addr =
            first.split("://").nth(1).and_then(|rest| rest.split(['/', ' ', ',']).next()).and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{name}: no address in its first line {first:?}");
        };
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("{prefix}{line}");
            }
        });
        println_flushed(&format!("{name} pid {} on http://{addr}", child.id()));
        Ok(Self { name, child, addr })
    }

    /// SIGTERM, up to 10 s to finish, then SIGKILL.
    fn stop(&mut self) {
        if !crate::machine::stop_child(&mut self.child, Duration::from_secs(10)) {
            eprintln!("[{}] did not stop within 10 s of SIGTERM; killed", self.name);
        }
    }
}

fn copy_lines(from: impl std::io::Read + Send + 'static, prefix: String) {
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            eprintln!("{prefix}{line}");
        }
    });
}

/// The topology's processes, the gateway first; stopped in that order when dropped.
struct Processes(Vec<Process>);

impl Processes {
    /// The first process found exited, as a sentence.
    fn exited(&mut self) -> Option<String> {
        self.0.iter_mut().find_map(|p| match p.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", p.name)),
            _ => None,
        })
    }

    async fn first_exit(&mut self) -> String {
        loop {
            if let Some(exited) = self.exited() {
                return exited;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) {
        for process in &mut self.0 {
            process.stop();
        }
        self.0.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for process in &mut self.0 {
            process.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{
        "dir": "shards",
        "services": {
            "query": { "addrs": ["127.0.0.1:0", "127.0.0.1:0"], "timeout_ms": 500 },
            "command": { "addrs": ["127.0.0.1:0"], "args": ["--confirms", "per-message"] },
            "notify": { "addrs": ["127.0.0.1:0"] }
        },
        "gateway": { "addr": "127.0.0.1:0", "settings": { "retry_budget_percent": 10 } }
    }"#;

    #[test]
    fn the_gateway_file_names_every_started_instance() {
        let file = UpFile::parse(FILE).unwrap();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let started = BTreeMap::from([
            ("query".to_owned(), vec![addr(1), addr(2)]),
            ("command".to_owned(), vec![addr(3)]),
            ("notify".to_owned(), vec![addr(4)]),
        ]);
        let gateway = file.gateway_file(&started);
        assert_eq!(
            gateway["services"]["query"]["destinations"],
            serde_json::json!(["http://127.0.0.1:1", "http://127.0.0.1:2"])
        );
        assert_eq!(gateway["services"]["query"]["timeout_ms"], 500);
        assert_eq!(gateway["services"]["notify"]["destinations"], serde_json::json!(["http://127.0.0.1:4"]));
        assert_eq!(gateway["retry_budget_percent"], 10);
        crate::gateway::config::GatewayConfig::parse(&gateway.to_string()).unwrap();
    }

    #[test]
    fn an_all_service_stands_in_for_missing_parts() {
        let file = UpFile::parse(r#"{"services":{"all":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0"}}"#)
            .unwrap();
        let started = BTreeMap::from([("all".to_owned(), vec![SocketAddr::from(([127, 0, 0, 1], 9))])]);
        let gateway = file.gateway_file(&started);
        for part in ["query", "command", "notify"] {
            assert_eq!(gateway["services"][part]["destinations"], serde_json::json!(["http://127.0.0.1:9"]));
        }
    }

    #[test]
    fn bad_files_are_refused_with_what_is_wrong() {
        let cases = [
            (r#"{"services":{},"gateway":{"addr":"127.0.0.1:0"}}"#, "at least one role"),
            (
                r#"{"services":{"reads":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0"}}"#,
                "unknown role \"reads\"",
            ),
            (r#"{"services":{"all":{"addrs":[]}},"gateway":{"addr":"127.0.0.1:0"}}"#, "services.all.addrs is empty"),
            (
                r#"{"services":{"all":{"addrs":["127.0.0.1:0"]},"command":{"addrs":["127.0.0.1:0","127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0"}}"#,
                "services.command may have at most 1 instance",
            ),
            (
                r#"{"services":{"all":{"addrs":["localhost"]}},"gateway":{"addr":"127.0.0.1:0"}}"#,
                "\"localhost\" is not an ip:port",
            ),
            (
                r#"{"services":{"query":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0"}}"#,
                "no command service",
            ),
            (r#"{"services":{"all":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"x"}}"#, "gateway.addr \"x\""),
            (
                r#"{"services":{"all":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0","settings":{"services":{}}}}"#,
                "written by up",
            ),
            (
                r#"{"services":{"all":{"addrs":["127.0.0.1:0"]}},"gateway":{"addr":"127.0.0.1:0"},"extra":1}"#,
                "unknown field `extra`",
            ),
        ];
        for (text, expected) in cases {
            let error = UpFile::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
