//! `partition-bench`: measures Auth's partitioned schema against the same data
//! unpartitioned (docs/partitioning.md). A crate of its own, beside the `auth` library it
//! measures, so that the service's binary and image do not carry it (`main.rs` is the
//! command line).
//!
//! It fills a scratch database with an audience like ours — mostly Russian, skewed to
//! the big cities, signing up faster every year, signing in from phones, browsers and
//! TVs — in the schema the migrations make, copies the same rows into the earlier,
//! unpartitioned layout (schema `flat`), and times on both, through the service's own
//! SQL: a user by id, sign-in by email and by login, a page of history, sign-in
//! inserts, and retiring the oldest month. All data is made by PostgreSQL itself
//! (`INSERT … SELECT` over `generate_series`), in batches that move the progress bars.

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use secrecy::SecretString;
use sqlx::{
    ConnectOptions, Connection, Executor, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use uuid::Uuid;

use auth::{
    config::Settings,
    domain::PasswordHasher,
    startup::MIGRATOR,
    store::{
        history::{self, Method},
        partitions::{self, login_history_partitions},
        sessions::Client,
        users::{CREDENTIALS_BY_EMAIL, CREDENTIALS_BY_LOGIN, SELECT_BY_ID},
    },
};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Accounts to create, signed up over eight years.
    #[arg(long, default_value_t = 1_000_000)]
    pub users: i64,
    /// Sign-in attempts to create, over the last thirteen months.
    #[arg(long, default_value_t = 5_000_000)]
    pub history: i64,
    /// Timed lookups of each kind on each schema (after a warm-up of a tenth as many).
    #[arg(long, default_value_t = 20_000)]
    pub samples: usize,
    /// Sign-ins inserted on each schema to measure the insert rate.
    #[arg(long, default_value_t = 20_000)]
    pub inserts: usize,
    /// Connections inserting sign-ins at once.
    #[arg(long, default_value_t = 4)]
    pub insert_connections: u32,
    /// The scratch database, on the server of AUTH_DATABASE_URL: dropped and made anew.
    #[arg(long, default_value = "auth_bench_partitions")]
    pub database: String,
    /// Keep the database afterwards instead of dropping it (with the sign-ins; the
    /// accounts are removed once measured, to hold one data set on disk at a time).
    #[arg(long)]
    pub keep: bool,
}

/// Rows per `INSERT … SELECT`: one tick of a progress bar.
const USER_BATCH: i64 = 250_000;
const HISTORY_BATCH: i64 = 500_000;
/// Statements filling at once (the machine has two cores).
const FILL_CONNECTIONS: usize = 2;
/// History covers this month and the twelve before it, so a whole month can retire.
const HISTORY_MONTHS: i32 = 13;

pub async fn run(settings: &Settings, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.users > 0 && args.history > 0 && args.samples > 0 && args.insert_connections > 0,
        "--users, --history, --samples and --insert-connections must be positive"
    );
    // The service's connection settings, on both schemas alike.
    let server = auth::startup::database_options(settings)?
        .application_name("partition-bench")
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::ZERO);
    anyhow::ensure!(
        server.get_database() != Some(args.database.as_str()),
        "--database {} is the service's own database (AUTH_DATABASE_URL); the benchmark drops and refills it",
        args.database
    );
    let options = server.clone().database(&args.database);
    recreate_database(&server, &args.database).await?;
    let outcome = bench(&options, &args).await;
    if args.keep {
        eprintln!("kept database {}", args.database);
    } else {
        drop_database(&server, &args.database).await?;
    }
    let report = outcome?;
    println!("{report}");
    Ok(())
}

