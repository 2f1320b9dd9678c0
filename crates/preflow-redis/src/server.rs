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
