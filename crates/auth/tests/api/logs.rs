//! The log lines of the real binary, with trace export on.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{admin_url, redis_url};

/// Every request's log line carries its `request_id`, also right after database work
/// on the same thread (here the partition upkeep, run every second). With trace export
/// on, a per-layer filter bug of tracing-subscriber (tokio-rs/tracing#2519) dropped such
/// request spans from the log layer: sqlx asks `log::log_enabled!` after its queries,
/// and the next request span on that thread lost every field; 2 to 4 of these 24
/// requests did (`platform::telemetry::AskEveryTime`).
#[test]
fn every_request_line_carries_its_request_id_with_trace_export_on() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("auth_test_logs_{id}");
    let dir = std::env::temp_dir().join(format!("auth-logs-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("auth.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("serve")
        .env("AUTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("AUTH_DATABASE_URL", format!("{}/{database}", admin_url().rsplit_once('/').unwrap().0))
        .env("REDIS_URL", redis_url())
        .env("AUTH_REDIS_KEY_PREFIX", format!("test:{id}"))
        .env("AUTH_JWT_DEV_KEY_FILE", dir.join("key.pem"))
        // Spans are exported (to a closed port: the export fails, which changes nothing).
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
        .env("RUST_LOG", "info,platform::http=debug,auth::partitions=debug")
        // Bursts from one address, far beyond the anonymous limit.
        .env("AUTH_RATE_LIMIT_ENABLED", "false")
        // The upkeep's queries every second, on whichever worker thread runs it.
        .env("AUTH_PARTITION_MAINTENANCE_INTERVAL_SECONDS", "1")
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // However the test ends: the process killed, its database, keys and files removed.
    struct Running {
        child: std::process::Child,
        database: String,
        prefix: String,
        dir: std::path::PathBuf,
    }
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
            ratelimit::testing::delete_keys(&redis_url(), &self.prefix);
            crate::helpers::drop_database(&self.database);
        }
    }
    let mut running = Running { child, database, prefix: format!("test:{id}"), dir: dir.clone() };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client.get(url("/health/ready")).send().is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "auth did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Readiness queries PostgreSQL; requests beside it land on the threads it queried on.
    let ids: Vec<String> = (0..24).map(|n| format!("logs-{id}-{n}")).collect();
    // Upkeep runs started so far, by their debug line, logged before each run's
    // queries (a line after them would reset the very state under test).
    let upkeep_runs = || {
        let text = std::fs::read_to_string(&log).unwrap();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|l| l["fields"]["message"] == "upkeep run starting")
            .count()
    };
    for round in ids.chunks(4) {
        // Part of the stimulus: a whole upkeep run (queries on some worker thread)
        // between rounds, known to have ended when the next one starts.
        let runs = upkeep_runs();
        let deadline = Instant::now() + Duration::from_secs(30);
        while upkeep_runs() < runs + 2 {
            assert!(Instant::now() < deadline, "no whole upkeep run within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::scope(|s| {
            let (client, url) = (&client, &url);
            for request_id in round {
                s.spawn(move || client.get(url("/health/ready")).send().unwrap());
                s.spawn(move || {
                    let answer = client.get(url("/api/v1/oauth/providers")).header("x-request-id", request_id).send().unwrap();
                    assert!(answer.status().is_success(), "{answer:?}");
                });
            }
        });
    }
    // A sign-in refused for an unknown account logs no user id, not the text "None".
    let refused = client
        .post(url("/api/v1/auth/login"))
        .header("x-request-id", format!("logs-{id}-unknown"))
        .json(&serde_json::json!({"email": format!("nobody-{id}@example.com"), "password": "correct horse battery"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    // Stopped before its log is read; the rest of the clean-up is the guard's.
    let _ = running.child.kill();
    let _ = running.child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let answered: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|l| l["fields"]["message"] == "answered")
        .collect();
    let logged: Vec<&str> = answered.iter().filter_map(|l| l["request_id"].as_str()).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !logged.contains(&id.as_str())).collect();
    let refusal = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|l| l["fields"]["message"] == "sign-in refused")
        .expect("the refused sign-in's line");
    drop(running);
    assert_eq!(refusal["fields"]["reason"], "unknown_account", "{refusal}");
    assert!(refusal["fields"].get("user_id").is_none(), "{refusal}");
    assert!(missing.is_empty(), "{} of {} request lines without their request_id: {missing:?}", missing.len(), ids.len());
}
