//! Private PostgreSQL clusters and Redis servers for the fault tests: started, stopped,
//! crashed and restarted on the same port. The shared PostgreSQL (5432) and Redis
//! (6379) that the other tests use are never touched.
//!
//! PostgreSQL: a fresh cluster made by `initdb` in a temporary directory, run with
//! `pg_ctl`. `initdb` and `postgres` refuse to run as root, so under root they run as
//! an unprivileged user (`postgres`, which Debian's package creates, else `nobody`)
//! through `runuser` or `setpriv`. The binaries are `$PG_BINDIR` when set, else the
//! newest `/usr/lib/postgresql/<major>/bin` (Debian, Ubuntu), else `pg_config --bindir`.
//! Extensions installed for that major version (pg_partman) work in the cluster too.
//!
//! Redis: a `redis-server` child process on its own port, with no persistence unless
//! asked (`Redis::start_persistent`, every write to an append-only file).

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it holds; panics after `within`.
pub fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log file, for failure reports.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A fresh directory under the temporary directory.
pub fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("auth-faults-{kind}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // runuser lives in /usr/sbin, which a user's PATH may lack.
    std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from)).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// How the PostgreSQL binaries are run: directly, or as an unprivileged user.
#[derive(Clone, Debug)]
struct Runner {
    /// Prepended to every command (`runuser -u postgres --`); empty when not root.
    prefix: Vec<String>,
    /// The user that must own the cluster's directory.
    owner: Option<(u32, u32)>,
}

impl Runner {
    fn find() -> Result<Self, String> {
        let euid: u32 = output("id", &["-u"]).and_then(|s| s.parse().ok()).ok_or("`id -u` failed")?;
        if euid != 0 {
            return Ok(Self { prefix: Vec::new(), owner: None });
        }
        for user in ["postgres", "nobody"] {
            let (Some(uid), Some(gid)) = (output("id", &["-u", user]), output("id", &["-g", user])) else { continue };
            let (uid, gid): (u32, u32) = (uid.parse().map_err(|_| "bad uid")?, gid.parse().map_err(|_| "bad gid")?);
            let owner = Some((uid, gid));
            if let Some(runuser) = find_program("runuser") {
                return Ok(Self { prefix: vec![runuser.display().to_string(), "-u".into(), user.into(), "--".into()], owner });
            }
            if let Some(setpriv) = find_program("setpriv") {
                let prefix = vec![setpriv.display().to_string(), format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()];
                return Ok(Self { prefix, owner });
            }
        }
        Err("running as root, and neither runuser nor setpriv can switch to the user postgres or nobody \
             (initdb and postgres refuse to run as root)"
            .into())
    }

    fn command(&self, program: &Path) -> Command {
        match self.prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
        }
    }
}

fn postgres_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").is_file())
        .collect();
    majors.sort();
    if let Some((_, bin)) = majors.pop() {
        return bin;
    }
    if let Some(dir) = output("pg_config", &["--bindir"]).filter(|d| Path::new(d).join("initdb").is_file()) {
        return PathBuf::from(dir);
    }
    panic!("no PostgreSQL server binaries (initdb, pg_ctl): install PostgreSQL (scripts/services.sh does) or set PG_BINDIR");
}

/// A PostgreSQL cluster of this test alone, on 127.0.0.1 and a port of its own; the
/// superuser `postgres` connects without a password. Removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    bindir: PathBuf,
    runner: Runner,
    running: bool,
}

impl Postgres {
    /// A new cluster, started. A machine that cannot run one (as root with no
    /// unprivileged user to switch to) fails the test, saying why: a fault test that
    /// passed without running would claim what nobody checked.
    pub fn start() -> Self {
        let runner = Runner::find().unwrap_or_else(|why| panic!("cannot start a private PostgreSQL for a fault test: {why}"));
        let bindir = postgres_bindir();
        // The server's user must reach the directory: under root, /tmp (TMPDIR may be private).
        let base = if runner.owner.is_some() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let dir = base.join(format!("auth-faults-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = runner.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("giving the cluster directory to the server's user");
        }
        let data = dir.join("data");
        let mut pg = Self { log: dir.join("server.log"), dir, data, port: free_port(), bindir, runner, running: false };
        let initdb = pg
            .runner
            .command(&pg.bindir.join("initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("running initdb");
        assert!(initdb.status.success(), "initdb failed: {}{}", String::from_utf8_lossy(&initdb.stdout), String::from_utf8_lossy(&initdb.stderr));
        // Loopback TCP only, no socket file. fsync off: these tests kill the server
        // process, never the machine, and the page cache survives a process; every
        // commit still reaches the WAL (synchronous_commit stays on) before it is
        // acknowledged, which is what a crash of the server tests.
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\n\
             max_connections = 40\nshared_buffers = 16MB\nlog_min_messages = warning\n",
            pg.port
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(pg.data.join("postgresql.conf"))
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(conf.as_bytes())
            })
            .expect("configuring the cluster");
        pg.resume();
        pg
    }

    /// The URL of database `name` as the superuser.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        self.runner.command(&self.bindir.join("pg_ctl")).arg("-D").arg(&self.data).args(args).stdin(Stdio::null()).output().expect("running pg_ctl")
    }

    /// Starts the server (again, on the same port, with the same data) and waits
    /// until it accepts connections.
    pub fn resume(&mut self) {
        let log = self.log.display().to_string();
        let out = self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start"]);
        assert!(out.status.success(), "pg_ctl start failed: {}\n{}", String::from_utf8_lossy(&out.stderr), tail(&self.log, 30));
        self.running = true;
        let port = self.port;
        wait_until(Duration::from_secs(30), "PostgreSQL to accept connections", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// `pg_ctl stop -m <mode>`: `fast` (clients disconnected, a clean shutdown) or
    /// `immediate` (every server process killed at once, as in a crash: the next
    /// start recovers from the WAL). Returns when the server is gone and its port closed.
    pub fn stop(&mut self, mode: &str) {
        let out = self.pg_ctl(&["-m", mode, "-w", "-t", "60", "stop"]);
        assert!(out.status.success(), "pg_ctl stop -m {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
        self.running = false;
        let port = self.port;
        wait_until(Duration::from_secs(30), "the PostgreSQL port to close", || TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- private PostgreSQL log (last lines) ---\n{}", self.log_tail());
        }
        if self.running {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` of this test alone on a port of its own. Killed when dropped.
pub struct Redis {
    port: u16,
    dir: PathBuf,
    persistent: bool,
    child: Option<Child>,
}

impl Redis {
    /// Keeps nothing on disk, like the deployment's Redis: a restart comes back empty.
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// Appends every write to a file (fsync on each), so a restart comes back with
    /// all the data it had: a stand-in for a Redis that is cut off from Auth for a
    /// while but keeps its data (a network partition, a replica taking over).
    pub fn start_persistent() -> Self {
        Self::spawn(true)
    }

    fn spawn(persistent: bool) -> Self {
        let mut redis = Self { port: free_port(), dir: temp_dir("redis"), persistent, child: None };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would; returns when the port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        wait_until(Duration::from_secs(10), "the Redis port to close", || TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    /// Starts the server again on the same port and waits until it answers PING.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "Redis is running");
        let appendonly = if self.persistent { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", appendonly, "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        wait_until(Duration::from_secs(10), "redis-server to answer PING", || self.command(&["PING"]).is_some_and(|r| r == "PONG"));
    }

    /// One command through `redis-cli`; its output, or `None` when it failed.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        output("redis-cli", &[&["-h", "127.0.0.1", "-p", &self.port.to_string()][..], args].concat())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
