//! A private `redis-server` child process, for tests and benches.
//!
//! [`RedisServer::start`] picks a free loopback port, starts `redis-server` (or the
//! binary named by `PREFLOW_REDIS_SERVER`) with its own temporary directory, append-only
//! file on (`appendfsync always` unless chosen otherwise) and snapshots off, and waits until it answers `PING`.
//! [`RedisServer::stop`] kills it, [`RedisServer::restart`] starts it again on the same
//! port and directory (so the append-only file is replayed), and dropping the value kills
//! the process and removes the directory.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The process could not be spawned (e.g. `redis-server` is not installed).
    #[error("cannot run {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The error.
        source: std::io::Error,
    },
    /// A temporary directory or port could not be had.
    #[error("cannot prepare the server: {0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer `PING` in time.
    #[error("redis-server did not become ready: {0}")]
    NotReady(String),
}

/// A running `redis-server` on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    binary: String,
    appendfsync: String,
    extra: Vec<String>,
}

fn free_port() -> Result<u16, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn pings(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) => buf.get(..n).is_some_and(|b| b.starts_with(b"+PONG")),
        Err(_) => false,
    }
}

impl RedisServer {
    /// Starts a server on a free port with a new temporary directory, syncing the
    /// append-only file on every write (`appendfsync always`), so a kill loses nothing.
    pub fn start() -> Result<Self, ServerError> {
        Self::start_with_appendfsync("always")
    }

    /// Starts a server with this `appendfsync` policy (`always`, `everysec` — the Redis
    /// default — or `no`).
    pub fn start_with_appendfsync(appendfsync: &str) -> Result<Self, ServerError> {
        Self::start_with(appendfsync, &[])
    }

    /// Starts a server with this `appendfsync` policy and further `redis-server`
    /// arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(appendfsync: &str, extra: &[&str]) -> Result<Self, ServerError> {
        let binary =
            std::env::var("PREFLOW_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned());
        let dir = tempfile::Builder::new()
            .prefix("preflow-redis-")
            .tempdir()?;
        let mut server = RedisServer {
            child: None,
            port: free_port()?,
            dir,
            binary,
            appendfsync: appendfsync.to_owned(),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        let mut last = String::new();
        for _ in 0..5 {
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(ServerError::NotReady(why)) => {
                    // Most likely another process took the port meanwhile: pick another.
                    last = why;
                    server.port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ServerError::NotReady(last))
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let mut child = Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", &self.appendfsync])
            .args(["--save", ""])
            .args(["--daemonize", "no", "--logfile", ""])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ServerError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ServerError::NotReady(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                )));
            }
            if pings(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ServerError::NotReady(format!(
                    "no answer on port {} within 10 s",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to connect to, `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's private directory (holding the append-only file).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        let _ = self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server (as a crash would: no shutdown save); the directory is kept.
    pub fn stop(&mut self) {
        self.kill();
    }

    fn signal(&self, signal: &str) -> Result<(), ServerError> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(ServerError::Io(std::io::Error::other(format!(
                "kill {signal} failed: {status}"
            ))))
        }
    }

    /// Freezes the server (`SIGSTOP`): connections are accepted by the kernel but nothing
    /// answers, as with a hung server or a network partition.
    pub fn pause(&self) -> Result<(), ServerError> {
        self.signal("-STOP")
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) -> Result<(), ServerError> {
        self.signal("-CONT")
    }

    /// Starts the server again on the same port and directory; it replays its
    /// append-only file.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of private `redis-server` processes on loopback: `masters` masters,
/// each with `replicas` replicas, created with `redis-cli --cluster create` (the binary
/// named by `PREFLOW_REDIS_CLI`, default `redis-cli`). Killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

fn cluster_info(port: u16) -> Option<String> {
    let out = Command::new(redis_cli())
        .args(["-p", &port.to_string(), "cluster", "info"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn replication_info(port: u16) -> Option<String> {
    let out = Command::new(redis_cli())
        .args(["-p", &port.to_string(), "info", "replication"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn redis_cli() -> String {
    std::env::var("PREFLOW_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}

impl RedisCluster {
    /// Starts `masters · (1 + replicas)` nodes (fail-over after 1 s without a master)
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start(masters: usize, replicas: usize) -> Result<Self, ServerError> {
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "1000",
            "--cluster-config-file",
            "nodes.conf",
            // Replicas sync at once (no wait for more replicas) and may always be
            // promoted, so a fail-over happens within about two node timeouts.
            "--repl-diskless-sync-delay",
            "0",
            "--cluster-replica-validity-factor",
            "0",
        ];
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            nodes.push(RedisServer::start_with("everysec", &args)?);
        }
        let mut create = Command::new(redis_cli());
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ServerError::Spawn {
                binary: redis_cli(),
                source,
            })?;
        if !out.status.success() {
            return Err(ServerError::NotReady(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// Waits until every running node reports `cluster_state:ok` and every replica's
    /// link to its master is up.
    pub fn wait_ok(&self, within: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                cluster_info(n.port()).is_some_and(|i| i.contains("cluster_state:ok"))
                    && replication_info(n.port()).is_some_and(|i| {
                        i.contains("role:master") || i.contains("master_link_status:up")
                    })
            });
            if ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::NotReady("cluster_state is not ok".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes (servers), in creation order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The index of the node serving `key` as master now, as a running node sees it.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let node = self.nodes.iter().find(|n| n.is_running())?;
        let cli = |args: &[&str]| {
            Command::new(redis_cli())
                .arg("-p")
                .arg(node.port().to_string())
                .args(args)
                .stdin(Stdio::null())
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let slot: u16 = cli(&["cluster", "keyslot", key])?.trim().parse().ok()?;
        let nodes = cli(&["cluster", "nodes"])?;
        let serves = |range: &str| match range.split_once('-') {
            Some((a, b)) => a
                .parse::<u16>()
                .ok()
                .zip(b.parse::<u16>().ok())
                .is_some_and(|(a, b)| a <= slot && slot <= b),
            None => range.parse::<u16>().ok() == Some(slot),
        };
        let line = nodes.lines().find(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields
                .get(2)
                .is_some_and(|f| f.contains("master") && !f.contains("fail"))
                && fields.iter().skip(8).any(|r| serves(r))
        })?;
        let port: u16 = line
            .split_whitespace()
            .nth(1)?
            .split('@')
            .next()?
            .rsplit(':')
            .next()?
            .parse()
            .ok()?;
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Kills node `index` (as a crash would).
    pub fn kill(&mut self, index: usize) {
        if let Some(n) = self.nodes.get_mut(index) {
            n.stop();
        }
    }
}
