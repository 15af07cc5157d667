//! Spawning the app on port 0 against a database of its own, and a small HTTP client that
//! holds every response to the committed spec.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

use balance::{Config, http};
use kernel::{UserId, migrate as db};
use reqwest::{RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde_json::Value;
use testkit::{db::TestDb, openapi::Spec};

use crate::test_api::TestApi;

/// A database with every migration applied, cloned from the template.
pub async fn migrated_db() -> TestDb {
    TestDb::migrated(balance::platform::SCHEMA_SALT, |t| async move {
        balance::platform::migrate(&t.owner_url, &t.runtime_url).await
    })
    .await
    .expect("test database")
}

/// The app, serving the product API plus the test-only routes.
pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    /// Kept alive (and dropped) with the app; tests may query it.
    #[allow(dead_code)]
    pub db: TestDb,
    /// The platform's services (audit log, cursors).
    pub platform: balance::Platform,
    /// The app's own pool as modules see it, for arranging and checking data.
    pub kernel_db: kernel::Db,
    /// How many times the test API's idempotent work ran.
    pub runs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    server: Option<http::Server>,
    worker: Option<tokio::sync::oneshot::Sender<()>>,
    /// The SMTP sink mail goes to (with [`TestApp::spawn_with_worker`]).
    pub smtp: Option<testkit::smtp::SmtpSink>,
    pub data_dir: PathBuf,
    /// Every response held to the spec, in order.
    pub answered: Mutex<Vec<Answer>>,
}

/// A response that was held to the spec: its operation and status.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Lower-case, as the spec's `paths` name it.
    pub method: String,
    /// The spec's path template.
    pub path: String,
    pub status: u16,
}