async fn bench(options: &PgConnectOptions, args: &BenchArgs) -> anyhow::Result<String> {
    let bars = MultiProgress::new();
    let fill = PgPoolOptions::new()
        .max_connections(FILL_CONNECTIONS as u32)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // A bulk load: losing the last commits on a crash costs nothing here. Month
                // bounds are in UTC, as the migration made them.
                conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'; SET work_mem = '64MB'; SET TIME ZONE 'UTC'").await?;
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await
        .context("connecting to the benchmark database")?;
    let step = spinner(&bars, "schema (migrations)");
    MIGRATOR.run(&fill).await.context("applying the migrations")?;
    let anchor: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT date_trunc('second', now())").fetch_one(&fill).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(generator_functions(anchor))).execute(&fill).await?;
    sqlx::raw_sql("CREATE SCHEMA flat").execute(&fill).await?;
    step.finish();
    let mut shape = Shape::default();
    let mut rows = Vec::new();

    // Accounts: fill, copy, measure; then drop them, so that the disk holds one of the
    // two data sets at a time (the history needs no account rows).
    let started = Instant::now();
    let password_hash = PasswordHasher::new(1)?.hash(&SecretString::from("correct horse battery")).await?;
    fill_users(&fill, &bars, args.users, &password_hash).await?;
    copy_users_unpartitioned(&fill, &bars).await?;
    vacuum_analyze(&fill, &bars, "users, user_emails, user_logins, flat.users").await?;
    shape.add(&fill, USERS_SHAPE).await?;
    let mut fill_time = started.elapsed();
    let accounts = AccountSamples::draw(&fill, args.samples).await?;
    let partitioned = measuring_pool(options, 1, None).await?;
    let flat = measuring_pool(options, 1, Some("flat, public")).await?;
    // The same SQL on both where the schemas agree (the unpartitioned pool finds
    // `flat.users` first); where they differ, the earlier schema's own query.
    rows.push(
        compare(&bars, "user by id", &accounts.ids, &partitioned, &flat, async |db, _, id: &Uuid| {
            sqlx::query(SELECT_BY_ID).bind(id).fetch_optional(db).await.map(|_| ())
        })
        .await?,
    );
    rows.push(
        compare(&bars, "sign-in lookup by email", &accounts.emails, &partitioned, &flat, async |db, flat, email: &String| {
            let sql = if flat { "SELECT id, password_hash FROM users WHERE email = $1" } else { CREDENTIALS_BY_EMAIL };
            sqlx::query(sql).bind(email).fetch_optional(db).await.map(|_| ())
        })
        .await?,
    );
    rows.push(
        compare(&bars, "sign-in lookup by login", &accounts.logins, &partitioned, &flat, async |db, flat, login: &String| {
            let sql = if flat { "SELECT id, password_hash FROM users WHERE lower(login) = lower($1)" } else { CREDENTIALS_BY_LOGIN };
            sqlx::query(sql).bind(login).fetch_optional(db).await.map(|_| ())
        })
        .await?,
    );
    partitioned.close().await;
    flat.close().await;
    // The lookups are emptied by the trigger on `users`; named here too, they would be
    // in use by that trigger, and PostgreSQL refuses the whole statement.
    sqlx::raw_sql("DROP TABLE flat.users; TRUNCATE users CASCADE").execute(&fill).await?;

    // Sign-ins: fill, copy, measure the page, the inserts and retiring a month.
    let started = Instant::now();
    fill_history(&fill, &bars, args.users, args.history).await?;
    copy_history_unpartitioned(&fill, &bars).await?;
    vacuum_analyze(&fill, &bars, "login_history, flat.login_history").await?;
    shape.add(&fill, HISTORY_SHAPE).await?;
    fill_time += started.elapsed();
    let active_users = active_users(&fill, args.samples).await?;
    fill.close().await;
    let partitioned = measuring_pool(options, 1, None).await?;
    let flat = measuring_pool(options, 1, Some("flat, public")).await?;
    rows.push(
        compare(&bars, "login-history page (20)", &active_users, &partitioned, &flat, async |db, _, user: &Uuid| {
            history::page(db, *user, None, 20).await.map(|_| ()).map_err(|e| sqlx::Error::Protocol(e.to_string()))
        })
        .await?,
    );
    partitioned.close().await;
    flat.close().await;
    let inserts = [
        insert_rate(&bars, options, None, args, &active_users).await?,
        insert_rate(&bars, options, Some("flat, public"), args, &active_users).await?,
    ];
    let retire = retire_oldest_month(&bars, options).await?;
    bars.clear().ok();
    Ok(report(args, fill_time, &shape, &rows, &inserts, &retire))
}

async fn vacuum_analyze(db: &PgPool, bars: &MultiProgress, tables: &str) -> anyhow::Result<()> {
    let step = spinner(bars, "vacuum analyze");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {tables}"))).execute(db).await?;
    step.finish();
    Ok(())
}

// ------------------------------------------------------------------ the generator

/// Inlinable SQL functions that make every value from the row number and a salt, so
/// accounts and their sign-ins agree without a join (a sign-in of account `g` knows
/// its id), and a run is repeatable.
fn generator_functions(anchor: chrono::DateTime<chrono::Utc>) -> String {
    let anchor = anchor.to_rfc3339();
    format!(
        r#"
CREATE SCHEMA bench;
-- A pseudo-random number in [0, 1), fixed for (g, salt).
CREATE FUNCTION bench.rnd(g bigint, salt int) RETURNS float8 IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT (hashint8extended(g, salt) & 4503599627370495)::float8 / 4503599627370496 $$;
-- One of `options`, which repeat each value by its weight.
CREATE FUNCTION bench.pick(options text[], g bigint, salt int) RETURNS text IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT options[1 + floor(bench.rnd(g, salt) * cardinality(options))::int] $$;
-- When account g of n signed up: over eight years, more each year as the audience grows.
CREATE FUNCTION bench.signed_up(g bigint, n bigint) RETURNS timestamptz IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT timestamptz '{anchor}' - interval '8 years' + sqrt(g::float8 / n) * (timestamptz '{anchor}' - (timestamptz '{anchor}' - interval '8 years')) $$;
-- The number of accounts signed up by `at`: the inverse of signed_up.
CREATE FUNCTION bench.accounts_by(at timestamptz, n bigint) RETURNS bigint IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT greatest(1, floor(n * power(extract(epoch FROM at - (timestamptz '{anchor}' - interval '8 years'))
                                              / extract(epoch FROM timestamptz '{anchor}' - (timestamptz '{anchor}' - interval '8 years')), 2)))::bigint $$;
-- A UUIDv7 for time `at`, its random part fixed for (g, salt), as Uuid::now_v7 makes.
CREATE FUNCTION bench.uuid7(at timestamptz, g bigint, salt int) RETURNS uuid IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
                  || lpad(to_hex(hashint8extended(g, salt) & 4095), 3, '0')
                  || to_hex((hashint8extended(g, salt + 1) & 4611686018427387903) | x'8000000000000000'::bigint))::uuid $$;
-- The first instant of the oldest month of history.
CREATE FUNCTION bench.history_start() RETURNS timestamptz IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT (date_trunc('month', timestamptz '{anchor}' AT TIME ZONE 'UTC') - interval '{back} months') AT TIME ZONE 'UTC' $$;
-- The time of sign-in h of m: in order, over the months of history up to the anchor.
CREATE FUNCTION bench.attempted(h bigint, m bigint) RETURNS timestamptz IMMUTABLE PARALLEL SAFE LANGUAGE sql
    AS $$ SELECT bench.history_start() + ((h - 1 + bench.rnd(h, 10))::float8 / m) * (timestamptz '{anchor}' - bench.history_start()) $$;
"#,
        back = HISTORY_MONTHS - 1
    )
}

