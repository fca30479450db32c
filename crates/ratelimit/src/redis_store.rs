//! The shared store: GCRA state in Redis or Redis Cluster, one script call per check.

use std::time::Duration;

use redis::{
    Cmd, Pipeline, RedisFuture, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
};

use crate::gcra::{Outcome, Params};

/// Where the shared state lives.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One Redis server (or a primary behind a proxy): `redis://host:6379`.
    Single(String),
    /// A Redis Cluster, given by one or more seed nodes.
    Cluster(Vec<String>),
}

/// A connection to either; both reconnect by themselves in the background.
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

pub(crate) struct RedisStore {
    connection: Connection,
    acquire: Script,
    refund: Script,
}

impl RedisStore {
    /// Connects lazily: nothing is sent until the first check, and the service starts
    /// even when Redis is down. Needs a Tokio runtime.
    pub(crate) fn connect(target: &RedisTarget, connect_timeout: Duration) -> redis::RedisResult<Self> {
        let connection = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    // Our own deadline per check is much shorter; this only bounds
                    // what is left behind when a check gives up.
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str)).retries(1).build()?;
                let config = ClusterConfig::new().set_connection_timeout(connect_timeout).set_response_timeout(Duration::from_secs(1));
                Connection::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        Ok(Self { connection, acquire: Script::new(include_str!("gcra.lua")), refund: Script::new(include_str!("refund.lua")) })
    }

    /// All keys must share one hash tag (one cluster slot).
    pub(crate) async fn acquire(&self, keys: &[(String, Params)], cost: u64) -> redis::RedisResult<Vec<Outcome>> {
        let mut invocation = self.acquire.prepare_invoke();
        for (key, params) in keys {
            invocation.key(key).arg(params.interval_us).arg(params.burst);
        }
        invocation.arg(cost);
        let flat: Vec<i64> = invocation.invoke_async(&mut self.connection.clone()).await?;
        if flat.len() != keys.len() * 4 {
            return Err(redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, "the GCRA script returned a malformed reply")));
        }
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(flat
            .chunks_exact(4)
            .map(|c| Outcome {
                allowed: c[0] == 1,
                remaining: non_negative(c[1]),
                reset_us: non_negative(c[2]),
                retry_after_us: non_negative(c[3]),
                new_tat: 0,
            })
            .collect())
    }

    pub(crate) async fn refund(&self, keys: &[(String, Params)], cost: u64) -> redis::RedisResult<()> {
        let mut invocation = self.refund.prepare_invoke();
        for (key, params) in keys {
            invocation.key(key).arg(params.interval_us);
        }
        invocation.arg(cost);
        invocation.invoke_async::<i64>(&mut self.connection.clone()).await.map(drop)
    }

    pub(crate) async fn reset(&self, keys: &[String]) -> redis::RedisResult<()> {
        redis::cmd("DEL").arg(keys).query_async::<i64>(&mut self.connection.clone()).await.map(drop)
    }

    /// Loads the scripts (on every primary of a cluster), so that the next checks are
    /// one EVALSHA each rather than a NOSCRIPT miss and a load, as after a restart.
    pub(crate) async fn load_scripts(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        self.acquire.prepare_invoke().load_async(&mut connection).await?;
        self.refund.prepare_invoke().load_async(&mut connection).await?;
        Ok(())
    }

    /// A write that expires at once: what the checks need of Redis. A PING or a script
    /// load succeeds on a full Redis that refuses writes (`noeviction`), whose checks
    /// would then fail again at once.
    pub(crate) async fn probe_write(&self, key: &str) -> redis::RedisResult<()> {
        redis::cmd("SET").arg(key).arg(1).arg("PX").arg(1000).query_async::<Value>(&mut self.connection.clone()).await.map(drop)
    }
}