/// `openapi/openapi.json`, what clients are generated from.
pub fn committed_spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = testkit::repo_root().join("openapi/openapi.json");
        let text = std::fs::read_to_string(&path).expect("openapi/openapi.json");
        Spec::new(serde_json::from_str(&text).expect("the committed spec is JSON"))
    })
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// With extra `BALANCE_*` variables.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> TestApp {
        Self::start(migrated_db().await, vars).await
    }

    /// With mail to an SMTP sink and the job runner in-process (mail is sent by jobs).
    pub async fn spawn_with_worker(vars: &[(&str, &str)]) -> TestApp {
        let sink = testkit::smtp::SmtpSink::start().await.unwrap();
        let url = sink.url();
        let mut all: Vec<(&str, &str)> = vec![("BALANCE_SMTP_URL", &url)];
        all.extend_from_slice(vars);
        let mut app = Self::start(migrated_db().await, &all).await;
        let runner = app.platform.runner(jobs::RunnerConfig {
            poll: std::time::Duration::from_millis(200),
            heartbeat: std::time::Duration::from_secs(1),
            shutdown_timeout: std::time::Duration::from_secs(5),
            ..jobs::RunnerConfig::default()
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(runner.run(async move {
            let _ = stopped.await;
        }));
        app.worker = Some(stop);
        app.smtp = Some(sink);
        app
    }

    /// On a given database.
    pub async fn start(db: TestDb, vars: &[(&str, &str)]) -> TestApp {
        // The app's logs, shown by the test runner when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,balance=info")
            .with_test_writer()
            .try_init();
        let data_dir = std::env::temp_dir().join(format!("balance-test-{}", uuid::Uuid::now_v7()));
        let mut map: BTreeMap<String, String> = BTreeMap::from([
            ("BALANCE_DATABASE_URL".into(), db.runtime_url.clone()),
            ("BALANCE_DATABASE_OWNER_URL".into(), db.owner_url.clone()),
            ("BALANCE_LISTEN".into(), "127.0.0.1:0".into()),
            ("BALANCE_DATA_DIR".into(), data_dir.to_string_lossy().into()),
            // Tests lift the plan limits; the tests of billing set their own.
            (
                "BALANCE_PLANS".into(),
                r#"{"free": {"limits": {"members": null, "bank_connections": null, "transactions_per_month": null, "telegram_recipients": null}}}"#.into(),
            ),
            // Tests raise the limits; the tests of the limits lower them again.
            (
                "BALANCE_RATE_LIMITS".into(),
                "login_ip=100000/min,login_account=100000/min,signup_ip=100000/min,reset_account=100000/min,\
                 verify_ip=100000/min,totp_account=100000/min,api_key=100000/min,user=100000/min,\
                 reset_ip=100000/min,reset_confirm_ip=100000/min,invite_tenant=100000/min,invite_user=100000/min"
                    .into(),
            ),
        ]);
        let production_argon2 = vars
            .iter()
            .any(|(k, v)| *k == "argon2" && *v == "production");
        for (k, v) in vars {
            map.insert(k.to_string(), v.to_string());
        }
        let mut config = Config::load(&|name| map.get(name).cloned()).expect("test configuration");
        if !production_argon2 {
            config.argon2 = identity::Argon2Params::TEST;
        }
        let url = config
            .database
            .url
            .as_ref()
            .expect("a runtime URL")
            .expose()
            .clone();
        let pool = db::runtime_pool(&url, 10).expect("pool");
        let platform = balance::Platform::new(&config, pool.clone()).expect("platform");
        let test_api = TestApi {
            db: platform.db.clone(),
            cursors: config.keys.cursor_signer(),
            runs: Default::default(),
        };
        let runs = test_api.runs.clone();
        platform.listen_policy();
        let server = http::Server::start(
            &config.http,
            pool.clone(),
            (http::product_api(&platform), test_api),
        )
        .await
        .expect("server starts");
        TestApp {
            addr: server.addr,
            admin_addr: server.admin_addr,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            db,
            kernel_db: platform.db.clone(),
            platform,
            runs,
            server: Some(server),
            data_dir,
            worker: None,
            smtp: None,
            answered: Mutex::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.client.get(self.url(path)))
            .await
            .expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.client.post(self.url(path)).json(body))
            .await
            .expect("request")
    }

    /// Sends `req` and holds the response to the committed spec: a response that
    /// contradicts it fails the test with every violation listed. Responses of routes the
    /// spec does not have (the test-only routes, the operations endpoints, a 405 for a
    /// method the path lacks) are passed on unchecked.
    pub async fn send(&self, req: RequestBuilder) -> reqwest::Result<Response> {
        let (client, req) = req.build_split();
        let req = req?;
        let (method, path) = (req.method().clone(), req.url().path().to_string());
        let resp = client.execute(req).await?;
        let Some((template, _)) = committed_spec().operation(method.as_str(), &path) else {
            return Ok(resp);
        };
        let (status, version, headers) = (resp.status(), resp.version(), resp.headers().clone());
        let body = resp.bytes().await?;
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let violations = committed_spec().check_response(
            method.as_str(),
            &path,
            status.as_u16(),
            content_type,
            &body,
        );
        assert!(
            violations.is_empty(),
            "{method} {path} -> {status}: the response contradicts openapi/openapi.json:\n{}\nbody: {}",
            violations.join("\n"),
            String::from_utf8_lossy(&body)
        );
        self.answered.lock().unwrap().push(Answer {
            method: method.as_str().to_ascii_lowercase(),
            path: template,
            status: status.as_u16(),
        });
        // The same response again, for the test to read as it was.
        let mut rebuilt = ::http::Response::builder().status(status).version(version);
        *rebuilt.headers_mut().expect("a fresh builder") = headers;
        Ok(Response::from(
            rebuilt.body(body).expect("parts of a response"),
        ))
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.worker.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A response's status, headers and JSON body.
pub async fn parts(resp: Response) -> (StatusCode, HeaderMap, Value) {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// Asserts that `resp` is an RFC 9457 problem with `status` and `code`, carrying the same
/// request id as its header, and returns its body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    let (actual, headers, body) = parts(resp).await;
    assert_eq!(actual.as_u16(), status, "status of {body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["type"], format!("urn:balance:problem:{code}"));
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["request_id"], request_id, "{body}");
    body
}

/// Arranging data through the same handles module code uses.
pub use testkit::seed;

impl TestApp {
    /// A request with a bearer token; its response is held to the spec ([`TestApp::send`]).
    pub fn authed(&self, method: reqwest::Method, path: &str, token: &str) -> Call<'_> {
        Call {
            app: self,
            req: self
                .client
                .request(method, self.url(path))
                .bearer_auth(token),
        }
    }

    /// Signs up `email` with a strong password; returns the password.
    pub async fn signup(&self, email: &str) -> String {
        let password = "correct horse battery staple".to_string();
        let resp = self
            .post_json(
                "/api/v1/auth/signup",
                &serde_json::json!({"email": email, "password": password, "name": "Ada Lovelace"}),
            )
            .await;
        assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
        password
    }

    /// Confirms `email` with the link its verification mail carries (read from the SMTP
    /// sink when a worker sends mail, else from the outbox).
    pub async fn verify_email(&self, email: &str) {
        let token = match self.smtp {
            Some(_) => self.mailed_token(email, "verify-email").await,
            None => testkit::seed::mailed_token(&self.kernel_db, email, "verify_email").await,
        };
        let resp = self
            .post_json(
                "/api/v1/auth/verify-email",
                &serde_json::json!({ "token": token }),
            )
            .await;
        assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap());
    }

    /// Signs up, confirms the address and signs in `email`; returns the access token and
    /// the user's id.
    pub async fn new_user(&self, email: &str) -> (String, UserId) {
        let password = self.signup(email).await;
        self.verify_email(email).await;
        let token = self.login(email, &password).await.0;
        let (_, _, me) = parts(
            self.authed(reqwest::Method::GET, "/api/v1/me", &token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let id = me["id"].as_str().unwrap().parse().unwrap();
        (token, UserId::from_uuid(id))
    }

    /// Creates a tenant through the API; the caller of `token` becomes its owner.
    pub async fn create_tenant(&self, token: &str, name: &str) -> kernel::TenantId {
        let (status, _, t) = parts(
            self.authed(reqwest::Method::POST, "/api/v1/tenants", token)
                .json(&serde_json::json!({ "name": name }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{t}");
        t["id"].as_str().unwrap().parse().unwrap()
    }

    /// Signs in; returns `(access, refresh)`.
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let (status, _, body) = parts(
            self.post_json(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        (
            body["access_token"].as_str().unwrap().to_string(),
            body["refresh_token"].as_str().unwrap().to_string(),
        )
    }

    /// Waits for the mail to `to` with a link to `path` (`verify-email`, `reset-password`)
    /// and returns the link's token. Mail jobs run concurrently, so order is not a guide.
    pub async fn mailed_token(&self, to: &str, path: &str) -> String {
        let sink = self.smtp.as_ref().expect("spawned with a worker");
        let needle = format!("/{path}?token=");
        let mail = testkit::eventually(std::time::Duration::from_secs(30), || async {
            sink.messages().into_iter().find(|m| {
                m.to.iter().any(|t| t == to) && m.data.replace("=\r\n", "").contains(&needle)
            })
        })
        .await
        .unwrap_or_else(|| panic!("no mail to {to} with a {path} link"));
        token_in(&mail.data).unwrap_or_else(|| panic!("no token in {}", mail.data))
    }

    /// Types of the platform chain's events, oldest first.
    pub async fn platform_events(&self) -> Vec<(String, String)> {
        let mut tx = kernel::SystemTx::begin(&self.kernel_db, kernel::Actor::System)
            .await
            .unwrap();
        sqlx::query_as("SELECT type, canonical FROM platform_events ORDER BY seq")
            .fetch_all(tx.conn())
            .await
            .unwrap()
    }
}

/// A request being built, whose response [`TestApp::send`] holds to the spec.
pub struct Call<'a> {
    app: &'a TestApp,
    req: RequestBuilder,
}

impl Call<'_> {
    pub fn header(self, name: &str, value: impl std::fmt::Display) -> Self {
        Call {
            req: self.req.header(name, value.to_string()),
            ..self
        }
    }

    pub fn json(self, body: &Value) -> Self {
        Call {
            req: self.req.json(body),
            ..self
        }
    }

    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Call {
            req: self.req.body(body),
            ..self
        }
    }

    pub async fn send(self) -> reqwest::Result<Response> {
        self.app.send(self.req).await
    }
}

/// The `token` query parameter of the first link in a mail (quoted-printable aware).
pub fn token_in(data: &str) -> Option<String> {
    let unfolded = data.replace("=\r\n", "").replace("=3D", "=");
    let at = unfolded.find("token=")? + "token=".len();
    let raw: String = unfolded[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "%_-.".contains(*c))
        .collect();
    Some(
        raw.replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "="),
    )
}

/// A `multipart/form-data` body: the text fields in order, then `file` (when given) last,
/// as `POST …/imports` takes it. Returns the content type and the body.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = format!("balance-{}", uuid::Uuid::now_v7().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((file_name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