fn weighted(options: &[(&str, usize)]) -> Vec<String> {
    options.iter().flat_map(|(value, weight)| std::iter::repeat_n((*value).to_owned(), *weight)).collect()
}

/// Email providers of a Russian audience.
const DOMAINS: &[(&str, usize)] = &[
    ("mail.ru", 30),
    ("yandex.ru", 25),
    ("gmail.com", 22),
    ("bk.ru", 5),
    ("list.ru", 4),
    ("icloud.com", 4),
    ("inbox.ru", 3),
    ("rambler.ru", 3),
    ("ya.ru", 2),
    ("outlook.com", 2),
];
/// Where viewers are: mostly Russia, then its neighbours and the diaspora.
const COUNTRIES: &[(&str, usize)] =
    &[("RU", 84), ("KZ", 4), ("BY", 3), ("UZ", 2), ("AM", 1), ("GE", 1), ("KG", 1), ("AZ", 1), ("DE", 1), ("IL", 1), ("US", 1)];
/// Russian regions by their share of viewers (per cent): the capitals weigh most.
const RU_REGIONS: &[(&str, usize)] = &[
    ("Moscow", 16),
    ("Saint Petersburg", 8),
    ("Moscow Oblast", 7),
    ("Krasnodar Krai", 4),
    ("Sverdlovsk Oblast", 3),
    ("Rostov Oblast", 3),
    ("Tatarstan", 3),
    ("Bashkortostan", 3),
    ("Novosibirsk Oblast", 2),
    ("Nizhny Novgorod Oblast", 2),
    ("Chelyabinsk Oblast", 2),
    ("Samara Oblast", 2),
    ("Krasnoyarsk Krai", 2),
    ("Perm Krai", 2),
    ("Voronezh Oblast", 2),
    ("Volgograd Oblast", 2),
    ("Saratov Oblast", 2),
    ("Tyumen Oblast", 2),
    ("Irkutsk Oblast", 2),
    ("Kemerovo Oblast", 2),
    ("Dagestan", 2),
    ("Stavropol Krai", 2),
    ("Primorsky Krai", 1),
    ("Khabarovsk Krai", 1),
    ("Omsk Oblast", 1),
    ("Leningrad Oblast", 1),
    ("Orenburg Oblast", 1),
    ("Altai Krai", 1),
    ("Belgorod Oblast", 1),
    ("Tula Oblast", 1),
    ("Kaliningrad Oblast", 1),
    ("Yaroslavl Oblast", 1),
    ("Udmurtia", 1),
    ("Vladimir Oblast", 1),
    ("Chuvashia", 1),
    ("Tomsk Oblast", 1),
    ("Ryazan Oblast", 1),
    ("Penza Oblast", 1),
    ("Lipetsk Oblast", 1),
    ("Kirov Oblast", 1),
    ("Arkhangelsk Oblast", 1),
    ("Murmansk Oblast", 1),
    ("Sakha (Yakutia)", 1),
    ("Buryatia", 1),
    ("Khanty-Mansi Okrug", 1),
    ("Tver Oblast", 1),
    ("Bryansk Oblast", 1),
];
const KZ_REGIONS: &[(&str, usize)] =
    &[("Almaty", 35), ("Astana", 25), ("Shymkent", 10), ("Karaganda Region", 10), ("East Kazakhstan Region", 10), ("Aktobe Region", 10)];
const BY_REGIONS: &[(&str, usize)] =
    &[("Minsk", 50), ("Minsk Region", 15), ("Gomel Region", 10), ("Brest Region", 10), ("Vitebsk Region", 8), ("Grodno Region", 7)];
/// Devices of sign-ins: phones first, then browsers and smart TVs.
const DEVICES: &[(&str, usize)] = &[("mobile", 45), ("web", 30), ("smart_tv", 14), ("tablet", 9), ("other", 2)];
const METHODS: &[(&str, usize)] = &[("password", 70), ("yandex", 12), ("vk", 10), ("google", 5), ("mailru", 3)];
/// First octets of address blocks of Russian access networks.
const FIRST_OCTETS: &[(&str, usize)] = &[
    ("5", 2),
    ("31", 2),
    ("37", 2),
    ("46", 3),
    ("77", 3),
    ("78", 2),
    ("79", 2),
    ("83", 2),
    ("85", 2),
    ("87", 1),
    ("89", 2),
    ("91", 2),
    ("92", 1),
    ("93", 1),
    ("94", 2),
    ("95", 3),
    ("109", 2),
    ("176", 3),
    ("178", 3),
    ("185", 2),
    ("188", 2),
    ("212", 2),
    ("213", 2),
    ("217", 2),
];
const USER_AGENTS: &[(&str, &[&str])] = &[
    (
        "mobile",
        &[
            "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 13; Redmi Note 12) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 YaBrowser/24.4 Mobile Safari/537.36",
        ],
    ),
    (
        "web",
        &[
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 YaBrowser/24.4.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        ],
    ),
    (
        "smart_tv",
        &[
            "Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/5.0 TV Safari/537.36",
            "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.88 Safari/537.36 WebAppManager",
        ],
    ),
    ("tablet", &["Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"]),
    ("other", &["okhttp/4.12.0"]),
];

