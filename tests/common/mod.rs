//! Test harness: starts the real `sendguard serve` binary on loopback ports with its own
//! temporary policies and state, and stops it when dropped.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; the daemon binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// Copies a directory tree (policies) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

/// Waits until something accepts connections on `addr` (at most `limit`).
pub fn wait_for_port(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// Temporary directory holding `config.toml`, `policies/`, `state/` and `outbox/`.
    pub dir: tempfile::TempDir,
    /// The configuration text it was started with (without the `[guard]` section).
    pub config: String,
    /// Ports to wait for on (re)start.
    pub ports: Vec<u16>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts `sendguard serve` with the shipped policies copied into a temp dir, state in the
    /// temp dir, and `config` appended to the generated config file. Waits until every port in
    /// `ports` accepts connections.
    pub fn start(config: &str, ports: &[u16]) -> Daemon {
        Self::start_with_env(config, ports, &[])
    }

    /// Like [`Daemon::start`] with extra environment variables (e.g. the admin token).
    pub fn start_with_env(config: &str, ports: &[u16], env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
            &dir.path().join("policies"),
        );
        let mut d = Daemon {
            child: None,
            dir,
            config: config.to_string(),
            ports: ports.to_vec(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        d.spawn();
        d
    }

    /// The policies directory the daemon reads.
    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// The state directory.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A path inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn spawn(&mut self) {
        let root = self.dir.path();
        let mut text = format!(
            "[guard]\npolicies = {:?}\nstate_dir = {:?}\n\n{}\n",
            root.join("policies"),
            root.join("state"),
            self.config
        );
        // Front-ends a test does not configure must not bind their fixed default ports, which
        // tests running in parallel would fight over.
        if !self.config.contains("[admin]") {
            text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
        }
        if !self.config.contains("[http]") {
            text.push_str("\n[http]\nenabled = false\n");
        }
        if !self.config.contains("[smtp]") {
            text.push_str("\n[smtp]\nenabled = false\n");
        }
        let cfg = root.join("config.toml");
        std::fs::write(&cfg, text).expect("write config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(root.join("daemon.log"))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sendguard"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&cfg)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn sendguard"));
        for p in &self.ports {
            let addr: SocketAddr = ([127, 0, 0, 1], *p).into();
            if !wait_for_port(addr, Duration::from_secs(20)) {
                panic!("daemon did not listen on {addr}; log:\n{}", self.log());
            }
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (no chance to clean up), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for a graceful exit; returns the exit status code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// Starts the daemon again with the same directories and configuration.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
