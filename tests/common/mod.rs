//! Test harness for black-box tests over HTTP against the real services that
//! `scripts/services.sh up` starts (`make test` does that and exports their settings).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod opa;
pub mod tls;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// A required variable from the environment that `scripts/services.sh up` exports.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: integration tests run against real services; use `make test`, or `eval \"$(scripts/services.sh up)\"` first")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `governance-engine serve` process, stopped (SIGTERM) on drop.
pub struct Service {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    log: std::path::PathBuf,
}

impl Service {
    /// Starts the service on the shared real services, with extra environment.
    pub async fn start(extra: &[(&str, &str)]) -> Service {
        var("AUMOS_DATABASE_URL");
        // The Kafka relay only where a test asks for it: it would otherwise publish the
        // shared ledger from every test's process.
        let kafka = extra.iter().any(|(k, _)| *k == "AUMOS_KAFKA_BOOTSTRAP_SERVERS");
        Self::spawn(extra, if kafka { &[] } else { &["AUMOS_KAFKA_BOOTSTRAP_SERVERS"] }).await
    }

    /// Starts the service with the given variables removed (e.g. the embedded default).
    pub async fn spawn(extra: &[(&str, &str)], remove: &[&str]) -> Service {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("gov-test-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance-engine"));
        cmd.arg("serve").env("AUMOS_HTTP_ADDR", format!("127.0.0.1:{port}")).env("RUST_LOG", "info,sqlx=warn");
        for k in remove {
            cmd.env_remove(k);
        }
        // A write answers 201 once every projector has it, 202 after this wait: on a loaded
        // CI machine the default 2 s was sometimes passed. Tests of the 202 set their own.
        // Below the 10 s request timeout: a read given a `min_seq` not yet projected waits
        // this long and must still answer (the fuzz test keeps the product's 2 s).
        cmd.env("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", "8000");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("spawn governance-engine");
        let svc = Service { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), log };
        svc.wait_ready(Duration::from_secs(60)).await;
        svc
    }

    async fn wait_ready(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(r) = self.client.get(format!("{}/health/ready", self.base)).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("service did not become ready; log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    /// The service's `GET /metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a request as `tenant` with `token`; returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        tenant: Option<Uuid>,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = tenant {
            req = req.header("X-Tenant-ID", t.to_string());
        }
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Submits evidence: a multipart `metadata` part (JSON) and an `artifact` part.
    pub async fn upload_evidence(
        &self,
        tenant: Uuid,
        token: &str,
        metadata: &Value,
        artifact: reqwest::multipart::Part,
    ) -> reqwest::Response {
        let form = reqwest::multipart::Form::new().text("metadata", metadata.to_string()).part("artifact", artifact);
        let req = self.client.post(format!("{}/api/v1/evidence", self.base)).bearer_auth(token).header("X-Tenant-ID", tenant.to_string());
        req.multipart(form).send().await.unwrap()
    }

    /// Freezes (`true`, SIGSTOP) or resumes (`false`, SIGCONT) the process: a frozen
    /// leader keeps its leases, so its projectors stop without a failover.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        assert!(Command::new("kill").arg(signal).arg(self.child.id().to_string()).status().unwrap().success());
    }

    /// SIGKILL: no graceful shutdown, as in a crash.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Announces a `len`-byte JSON body but sends none of it, and reads the answer: a
    /// server that rejects on Content-Length answers at once (a real client sending the
    /// whole body may instead see the connection closed under it).
    pub async fn post_announcing(&self, path: &str, tenant: Uuid, token: &str, len: usize) -> (StatusCode, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nX-Tenant-ID: {tenant}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
        let text = String::from_utf8_lossy(&raw);
        let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            serde_json::from_str(body.trim()).unwrap_or(Value::Null),
        )
    }

    pub async fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A token signed with the development key of the running services.
pub fn token(tenant: Uuid, roles: &[&str]) -> String {
    token_for(tenant, roles, "test-user", Duration::from_secs(600))
}

pub fn token_for(tenant: Uuid, roles: &[&str], subject: &str, ttl: Duration) -> String {
    let pem = std::fs::read(var("AUMOS_JWT_PRIVATE_KEY_FILE")).unwrap();
    let cfg = governance_engine::config::Config::from_process_env().unwrap().jwt;
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    governance_engine::adapters::auth::mint(&pem, &cfg, subject, &tenant.to_string(), &roles, ttl).unwrap()
}