fn user_agents(device: &str) -> Vec<String> {
    USER_AGENTS.iter().find(|(d, _)| *d == device).map(|(_, uas)| uas.iter().map(|ua| (*ua).to_owned()).collect()).unwrap_or_default()
}

async fn fill_users(db: &PgPool, bars: &MultiProgress, n: i64, password_hash: &str) -> anyhow::Result<()> {
    // A bulk load: the lookup tables are filled in one pass afterwards and their
    // primary keys built once, instead of row by row by the trigger.
    sqlx::raw_sql(
        "ALTER TABLE users DISABLE TRIGGER users_sync_lookups;
         ALTER TABLE user_emails DROP CONSTRAINT user_emails_pkey;
         ALTER TABLE user_logins DROP CONSTRAINT user_logins_pkey;",
    )
    .execute(db)
    .await?;
    let bar = counter(bars, "accounts", n);
    let sql = "INSERT INTO users (id, email, login, password_hash, birth_date, country, region, created_at, updated_at)
        SELECT bench.uuid7(a.at, g, 1), 'viewer' || g || '@' || bench.pick($1, g, 2),
               CASE WHEN bench.rnd(g, 3) < 0.4 THEN 'Viewer_' || g END,
               CASE WHEN bench.rnd(g, 4) < 0.9 THEN $2 END,
               CASE WHEN bench.rnd(g, 5) < 0.8 THEN
                    (a.at - make_interval(years => CASE WHEN bench.rnd(g, 6) < 0.07 THEN 14 + floor(4 * bench.rnd(g, 7))::int
                                                        ELSE 18 + floor(50 * power(bench.rnd(g, 7), 1.4))::int END,
                                          days => floor(365 * bench.rnd(g, 8))::int))::date END,
               a.country,
               CASE a.country WHEN 'RU' THEN bench.pick($3, g, 9) WHEN 'KZ' THEN bench.pick($4, g, 9) WHEN 'BY' THEN bench.pick($5, g, 9) END,
               a.at, a.at
          FROM generate_series($6::bigint, $7::bigint) g,
               LATERAL (SELECT bench.signed_up(g, $8) AS at, bench.pick($9, g, 10) AS country) a";
    let domains = weighted(DOMAINS);
    let (ru, kz, by, countries) = (weighted(RU_REGIONS), weighted(KZ_REGIONS), weighted(BY_REGIONS), weighted(COUNTRIES));
    fill_in_batches(db, &bar, n, USER_BATCH, |from, to| {
        sqlx::query(sql).bind(&domains).bind(password_hash).bind(&ru).bind(&kz).bind(&by).bind(from).bind(to).bind(n).bind(&countries)
    })
    .await?;
    let step = spinner(bars, "lookup tables (email, login)");
    sqlx::raw_sql(
        "INSERT INTO user_emails (email, user_id) SELECT email, id FROM users;
         INSERT INTO user_logins (login, user_id) SELECT lower(login), id FROM users WHERE login IS NOT NULL;
         ALTER TABLE user_emails ADD CONSTRAINT user_emails_pkey PRIMARY KEY (email);
         ALTER TABLE user_logins ADD CONSTRAINT user_logins_pkey PRIMARY KEY (login);
         ALTER TABLE users ENABLE TRIGGER users_sync_lookups;",
    )
    .execute(db)
    .await?;
    step.finish();
    Ok(())
}

