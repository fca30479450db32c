//! Throwaway Redis servers and a three-node Redis Cluster on loopback ports, for tests
//! (feature `test-support`). Each is killed when dropped, even when the test fails.
//!
//! Needs `redis-server` and `redis-cli` on `PATH` (Debian's `redis-server` package,
//! which `scripts/services.sh` installs).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` of our own, with no persistence, in a temporary directory.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    cluster: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::spawn(free_port(false), false)
    }

    fn spawn(port: u16, cluster: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("ratelimit-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the Redis directory");
        let mut server = Self { port, dir, cluster, child: None };
        server.restart();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        wait_until(Duration::from_secs(10), "the Redis port to close", || TcpStream::connect(("127.0.0.1", self.port)).is_err());
    }

    /// Starts the server again on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"]);
            let _ = std::fs::remove_file(self.dir.join("nodes.conf"));
        }
        self.child = Some(command.spawn().expect("redis-server is installed (apt-get install redis-server)"));
        let port = self.port;
        wait_until(Duration::from_secs(10), "redis-server to answer PING", || ping(port));
    }

    /// Runs one command through `redis-cli` and returns its output (one line per
    /// element of an array reply).
    pub fn command(&self, line: &str) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(line.split_whitespace())
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three primaries, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::spawn(free_port(true), true)).collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        wait_until(Duration::from_secs(30), "the cluster to be ok on every node", || {
            cluster.nodes.iter().all(|n| n.command("CLUSTER INFO").contains("cluster_state:ok"))
        });
        cluster
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Keys matching `pattern` on each node.
    pub fn keys_per_node(&self, pattern: &str) -> Vec<usize> {
        self.nodes.iter().map(|n| n.command(&format!("KEYS {pattern}")).lines().filter(|l| !l.is_empty()).count()).collect()
    }
}

/// A loopback port nothing listens on (for a cluster node, its bus port +10000 too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let port = listener.local_addr().unwrap().port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found");
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) else { return false };
    let mut reply = [0; 5];
    stream.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG"
}

/// Polls `condition` until it holds; panics with `what` after `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes every key under `prefix` (`{prefix}:*`) from the Redis at `url`, for a
/// test's clean-up: some keys of the services (a counter that orders cache fills, say)
/// have no expiry and would stay in a shared Redis for good. Blocking, so a `Drop` can
/// call it; a Redis that cannot be reached, or does not answer within two seconds, is
/// left as it is.
pub fn delete_keys(url: &str, prefix: &str) {
    let timeout = Some(Duration::from_secs(2));
    let Ok(mut connection) = redis::Client::open(url).and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2))) else {
        return;
    };
    if connection.set_read_timeout(timeout).and_then(|()| connection.set_write_timeout(timeout)).is_err() {
        return;
    }
    let pattern = format!("{prefix}:*");
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query::<(u64, Vec<String>)>(&mut connection)
        else {
            return;
        };
        if !keys.is_empty() && redis::cmd("UNLINK").arg(&keys).query::<i64>(&mut connection).is_err() {
            return;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