pub const ADMIN: &[&str] = &["governance:admin"];

pub async fn connect(url_var: &str) -> PgConnection {
    PgConnection::connect(&var(url_var)).await.unwrap()
}

/// The row-level security policy of `public.table`: (USING, WITH CHECK) as PostgreSQL
/// prints them, or `None` when it has none.
pub async fn tenant_policy(table: &str) -> Option<(String, String)> {
    let mut su = connect("AUMOS_DEV_PRIMARY_SUPERUSER_URL").await;
    sqlx::query_as(
        "SELECT qual, with_check FROM pg_policies WHERE schemaname = 'public' AND tablename = $1 AND policyname = 'gov_tenant_isolation'",
    )
    .bind(table)
    .fetch_optional(&mut su)
    .await
    .unwrap()
}

/// Entries in the ledger, read as the reader role.
pub async fn ledger_count() -> i64 {
    let mut c = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries").fetch_one(&mut c).await.unwrap()
}

/// Creates and activates a policy of `tenant` (201, then 200: the harness waits 8 s for
/// read-your-writes); returns its id.
pub async fn active_policy(svc: &Service, tenant: Uuid, tok: &str, rego: &str) -> String {
    let body = serde_json::json!({"name": format!("attack-{}", Uuid::new_v4()), "description": "attack", "rego": rego});
    let (status, created) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(tok), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let policy = created["policy_id"].as_str().unwrap().to_owned();
    let (status, activated) = svc.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(tenant), Some(tok), None).await;
    assert_eq!(status, StatusCode::OK, "{activated}");
    policy
}

/// Entries of one tenant in the ledger (safe when other tests append concurrently).
pub async fn ledger_count_for(tenant: Uuid) -> i64 {
    let mut c = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE tenant_id = $1").bind(tenant).fetch_one(&mut c).await.unwrap()
}

pub fn policy_body(name: &str) -> Value {
    serde_json::json!({ "name": name, "description": "test policy", "rego": "package test.gate\n\nallow if input.score > 0.5\n" })
}

/// Asserts the error body shape and returns its code.
pub fn error_code(body: &Value) -> String {
    let e = &body["error"];
    assert!(e["message"].is_string(), "error body has a message: {body}");
    assert!(e["request_id"].as_str().is_some_and(|s| !s.is_empty()), "error body has a request_id: {body}");
    e["code"].as_str().unwrap_or_else(|| panic!("error body has a code: {body}")).to_owned()
}

/// Every variable that would point a process at the shared services.
pub const SHARED: &[&str] = &[
    "AUMOS_DATABASE_URL",
    "AUMOS_DATABASE_MIGRATION_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL",
    "AUMOS_JWT_PUBLIC_KEY_FILE",
    "AUMOS_JWT_PRIVATE_KEY_FILE",
    "AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE",
    "AUMOS_KAFKA_BOOTSTRAP_SERVERS",
    "AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET",
];