async fn fill_history(db: &PgPool, bars: &MultiProgress, n: i64, m: i64) -> anyhow::Result<()> {
    // Monthly partitions back to the oldest month of history (the migration made four).
    sqlx::query(
        "SELECT partman.create_partition_time(current_schema() || '.login_history',
                ARRAY(SELECT generate_series(bench.history_start(), now(), interval '1 month')))",
    )
    .execute(db)
    .await?;
    // Indexes are built once the rows are in, on both schemas alike.
    sqlx::raw_sql("ALTER TABLE login_history DROP CONSTRAINT login_history_pkey; DROP INDEX login_history_user_time_idx;").execute(db).await?;
    let bar = counter(bars, "sign-ins", m);
    // Sign-in h is by account g, among those signed up by then, older accounts more
    // often (a few sign in thousands of times, most a few times a year); 1% name no
    // account, 6% get the password wrong.
    let sql = "INSERT INTO login_history (id, attempted_at, user_id, ip, user_agent, device, method, success, failure_reason)
        SELECT bench.uuid7(s.at, h, 20), s.at, s.user_id,
               ('0.0.0.0'::inet + (bench.pick($1, h, 11)::bigint * 16777216 + (hashint8extended(h, 12) & 16777215))),
               CASE s.device WHEN 'mobile' THEN bench.pick($2, h, 13) WHEN 'web' THEN bench.pick($3, h, 13) WHEN 'smart_tv' THEN bench.pick($4, h, 13)
                             WHEN 'tablet' THEN bench.pick($5, h, 13) ELSE bench.pick($6, h, 13) END,
               s.device,
               CASE WHEN s.outcome < 0.07 THEN 'password' ELSE bench.pick($7, h, 14) END,
               s.user_id IS NOT NULL AND s.outcome >= 0.07,
               CASE WHEN s.user_id IS NULL THEN 'unknown_account' WHEN s.outcome < 0.06 THEN 'wrong_password' WHEN s.outcome < 0.07 THEN 'rate_limited' END
          FROM generate_series($8::bigint, $9::bigint) h,
               LATERAL (SELECT bench.attempted(h, $10) AS at) t,
               LATERAL (SELECT 1 + floor(power(bench.rnd(h, 15), 1.6) * bench.accounts_by(t.at, $11))::bigint AS g) a,
               LATERAL (SELECT t.at, bench.pick($12, h, 16) AS device, bench.rnd(h, 17) AS outcome,
                               CASE WHEN bench.rnd(h, 18) >= 0.01 THEN bench.uuid7(bench.signed_up(a.g, $11), a.g, 1) END AS user_id) s";
    let (octets, methods, devices) = (weighted(FIRST_OCTETS), weighted(METHODS), weighted(DEVICES));
    let agents: Vec<Vec<String>> = ["mobile", "web", "smart_tv", "tablet", "other"].into_iter().map(user_agents).collect();
    fill_in_batches(db, &bar, m, HISTORY_BATCH, |from, to| {
        let q = sqlx::query(sql).bind(&octets).bind(&agents[0]).bind(&agents[1]).bind(&agents[2]).bind(&agents[3]).bind(&agents[4]);
        q.bind(&methods).bind(from).bind(to).bind(m).bind(n).bind(&devices)
    })
    .await?;
    let step = spinner(bars, "history indexes");
    sqlx::raw_sql(
        "ALTER TABLE login_history ADD CONSTRAINT login_history_pkey PRIMARY KEY (id, attempted_at);
         CREATE INDEX login_history_user_time_idx ON login_history (user_id, attempted_at DESC, id DESC);",
    )
    .execute(db)
    .await?;
    step.finish();
    Ok(())
}

/// Runs the statement `batch(from, to)` makes for each batch of `size` of the rows 1 to
/// `total`, `FILL_CONNECTIONS` at a time, moving `bar` as each ends.
async fn fill_in_batches<'q>(
    db: &PgPool,
    bar: &ProgressBar,
    total: i64,
    size: i64,
    batch: impl Fn(i64, i64) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> anyhow::Result<()> {
    batches(total, size)
        .map(|(from, to)| {
            let statement = batch(from, to);
            async move {
                statement.execute(db).await?;
                bar.inc((to - from + 1) as u64);
                Ok::<_, sqlx::Error>(())
            }
        })
        .buffer_unordered(FILL_CONNECTIONS)
        .try_collect::<()>()
        .await?;
    bar.finish();
    Ok(())
}

/// The same accounts in the earlier layout: one `users` table with unique indexes on
/// the email and the lower-cased login.
async fn copy_users_unpartitioned(db: &PgPool, bars: &MultiProgress) -> anyhow::Result<()> {
    sqlx::raw_sql("CREATE TABLE flat.users (LIKE public.users INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").execute(db).await?;
    let partitions: Vec<String> =
        sqlx::query_scalar("SELECT relid::regclass::text FROM pg_partition_tree('users') WHERE isleaf ORDER BY 1").fetch_all(db).await?;
    copy(db, bars, "flat.users", &partitions, "created_at").await?;
    let step = spinner(bars, "unpartitioned indexes");
    sqlx::raw_sql(
        "ALTER TABLE flat.users ADD PRIMARY KEY (id);
         CREATE UNIQUE INDEX users_email_key ON flat.users (email);
         CREATE UNIQUE INDEX users_login_key ON flat.users (lower(login));",
    )
    .execute(db)
    .await?;
    step.finish();
    Ok(())
}

/// The same sign-ins in one unpartitioned `login_history` table.
async fn copy_history_unpartitioned(db: &PgPool, bars: &MultiProgress) -> anyhow::Result<()> {
    sqlx::raw_sql("CREATE TABLE flat.login_history (LIKE public.login_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").execute(db).await?;
    // Month by month, oldest first, as the rows were written.
    let months: Vec<String> = sqlx::query_scalar(
        "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'login_history'::regclass ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname",
    )
    .fetch_all(db)
    .await?;
    copy(db, bars, "flat.login_history", &months, "attempted_at").await?;
    let step = spinner(bars, "unpartitioned indexes");
    sqlx::raw_sql(
        "ALTER TABLE flat.login_history ADD PRIMARY KEY (id, attempted_at);
         CREATE INDEX login_history_user_time_idx ON flat.login_history (user_id, attempted_at DESC, id DESC);",
    )
    .execute(db)
    .await?;
    step.finish();
    Ok(())
}

async fn copy(db: &PgPool, bars: &MultiProgress, into: &str, partitions: &[String], order: &str) -> anyhow::Result<()> {
    let bar = counter(bars, &format!("copy to {into}"), partitions.len() as i64);
    for partition in partitions {
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {into} SELECT * FROM {partition} ORDER BY {order}"))).execute(db).await?;
        bar.inc(1);
    }
    bar.finish();
    Ok(())
}

// ------------------------------------------------------------------ measuring

/// Accounts to look up, drawn at random.
struct AccountSamples {
    ids: Vec<Uuid>,
    emails: Vec<String>,
    logins: Vec<String>,
}

/// About `count` rows of `table` at random (repeatably), as `columns`.
async fn sample<T>(db: &PgPool, table: &str, columns: &str, filter: &str, count: usize) -> anyhow::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(db).await?;
    let percent = (300.0 * count as f64 / rows.max(1) as f64).min(100.0);
    let mut all: Vec<T> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {columns} FROM {table} TABLESAMPLE BERNOULLI ({percent}) REPEATABLE (7) WHERE {filter}")))
            .fetch_all(db)
            .await?;
    all.shuffle(&mut rand::thread_rng());
    all.truncate(count);
    Ok(all)
}

impl AccountSamples {
    async fn draw(db: &PgPool, count: usize) -> anyhow::Result<Self> {
        let accounts: Vec<(Uuid, String)> = sample(db, "flat.users", "id, email", "true", count).await?;
        let logins: Vec<(String,)> = sample(db, "flat.users", "login", "login IS NOT NULL", count).await?;
        Ok(Self {
            ids: accounts.iter().map(|a| a.0).collect(),
            emails: accounts.into_iter().map(|a| a.1).collect(),
            logins: logins.into_iter().map(|l| l.0).collect(),
        })
    }
}

/// Accounts drawn in proportion to their sign-ins: those who look at their history.
async fn active_users(db: &PgPool, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let users: Vec<(Uuid,)> = sample(db, "flat.login_history", "user_id", "user_id IS NOT NULL", count).await?;
    Ok(users.into_iter().map(|u| u.0).collect())
}

/// A pool whose connections see `search_path` first (the unpartitioned copy: `flat`).
async fn measuring_pool(options: &PgConnectOptions, connections: u32, search_path: Option<&'static str>) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if let Some(path) = search_path {
                    conn.execute(sqlx::AssertSqlSafe(format!("SET search_path = {path}"))).await?;
                }
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?)
}

/// Latencies of one kind of call on both schemas.
struct Comparison {
    what: &'static str,
    partitioned: Vec<Duration>,
    flat: Vec<Duration>,
}