/// Runs the binary on the embedded default of `data_dir`; returns (success, stdout, stderr).
pub fn cli(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance-engine"));
    cmd.args(args).env("AUMOS_GOVERNANCE_DATA_DIR", data_dir);
    for k in SHARED {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A service on its own embedded clusters in a temporary directory: for tests that stop
/// or tamper with a database and must not disturb the shared one.
pub struct Embedded {
    pub svc: Service,
    pub dir: std::path::PathBuf,
    pub stack: governance_engine::adapters::devstack::LocalStack,
}

impl Embedded {
    pub async fn start(extra: &[(&str, &str)]) -> Embedded {
        let dir = std::env::temp_dir().join(format!("gov-embedded-{}", Uuid::new_v4()));
        let data_dir = dir.display().to_string();
        let mut env = vec![("AUMOS_GOVERNANCE_DATA_DIR", data_dir.as_str())];
        env.extend_from_slice(extra);
        let svc = Service::spawn(&env, SHARED).await;
        let stack =
            governance_engine::adapters::devstack::LocalStack::open_existing(&dir, std::path::Path::new("/usr/lib/postgresql/15/bin"))
                .unwrap();
        Embedded { svc, dir, stack }
    }

    /// `dev token` against this data directory.
    pub fn token(&self, tenant: Uuid, roles: &str) -> String {
        let (ok, out, err) = cli(&self.dir, &["dev", "token", "--tenant", &tenant.to_string(), "--roles", roles]);
        assert!(ok, "{err}");
        assert_eq!(out.lines().count(), 1, "dev token prints only the token");
        out.trim().to_owned()
    }

    pub fn superuser_url(&self, c: governance_engine::adapters::devstack::Cluster) -> String {
        let db = match c {
            governance_engine::adapters::devstack::Cluster::Primary => governance_engine::adapters::devstack::PRIMARY_DB,
            governance_engine::adapters::devstack::Cluster::Audit => governance_engine::adapters::devstack::AUDIT_DB,
        };
        self.stack.superuser_url(c, db)
    }

    /// Stops the service and its clusters and removes the directory.
    pub async fn finish(self) -> String {
        let log = self.svc.stop().await;
        let _ = self.stack.stop_all();
        let _ = std::fs::remove_dir_all(&self.dir);
        log
    }
}

/// Fetches the ledger's verifier key over HTTP into a temporary file.
pub async fn verifier_key_file(svc: &Service, tenant: Uuid, tok: &str) -> std::path::PathBuf {
    let r = svc
        .client
        .get(format!("{}/api/v1/ledger/public-key", svc.base))
        .bearer_auth(tok)
        .header("X-Tenant-ID", tenant.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let path = std::env::temp_dir().join(format!("gov-verifier-key-{}", Uuid::new_v4()));
    std::fs::write(&path, r.text().await.unwrap()).unwrap();
    path
}

/// A consumer of `topics` from the beginning, in a group of its own.
pub fn kafka_consumer(topics: &[&str]) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", var("AUMOS_KAFKA_BOOTSTRAP_SERVERS"))
        .set("group.id", format!("test-{}", Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .unwrap();
    consumer.subscribe(topics).unwrap();
    consumer
}

/// A fresh tenant with an admin token, calling one service. Test files add their own
/// helpers in `impl Tenant<'_>` blocks.
pub struct Tenant<'a> {
    pub svc: &'a Service,
    pub id: Uuid,
    pub tok: String,
}

/// A policy any input with a score above 0.5 passes: what a bystander tenant evaluates.
pub const BYSTANDER_GATE: &str = "package bystander.gate\n\nallow if input.score > 0.5\n";

/// A service with no evaluation rate limit and a 5 s evaluation deadline, and two tenants
/// (a hostile one and a bystander), each with an active [`BYSTANDER_GATE`]: the attack
/// tests' common start. Returns the policies' ids with the tenants.
pub async fn hostile_and_bystander(svc: &Service) -> ((Tenant<'_>, String), (Tenant<'_>, String)) {
    let (a, b) = (Tenant::new(svc), Tenant::new(svc));
    let (pa, pb) = (active_policy(svc, a.id, &a.tok, BYSTANDER_GATE).await, active_policy(svc, b.id, &b.tok, BYSTANDER_GATE).await);
    ((a, pa), (b, pb))
}

/// The bystander of [`hostile_and_bystander`] evaluates its gate `n` times in turn; each
/// answer is an allow within 5 s.
pub async fn bystander_served(b: &Tenant<'_>, policy: &str, n: usize) {
    for _ in 0..n {
        let t0 = Instant::now();
        let (status, d) =
            b.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(serde_json::json!({"input": {"score": 0.9}}))).await;
        assert_eq!((status, &d["result"]), (StatusCode::OK, &serde_json::json!({"allow": true})), "{d}");
        assert!(t0.elapsed() < Duration::from_secs(5), "the bystander waited {:?}", t0.elapsed());
    }
}

/// The attack tests' service: no evaluation rate limit, a 5 s evaluation deadline (not a
/// deadline test: a bystander's evaluations may wait for a core).
pub async fn attack_service() -> Service {
    Service::start(&[("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "0"), ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000")]).await
}

impl Tenant<'_> {
    pub fn new(svc: &Service) -> Tenant<'_> {
        let id = Uuid::new_v4();
        Tenant { svc, id, tok: token(id, ADMIN) }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.svc.call(method, path, Some(self.id), Some(&self.tok), body.as_ref()).await
    }
}

/// The value of the Prometheus sample whose line starts with `prefix` (name and labels), if any.
pub fn metric_sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}