/// Runs `call` for every sample on both schemas, alternating which goes first, after a
/// warm-up of a tenth of the samples, and keeps each call's latency.
async fn compare<T>(
    bars: &MultiProgress,
    what: &'static str,
    samples: &[T],
    partitioned: &PgPool,
    flat: &PgPool,
    call: impl AsyncFn(&PgPool, bool, &T) -> Result<(), sqlx::Error>,
) -> anyhow::Result<Comparison> {
    let warmup = samples.len().div_ceil(10);
    let bar = counter(bars, what, (samples.len() + warmup) as i64);
    let mut result = Comparison { what, partitioned: Vec::with_capacity(samples.len()), flat: Vec::with_capacity(samples.len()) };
    for (i, sample) in samples[..warmup].iter().chain(samples).enumerate() {
        let order = if i % 2 == 0 { [false, true] } else { [true, false] };
        for is_flat in order {
            let db = if is_flat { flat } else { partitioned };
            let start = Instant::now();
            call(db, is_flat, sample).await.with_context(|| format!("{what} ({})", if is_flat { "unpartitioned" } else { "partitioned" }))?;
            let took = start.elapsed();
            if i >= warmup {
                if is_flat { &mut result.flat } else { &mut result.partitioned }.push(took);
            }
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(result)
}

struct InsertRate {
    schema: &'static str,
    rows_per_second: f64,
    latencies: Vec<Duration>,
}

/// Sign-ins recorded as the service records them, from several connections at once.
async fn insert_rate(
    bars: &MultiProgress,
    options: &PgConnectOptions,
    search_path: Option<&'static str>,
    args: &BenchArgs,
    accounts: &[Uuid],
) -> anyhow::Result<InsertRate> {
    let schema = if search_path.is_some() { "unpartitioned" } else { "partitioned" };
    let db = measuring_pool(options, args.insert_connections, search_path).await?;
    let bar =
        counter(bars, if search_path.is_some() { "sign-in inserts (unpartitioned)" } else { "sign-in inserts (partitioned)" }, args.inserts as i64);
    let accounts = Arc::new(accounts.to_vec());
    let client = Arc::new(Client { ip: Some(IpAddr::V4(Ipv4Addr::new(95, 24, 1, 7))), user_agent: Some(user_agents("mobile")[0].clone()) });
    let per_task = args.inserts.div_ceil(args.insert_connections as usize);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.insert_connections as usize)
        .map(|task| {
            let (db, accounts, client, bar) = (db.clone(), accounts.clone(), client.clone(), bar.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for i in 0..per_task {
                    let user = accounts[(task * per_task + i) % accounts.len()];
                    let start = Instant::now();
                    history::record(&db, Some(user), &client, Method::Password, Ok(())).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    latencies.push(start.elapsed());
                    bar.inc(1);
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    bar.finish();
    db.close().await;
    Ok(InsertRate { schema, rows_per_second: latencies.len() as f64 / elapsed.as_secs_f64(), latencies })
}

struct Retirement {
    month: String,
    rows: i64,
    partitioned: Duration,
    flat_delete: Duration,
    flat_vacuum: Duration,
}

/// Retires the oldest month of history: the service's maintenance drops its partition;
/// the unpartitioned table can only DELETE its rows (and VACUUM after).
async fn retire_oldest_month(bars: &MultiProgress, options: &PgConnectOptions) -> anyhow::Result<Retirement> {
    let step = spinner(bars, "retire the oldest month");
    let db = PgPoolOptions::new().max_connections(2).connect_with(options.clone()).await?;
    let mut conn = db.acquire().await?;
    let oldest = login_history_partitions(&mut conn).await?.into_iter().next().context("no history partition")?;
    drop(conn);
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {}", oldest.name))).fetch_one(&db).await?;
    // The retention, in whole months, that covers exactly the oldest month.
    let retention: i32 = sqlx::query_scalar("SELECT (extract(year FROM age(now(), $1)) * 12 + extract(month FROM age(now(), $1)))::int")
        .bind(oldest.to)
        .fetch_one(&db)
        .await?;
    let start = Instant::now();
    let outcome = partitions::maintain(&db, u32::try_from(retention)?).await?;
    let partitioned = start.elapsed();
    anyhow::ensure!(outcome.dropped == [oldest.clone()], "expected to drop {} alone, dropped {:?}", oldest.name, outcome.dropped);
    let start = Instant::now();
    let deleted = sqlx::query("DELETE FROM flat.login_history WHERE attempted_at < $1").bind(oldest.to).execute(&db).await?.rows_affected();
    let flat_delete = start.elapsed();
    anyhow::ensure!(deleted as i64 == rows, "deleted {deleted} rows, the month had {rows}");
    let start = Instant::now();
    sqlx::raw_sql("VACUUM flat.login_history").execute(&db).await?;
    let flat_vacuum = start.elapsed();
    db.close().await;
    step.finish();
    Ok(Retirement { month: oldest.name, rows, partitioned, flat_delete, flat_vacuum })
}

// ------------------------------------------------------------------ the report

/// How the data came out: sizes, and how evenly each candidate key would split it.
#[derive(Default)]
struct Shape {
    sizes: Vec<(String, i64, i64)>,
    spreads: Vec<(String, i64, f64, f64)>,
}

/// Sizes of the accounts' tables, and the shares of the accounts' candidate keys.
const USERS_SHAPE: [&str; 2] = [
    "VALUES ('users (partitioned)', 'public.users'), ('user_emails + user_logins', 'public.user_emails'), ('', 'public.user_logins'),
            ('users (unpartitioned)', 'flat.users')",
    "SELECT 'users: hash of id (16)' AS key, count(*)::float8 / sum(count(*)) OVER () AS share FROM users GROUP BY tableoid
     UNION ALL SELECT 'users: country (list)', count(*)::float8 / sum(count(*)) OVER () FROM flat.users GROUP BY country
     UNION ALL SELECT 'users: region (list)', count(*)::float8 / sum(count(*)) OVER () FROM flat.users GROUP BY country, region
     UNION ALL SELECT 'users: age class (list)', count(*)::float8 / sum(count(*)) OVER () FROM flat.users
         GROUP BY CASE WHEN birth_date IS NULL THEN 'unknown' WHEN age(birth_date) >= interval '18 years' THEN '18+'
                       WHEN age(birth_date) >= interval '16 years' THEN '16+' WHEN age(birth_date) >= interval '12 years' THEN '12+' ELSE '6+' END
     UNION ALL SELECT 'users: signup year (range)', count(*)::float8 / sum(count(*)) OVER () FROM flat.users GROUP BY date_trunc('year', created_at)",
];
/// The same for the sign-ins (whole months only).
const HISTORY_SHAPE: [&str; 2] = [
    "VALUES ('login_history (partitioned)', 'public.login_history'), ('login_history (unpartitioned)', 'flat.login_history')",
    "SELECT 'history: month (range)' AS key, count(*)::float8 / sum(count(*)) OVER () AS share FROM login_history
       WHERE attempted_at < date_trunc('month', now()) GROUP BY tableoid
     UNION ALL SELECT 'history: device class (list)', count(*)::float8 / sum(count(*)) OVER () FROM flat.login_history GROUP BY device",
];

impl Shape {
    /// Adds the sizes of the tables listed by `queries[0]` (label, table; an empty label
    /// adds to the line before) and the shares `queries[1]` computes: for each candidate
    /// key, the partitions it would make and the largest and smallest share of rows.
    async fn add(&mut self, db: &PgPool, queries: [&str; 2]) -> anyhow::Result<()> {
        let sizes: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT t.label,
                    (SELECT coalesce(sum(pg_table_size(r)), 0) FROM (SELECT relid FROM pg_partition_tree(t.rel::regclass) UNION SELECT t.rel::regclass) p(r))::bigint,
                    (SELECT coalesce(sum(pg_indexes_size(r)), 0) FROM (SELECT relid FROM pg_partition_tree(t.rel::regclass) UNION SELECT t.rel::regclass) p(r))::bigint
               FROM ({}) t(label, rel)",
            queries[0]
        )))
        .fetch_all(db)
        .await?;
        for (label, table, indexes) in sizes {
            match (label.is_empty(), self.sizes.last_mut()) {
                (true, Some(last)) => {
                    last.1 += table;
                    last.2 += indexes;
                }
                _ => self.sizes.push((label, table, indexes)),
            }
        }
        let spreads: Vec<(String, i64, f64, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH shares AS ({}) SELECT key, count(*), max(share), min(share) FROM shares GROUP BY key ORDER BY key",
            queries[1]
        )))
        .fetch_all(db)
        .await?;
        self.spreads.extend(spreads);
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn report(args: &BenchArgs, fill_time: Duration, shape: &Shape, rows: &[Comparison], inserts: &[InsertRate], retire: &Retirement) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### partition-bench: {} accounts, {} sign-ins over {HISTORY_MONTHS} months (filled in {:.0} s)\n",
        args.users,
        args.history,
        fill_time.as_secs_f64()
    );
    let _ = writeln!(out, "| Measure ({} samples each) | partitioned p50 ms | p99 ms | unpartitioned p50 ms | p99 ms |", args.samples);
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for row in rows {
        let (mut p, mut f) = (row.partitioned.clone(), row.flat.clone());
        p.sort();
        f.sort();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.what,
            ms(percentile(&p, 0.5)),
            ms(percentile(&p, 0.99)),
            ms(percentile(&f, 0.5)),
            ms(percentile(&f, 0.99))
        );
    }
    let _ = writeln!(out, "\n| Sign-in inserts ({} from {} connections) | rows/s | p50 ms | p99 ms |", args.inserts, args.insert_connections);
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for rate in inserts {
        let mut l = rate.latencies.clone();
        l.sort();
        let _ = writeln!(out, "| {} | {:.0} | {} | {} |", rate.schema, rate.rows_per_second, ms(percentile(&l, 0.5)), ms(percentile(&l, 0.99)));
    }
    let _ = writeln!(out, "\n| Retire the oldest month ({}, {} rows) | seconds |", retire.month, retire.rows);
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(out, "| partitioned: maintenance drops the partition | {:.3} |", retire.partitioned.as_secs_f64());
    let _ = writeln!(out, "| unpartitioned: DELETE | {:.3} |", retire.flat_delete.as_secs_f64());
    let _ = writeln!(out, "| unpartitioned: the VACUUM the DELETE leaves behind | {:.3} |", retire.flat_vacuum.as_secs_f64());
    let _ = writeln!(out, "\n| Size | table MB | indexes MB |\n|---|---:|---:|");
    for (label, table, indexes) in &shape.sizes {
        let _ = writeln!(out, "| {label} | {} | {} |", table / 1_048_576, indexes / 1_048_576);
    }
    let _ = writeln!(out, "\n| Candidate key | partitions | largest | smallest |\n|---|---:|---:|---:|");
    for (key, count, largest, smallest) in &shape.spreads {
        let _ = writeln!(out, "| {key} | {count} | {:.1}% | {:.2}% |", largest * 100.0, smallest * 100.0);
    }
    out
}

// ------------------------------------------------------------------ plumbing

fn batches(total: i64, size: i64) -> impl futures::Stream<Item = (i64, i64)> {
    stream::iter((0..(total + size - 1) / size).map(move |i| (i * size + 1, ((i + 1) * size).min(total))))
}

fn counter(bars: &MultiProgress, what: &str, len: i64) -> ProgressBar {
    let bar = bars.add(ProgressBar::new(len.max(0) as u64));
    bar.set_style(
        ProgressStyle::with_template("{prefix:<32} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})")
            .expect("a valid template"),
    );
    bar.set_prefix(what.to_owned());
    bar
}

fn spinner(bars: &MultiProgress, what: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(ProgressStyle::with_template("{prefix:<32} [{elapsed_precise}] {spinner}").expect("a valid template"));
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

async fn recreate_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    drop_database(server, name).await?;
    let mut admin = PgConnection::connect_with(&server.clone().database("postgres")).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {}", quote(name)))).await?;
    admin.close().await?;
    Ok(())
}

async fn drop_database(server: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect_with(&server.clone().database("postgres")).await?;
    admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(name)))).await?;
    admin.close().await?;
    Ok(())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_row_once() {
        let all: Vec<(i64, i64)> = futures::executor::block_on(batches(1_000_001, 250_000).collect());
        assert_eq!(all.first(), Some(&(1, 250_000)));
        assert_eq!(all.last(), Some(&(1_000_001, 1_000_001)));
        assert!(all.windows(2).all(|w| w[1].0 == w[0].1 + 1));
    }

    #[test]
    fn percentiles_pick_the_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!((percentile(&v, 0.5), percentile(&v, 0.99)), (Duration::from_millis(50), Duration::from_millis(99)));
    }

    #[test]
    fn weights_repeat_values() {
        assert_eq!(weighted(&[("a", 2), ("b", 1)]), ["a", "a", "b"]);
        for table in [DOMAINS, COUNTRIES, RU_REGIONS, DEVICES, METHODS] {
            assert_eq!(table.iter().map(|(_, w)| w).sum::<usize>(), 100);
        }
    }
}
