//! Configuration: every `BALANCE_*` variable parsed and validated once, at start, into
//! typed sections handed to the modules. Modules never read the environment.
//!
//! A bad value stops the process with one line naming the variable (exit code 2).
//! In development, keys that are not configured are generated once under the data
//! folder; `BALANCE_ENV=production` refuses every such development default.

use std::{
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kernel::Secret;
use url::Url;

/// A configuration value that is wrong: which variable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// Where the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    /// Where development keys and mail files live (`BALANCE_DATA_DIR`, default `.data`).
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub keys: KeysConfig,
    pub mail: MailConfig,
    pub telegram: Option<TelegramConfig>,
    pub stripe: Option<StripeConfig>,
    /// The plan catalogue: the defaults with `BALANCE_PLANS` (a JSON document, or the path
    /// of one) applied.
    pub plans: std::sync::Arc<billing::Catalogue>,
    /// How long a payment may stay overdue before the tenant is read-only
    /// (`BALANCE_BILLING_GRACE_DAYS`, default 14).
    pub billing_grace: Duration,
    /// The ECB daily reference-rate file the daily rates job fetches
    /// (`BALANCE_FX_DAILY_URL`); `None`: the shipped history only.
    pub fx_daily_url: Option<Url>,
    pub plaid: Option<PlaidConfig>,
    /// The built-in sandbox bank (`BALANCE_BANK_SANDBOX`: on by default, off by default in
    /// production).
    pub bank_sandbox: bool,
    pub llm: Option<LlmConfig>,
    pub rate_limits: RateLimits,
    /// Password hashing cost: production's unless a test lowers it (not an environment
    /// variable: a deployment never should).
    pub argon2: identity::Argon2Params,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub public_url: Url,
    pub cors_origins: Vec<String>,
    pub conn: ConnLimits,
}

/// Deadlines and caps of client connections (`BALANCE_HTTP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// A request head must arrive in full within this, counted from the connection's
    /// start or the next request's first byte.
    pub header_timeout: Duration,
    /// A JSON body must arrive in full within this; a streamed upload must deliver a chunk
    /// at least this often.
    pub body_timeout: Duration,
    /// A kept-alive connection with no request, or one where no byte moves while a
    /// request is served, is closed after this.
    pub idle_timeout: Duration,
    /// Open connections at most; more are answered `503` and closed.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64) at most.
    pub max_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_per_ip: 256,
        }
    }
}

impl HttpConfig {
    /// HSTS is sent only when the public address is https.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The runtime role (no ownership, no RLS bypass). `None` until configured.
    pub url: Option<Secret<String>>,
    /// The owner role, for migrations.
    pub owner_url: Option<Secret<String>>,
    /// Connections the API's pool opens at most.
    pub pool_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
    pub otlp_endpoint: Option<Url>,
}

/// Keys of a ring: the first signs or encrypts, all verify or decrypt.
#[derive(Debug, Clone)]
pub struct KeyRing {
    pub keys: Vec<(String, Secret<Vec<u8>>)>,
    /// True when the keys are a development default generated under the data folder.
    pub generated: bool,
}

#[derive(Debug, Clone)]
pub struct KeysConfig {
    pub jwt: KeyRing,
    pub encryption: KeyRing,
    pub audit_signing: KeyRing,
    pub token_peppers: KeyRing,
}

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `None`: mail is written as `.eml` files under `<data_dir>/mail/`.
    pub smtp_url: Option<Secret<Url>>,
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub bot_token: Secret<String>,
    pub api_url: Url,
    pub webhook_secret: Option<Secret<String>>,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: Secret<String>,
    pub api_base: Url,
    pub webhook_secrets: Vec<Secret<String>>,
}

#[derive(Debug, Clone)]
pub struct PlaidConfig {
    pub client_id: String,
    pub secret: Secret<String>,
    pub base_url: Url,
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub base_url: Url,
    pub api_key: Option<Secret<String>>,
    pub model: String,
    /// One call's deadline (`BALANCE_LLM_TIMEOUT`, seconds, default 20).
    pub timeout: std::time::Duration,
    /// Calls per tenant and day (`BALANCE_LLM_DAILY_CALLS`, default 100).
    pub daily_calls: u32,
}

/// `max` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

/// The rate limits of API.md, by name, with overrides from `BALANCE_RATE_LIMITS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits(pub BTreeMap<&'static str, RateLimit>);

const DEFAULT_RATE_LIMITS: &[(&str, &str)] = &[
    ("login_ip", "60/min"),
    ("login_account", "10/15min"),
    ("signup_ip", "20/10min"),
    ("reset_account", "3/hour"),
    ("verify_ip", "30/min"),
    ("totp_account", "10/15min"),
    ("api_key", "600/min"),
    ("user", "1200/min"),
    ("reset_ip", "20/hour"),
    ("reset_confirm_ip", "30/10min"),
    ("invite_tenant", "50/hour"),
    ("invite_user", "20/hour"),
];

impl RateLimits {
    pub fn get(&self, name: &str) -> RateLimit {
        self.0[name]
    }
}

/// Every variable this module reads, with its default, for README and `--help`.
pub const VARIABLES: &[&str] = &[
    "BALANCE_ENV",
    "BALANCE_DATA_DIR",
    "BALANCE_LISTEN",
    "BALANCE_ADMIN_LISTEN",
    "BALANCE_PUBLIC_URL",
    "BALANCE_CORS_ORIGINS",
    "BALANCE_HTTP_HEADER_TIMEOUT",
    "BALANCE_HTTP_BODY_TIMEOUT",
    "BALANCE_HTTP_IDLE_TIMEOUT",
    "BALANCE_HTTP_MAX_CONNECTIONS",
    "BALANCE_HTTP_MAX_CONNECTIONS_PER_IP",
    "BALANCE_DATABASE_URL",
    "BALANCE_DATABASE_OWNER_URL",
    "BALANCE_DATABASE_POOL_SIZE",
    "BALANCE_LOG",
    "BALANCE_LOG_FORMAT",
    "BALANCE_OTLP_ENDPOINT",
    "BALANCE_JWT_KEYS",
    "BALANCE_ENCRYPTION_KEYS",
    "BALANCE_AUDIT_SIGNING_KEYS",
    "BALANCE_TOKEN_PEPPERS",
    "BALANCE_SMTP_URL",
    "BALANCE_MAIL_FROM",
    "BALANCE_TELEGRAM_BOT_TOKEN",
    "BALANCE_TELEGRAM_API_URL",
    "BALANCE_TELEGRAM_WEBHOOK_SECRET",
    "BALANCE_STRIPE_SECRET_KEY",
    "BALANCE_STRIPE_API_BASE",
    "BALANCE_STRIPE_WEBHOOK_SECRETS",
    "BALANCE_PLAID_CLIENT_ID",
    "BALANCE_PLAID_SECRET",
    "BALANCE_PLAID_BASE_URL",
    "BALANCE_BANK_SANDBOX",
    "BALANCE_LLM_BASE_URL",
    "BALANCE_LLM_API_KEY",
    "BALANCE_LLM_MODEL",
    "BALANCE_LLM_TIMEOUT",
    "BALANCE_LLM_DAILY_CALLS",
    "BALANCE_RATE_LIMITS",
];

/// Reads variables by name; an empty value counts as unset.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::load(&|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests and `balance dev` pass their own).
    pub fn load(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(lookup);
        let env = match vars.get("BALANCE_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(err(
                    "BALANCE_ENV",
                    format!("`{other}` is not `development` or `production`"),
                ));
            }
        };
        let prod = env == Environment::Production;
        let data_dir = PathBuf::from(
            vars.get("BALANCE_DATA_DIR")
                .unwrap_or_else(|| ".data".into()),
        );

        let listen = socket_addr(&vars, "BALANCE_LISTEN")?.unwrap_or(([127, 0, 0, 1], 8080).into());
        let admin_listen = socket_addr(&vars, "BALANCE_ADMIN_LISTEN")?;
        if admin_listen == Some(listen) && listen.port() != 0 {
            return Err(err(
                "BALANCE_ADMIN_LISTEN",
                "must differ from BALANCE_LISTEN",
            ));
        }
        let public_url = match vars.get("BALANCE_PUBLIC_URL") {
            Some(raw) => http_url(&raw, "BALANCE_PUBLIC_URL")?,
            None if prod => return Err(err("BALANCE_PUBLIC_URL", "required in production")),
            None => {
                Url::parse(&format!("http://{listen}")).expect("socket address is a valid host")
            }
        };
        let cors_origins = list(&vars, "BALANCE_CORS_ORIGINS")
            .into_iter()
            .map(|o| origin(&o))
            .collect::<Result<Vec<_>, _>>()?;
        let conn = conn_limits(&vars)?;

        let database = DatabaseConfig {
            url: postgres_url(&vars, "BALANCE_DATABASE_URL")?,
            owner_url: postgres_url(&vars, "BALANCE_DATABASE_OWNER_URL")?,
            pool_size: match vars.get("BALANCE_DATABASE_POOL_SIZE") {
                None => 20,
                Some(raw) => raw
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        err(
                            "BALANCE_DATABASE_POOL_SIZE",
                            "a whole number from 1 to 1000",
                        )
                    })?,
            },
        };
        if prod && database.url.is_none() {
            return Err(err("BALANCE_DATABASE_URL", "required in production"));
        }

        let format = match vars.get("BALANCE_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(err(
                    "BALANCE_LOG_FORMAT",
                    format!("`{other}` is not `json` or `pretty`"),
                ));
            }
        };
        let filter = vars.get("BALANCE_LOG").unwrap_or_else(|| "info".into());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&filter) {
            return Err(err("BALANCE_LOG", format!("not a valid log filter: {e}")));
        }
        let otlp_endpoint = vars
            .get("BALANCE_OTLP_ENDPOINT")
            .map(|raw| http_url(&raw, "BALANCE_OTLP_ENDPOINT"))
            .transpose()?;

        let keys = KeysConfig {
            jwt: key_ring(&vars, env, &data_dir, "BALANCE_JWT_KEYS", KeyKind::Secret)?,
            encryption: key_ring(
                &vars,
                env,
                &data_dir,
                "BALANCE_ENCRYPTION_KEYS",
                KeyKind::Base64Of32,
            )?,
            audit_signing: key_ring(
                &vars,
                env,
                &data_dir,
                "BALANCE_AUDIT_SIGNING_KEYS",
                KeyKind::Base64Of32,
            )?,
            token_peppers: key_ring(
                &vars,
                env,
                &data_dir,
                "BALANCE_TOKEN_PEPPERS",
                KeyKind::Secret,
            )?,
        };

        let smtp_url = match vars.get("BALANCE_SMTP_URL") {
            Some(raw) => {
                let url = Url::parse(&raw)
                    .map_err(|e| err("BALANCE_SMTP_URL", format!("not a URL: {e}")))?;
                if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
                    return Err(err(
                        "BALANCE_SMTP_URL",
                        "must be smtp://host[:port] or smtps://host[:port]",
                    ));
                }
                Some(Secret::new(url))
            }
            None if prod => {
                return Err(err(
                    "BALANCE_SMTP_URL",
                    "required in production (mail to files is a development default)",
                ));
            }
            None => None,
        };
        let from = vars
            .get("BALANCE_MAIL_FROM")
            .unwrap_or_else(|| "Balance <balance@localhost>".into());
        if !from.contains('@') || from.contains(['\r', '\n']) {
            return Err(err(
                "BALANCE_MAIL_FROM",
                "must be an address such as `Balance <no-reply@example.com>`",
            ));
        }

        let telegram = match vars.get("BALANCE_TELEGRAM_BOT_TOKEN") {
            None => None,
            Some(token) => {
                let (id, rest) = token.split_once(':').unwrap_or(("", ""));
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || rest.len() < 20 {
                    return Err(err(
                        "BALANCE_TELEGRAM_BOT_TOKEN",
                        "must look like `123456:ABC...` (from @BotFather)",
                    ));
                }
                let webhook_secret = vars.get("BALANCE_TELEGRAM_WEBHOOK_SECRET");
                let valid_secret = |s: &String| {
                    s.len() <= 256
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                };
                if webhook_secret.as_ref().is_some_and(|s| !valid_secret(s)) {
                    return Err(err(
                        "BALANCE_TELEGRAM_WEBHOOK_SECRET",
                        "1-256 characters of A-Z, a-z, 0-9, _ and -",
                    ));
                }
                Some(TelegramConfig {
                    bot_token: Secret::new(token),
                    api_url: url_or(
                        &vars,
                        "BALANCE_TELEGRAM_API_URL",
                        "https://api.telegram.org",
                    )?,
                    webhook_secret: webhook_secret.map(Secret::new),
                })
            }
        };

        let stripe = match vars.get("BALANCE_STRIPE_SECRET_KEY") {
            None => None,
            Some(key) => {
                if !(key.starts_with("sk_") || key.starts_with("rk_")) {
                    return Err(err(
                        "BALANCE_STRIPE_SECRET_KEY",
                        "must be a Stripe secret key (`sk_...` or `rk_...`)",
                    ));
                }
                let webhook_secrets = list(&vars, "BALANCE_STRIPE_WEBHOOK_SECRETS");
                if webhook_secrets.is_empty() {
                    return Err(err(
                        "BALANCE_STRIPE_WEBHOOK_SECRETS",
                        "required when BALANCE_STRIPE_SECRET_KEY is set",
                    ));
                }
                if let Some(bad) = webhook_secrets.iter().find(|s| !s.starts_with("whsec_")) {
                    let shown: String = bad.chars().take(6).collect();
                    return Err(err(
                        "BALANCE_STRIPE_WEBHOOK_SECRETS",
                        format!("`{shown}...` is not a signing secret (`whsec_...`)"),
                    ));
                }
                Some(StripeConfig {
                    secret_key: Secret::new(key),
                    api_base: url_or(&vars, "BALANCE_STRIPE_API_BASE", "https://api.stripe.com")?,
                    webhook_secrets: webhook_secrets.into_iter().map(Secret::new).collect(),
                })
            }
        };

        let plaid = match (
            vars.get("BALANCE_PLAID_CLIENT_ID"),
            vars.get("BALANCE_PLAID_SECRET"),
        ) {
            (None, None) => None,
            (Some(client_id), Some(secret)) => Some(PlaidConfig {
                client_id,
                secret: Secret::new(secret),
                base_url: url_or(&vars, "BALANCE_PLAID_BASE_URL", "https://sandbox.plaid.com")?,
            }),
            (Some(_), None) => {
                return Err(err(
                    "BALANCE_PLAID_SECRET",
                    "required when BALANCE_PLAID_CLIENT_ID is set",
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "BALANCE_PLAID_CLIENT_ID",
                    "required when BALANCE_PLAID_SECRET is set",
                ));
            }
        };

        let bank_sandbox = match vars.get("BALANCE_BANK_SANDBOX").as_deref() {
            None => env != Environment::Production,
            Some("true" | "1" | "on") => true,
            Some("false" | "0" | "off") => false,
            Some(other) => {
                return Err(err(
                    "BALANCE_BANK_SANDBOX",
                    format!("`{other}` is not true or false"),
                ));
            }
        };

        let llm = match vars.get("BALANCE_LLM_BASE_URL") {
            None => None,
            Some(raw) => Some(LlmConfig {
                base_url: http_url(&raw, "BALANCE_LLM_BASE_URL")?,
                api_key: vars.get("BALANCE_LLM_API_KEY").map(Secret::new),
                model: vars.get("BALANCE_LLM_MODEL").ok_or_else(|| {
                    err(
                        "BALANCE_LLM_MODEL",
                        "required when BALANCE_LLM_BASE_URL is set",
                    )
                })?,
                timeout: std::time::Duration::from_secs(
                    whole(&vars, "BALANCE_LLM_TIMEOUT", 1..=600)?.unwrap_or(20),
                ),
                daily_calls: whole(&vars, "BALANCE_LLM_DAILY_CALLS", 0..=1_000_000)?
                    .map_or(100, |n| n as u32),
            }),
        };

        let rate_limits = rate_limits(vars.get("BALANCE_RATE_LIMITS").as_deref())?;

        let plans = match vars.get("BALANCE_PLANS") {
            None => billing::Catalogue::default(),
            Some(raw) => {
                let document = if raw.trim_start().starts_with('{') {
                    raw
                } else {
                    std::fs::read_to_string(&raw)
                        .map_err(|e| err("BALANCE_PLANS", format!("cannot read `{raw}`: {e}")))?
                };
                billing::Catalogue::with_overrides(&document)
                    .map_err(|e| err("BALANCE_PLANS", e))?
            }
        };
        let fx_daily_url = vars
            .get("BALANCE_FX_DAILY_URL")
            .map(|raw| http_url(&raw, "BALANCE_FX_DAILY_URL"))
            .transpose()?;
        let billing_grace = match vars.get("BALANCE_BILLING_GRACE_DAYS") {
            None => Duration::from_secs(14 * 86_400),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|d| *d <= 365)
                .map(|d| Duration::from_secs(d * 86_400))
                .ok_or_else(|| {
                    err(
                        "BALANCE_BILLING_GRACE_DAYS",
                        format!("`{raw}` is not a number of days from 0 to 365"),
                    )
                })?,
        };

        Ok(Config {
            env,
            data_dir,
            http: HttpConfig {
                listen,
                admin_listen,
                public_url,
                cors_origins,
                conn,
            },
            database,
            log: LogConfig {
                filter,
                format,
                otlp_endpoint,
            },
            keys,
            mail: MailConfig { smtp_url, from },
            telegram,
            stripe,
            plans: std::sync::Arc::new(plans),
            billing_grace,
            fx_daily_url,
            plaid,
            bank_sandbox,
            llm,
            rate_limits,
            argon2: identity::Argon2Params::PRODUCTION,
        })
    }
}

fn socket_addr(vars: &Vars, name: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
    vars.get(name)
        .map(|raw| {
            raw.parse().map_err(|_| {
                err(
                    name,
                    format!("`{raw}` is not an address:port such as 127.0.0.1:8080"),
                )
            })
        })
        .transpose()
}

fn conn_limits(vars: &Vars) -> Result<ConnLimits, ConfigError> {
    let d = ConnLimits::default();
    let timeout = |name: &'static str, default: Duration| match vars.get(name) {
        None => Ok(default),
        Some(raw) => duration(&raw)
            .filter(|t| (Duration::from_millis(100)..=Duration::from_secs(3600)).contains(t))
            .ok_or_else(|| {
                err(
                    name,
                    format!("`{raw}` is not a duration from 100ms to 1hour such as 10s or 2min"),
                )
            }),
    };
    let count = |name: &'static str, default: usize| match vars.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| err(name, "a whole number from 1 to 1000000")),
    };
    let limits = ConnLimits {
        header_timeout: timeout("BALANCE_HTTP_HEADER_TIMEOUT", d.header_timeout)?,
        body_timeout: timeout("BALANCE_HTTP_BODY_TIMEOUT", d.body_timeout)?,
        idle_timeout: timeout("BALANCE_HTTP_IDLE_TIMEOUT", d.idle_timeout)?,
        max_connections: count("BALANCE_HTTP_MAX_CONNECTIONS", d.max_connections)?,
        max_per_ip: count("BALANCE_HTTP_MAX_CONNECTIONS_PER_IP", d.max_per_ip)?,
    };
    if limits.max_per_ip > limits.max_connections {
        return Err(err(
            "BALANCE_HTTP_MAX_CONNECTIONS_PER_IP",
            "must not exceed BALANCE_HTTP_MAX_CONNECTIONS",
        ));
    }
    Ok(limits)
}

/// `250ms`, `10s`, `2min`, `1hour`.
fn duration(raw: &str) -> Option<Duration> {
    let split = raw.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = raw.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "min" => n.checked_mul(60).map(Duration::from_secs),
        "hour" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

fn http_url(raw: &str, name: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| err(name, format!("`{raw}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(err(
            name,
            format!("`{raw}` must be an http:// or https:// URL"),
        ));
    }
    Ok(url)
}

fn url_or(vars: &Vars, name: &'static str, default: &str) -> Result<Url, ConfigError> {
    http_url(&vars.get(name).unwrap_or_else(|| default.into()), name)
}

fn postgres_url(vars: &Vars, name: &'static str) -> Result<Option<Secret<String>>, ConfigError> {
    let Some(raw) = vars.get(name) else {
        return Ok(None);
    };
    let url = Url::parse(&raw).map_err(|_| {
        err(
            name,
            "not a URL; expected postgres://user:password@host:port/database",
        )
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(err(name, "must start with postgres:// or postgresql://"));
    }
    if url.username().is_empty() {
        return Err(err(
            name,
            "must name a user (postgres://user:password@host/database)",
        ));
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err(err(
            name,
            "must name a database (postgres://user:password@host/database)",
        ));
    }
    Ok(Some(Secret::new(raw)))
}

fn list(vars: &Vars, name: &str) -> Vec<String> {
    vars.get(name)
        .map(|raw| {
            raw.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn origin(raw: &str) -> Result<String, ConfigError> {
    const NAME: &str = "BALANCE_CORS_ORIGINS";
    let url = Url::parse(raw).map_err(|_| {
        err(
            NAME,
            format!("`{raw}` is not an origin such as https://app.example.com"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https")
        || url.path() != "/"
        || url.query().is_some()
        || raw.ends_with('/')
    {
        return Err(err(
            NAME,
            format!("`{raw}` is not an origin (scheme://host[:port], no path)"),
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[derive(Clone, Copy)]
enum KeyKind {
    /// Free-form secret text; at least 32 bytes in production.
    Secret,
    /// 32 bytes, base64.
    Base64Of32,
}

fn key_ring(
    vars: &Vars,
    env: Environment,
    data_dir: &Path,
    name: &'static str,
    kind: KeyKind,
) -> Result<KeyRing, ConfigError> {
    let (raw, generated) = match vars.get(name) {
        Some(raw) => (raw, false),
        None if env == Environment::Production => {
            return Err(err(
                name,
                "required in production (generated development keys are refused)",
            ));
        }
        None => (dev_key(data_dir, name, kind)?, true),
    };
    let mut keys = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, value) = pair
            .split_once(':')
            .ok_or_else(|| err(name, "expected comma-separated `id:key` pairs"))?;
        if id.is_empty()
            || id.len() > 32
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(
                name,
                format!("key id `{id}` must be 1-32 characters of A-Z, a-z, 0-9, - and _"),
            ));
        }
        if keys.iter().any(|(k, _)| k == id) {
            return Err(err(name, format!("key id `{id}` appears twice")));
        }
        let bytes = match kind {
            KeyKind::Secret => {
                if env == Environment::Production && value.len() < 32 {
                    return Err(err(name, format!("key `{id}` is shorter than 32 bytes")));
                }
                if value.is_empty() {
                    return Err(err(name, format!("key `{id}` is empty")));
                }
                value.as_bytes().to_vec()
            }
            KeyKind::Base64Of32 => {
                let bytes = B64
                    .decode(value)
                    .map_err(|_| err(name, format!("key `{id}` is not valid base64")))?;
                if bytes.len() != 32 {
                    return Err(err(
                        name,
                        format!("key `{id}` must decode to 32 bytes, not {}", bytes.len()),
                    ));
                }
                bytes
            }
        };
        keys.push((id.to_string(), Secret::new(bytes)));
    }
    if keys.is_empty() {
        return Err(err(name, "no keys given"));
    }
    Ok(KeyRing { keys, generated })
}

/// Reads, or creates once, a development key ring under `<data_dir>/keys/`.
fn dev_key(data_dir: &Path, name: &'static str, kind: KeyKind) -> Result<String, ConfigError> {
    let dir = data_dir.join("keys");
    let path = dir.join(name.trim_start_matches("BALANCE_").to_ascii_lowercase());
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    let random: [u8; 32] = rand::random();
    let value = match kind {
        KeyKind::Secret => format!("dev:{}", kernel::hex::encode(&random)),
        KeyKind::Base64Of32 => format!("dev:{}", B64.encode(random)),
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &value)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        err(
            name,
            format!("cannot store a development key in {}: {e}", dir.display()),
        )
    })?;
    Ok(value)
}

fn rate_limits(overrides: Option<&str>) -> Result<RateLimits, ConfigError> {
    const NAME: &str = "BALANCE_RATE_LIMITS";
    let mut map = BTreeMap::new();
    for (name, spec) in DEFAULT_RATE_LIMITS {
        map.insert(*name, parse_rate(spec).expect("default rate limits parse"));
    }
    for pair in overrides
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (name, spec) = pair
            .split_once('=')
            .ok_or_else(|| err(NAME, format!("`{pair}` is not `name=count/period`")))?;
        let key = DEFAULT_RATE_LIMITS
            .iter()
            .map(|(k, _)| *k)
            .find(|k| *k == name.trim())
            .ok_or_else(|| {
                let known: Vec<_> = DEFAULT_RATE_LIMITS.iter().map(|(k, _)| *k).collect();
                err(
                    NAME,
                    format!("unknown limit `{name}` (known: {})", known.join(", ")),
                )
            })?;
        let rate = parse_rate(spec.trim()).ok_or_else(|| {
            err(
                NAME,
                format!(
                    "`{spec}` is not `count/period` such as 10/15min (periods: s, min, hour, day)"
                ),
            )
        })?;
        map.insert(key, rate);
    }
    Ok(RateLimits(map))
}

/// `10/15min`, `60/min`, `3/hour`, `5/30s`, `100/day`.
fn parse_rate(spec: &str) -> Option<RateLimit> {
    let (max, period) = spec.split_once('/')?;
    let max: u32 = max.parse().ok().filter(|m| *m > 0)?;
    let split = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (count, unit) = period.split_at(split);
    let count: u64 = if count.is_empty() {
        1
    } else {
        count.parse().ok().filter(|c| *c > 0)?
    };
    let unit_secs = match unit {
        "s" | "sec" => 1,
        "min" | "m" => 60,
        "hour" | "h" => 3600,
        "day" | "d" => 86_400,
        _ => return None,
    };
    Some(RateLimit {
        max,
        per: Duration::from_secs(count * unit_secs),
    })
}

impl KeysConfig {
    /// The cursor signer, keyed from the first token pepper (DESIGN.md §1).
    pub fn cursor_signer(&self) -> kernel::CursorSigner {
        kernel::CursorSigner::from_pepper(self.token_peppers.keys[0].1.expose())
    }
}

/// A whole number variable within `range`, when set.
fn whole(
    vars: &Vars,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ConfigError> {
    match vars.get(name) {
        None => Ok(None),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| {
                err(
                    name,
                    format!("a whole number from {} to {}", range.start(), range.end()),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("balance-config-{}", uuid::Uuid::now_v7()));
        let dir_s = dir.to_string_lossy().to_string();
        let mut map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("BALANCE_DATA_DIR".into()).or_insert(dir_s);
        let result = Config::load(&|name| map.get(name).cloned());
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    #[test]
    fn development_starts_on_defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.env, Environment::Development);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.http.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(c.keys.jwt.generated && c.keys.audit_signing.generated);
        assert_eq!(c.keys.encryption.keys[0].1.expose().len(), 32);
        assert!(c.mail.smtp_url.is_none() && c.stripe.is_none() && c.telegram.is_none());
        assert_eq!(c.database.pool_size, 20);
        assert_eq!(
            c.rate_limits.get("login_account"),
            RateLimit {
                max: 10,
                per: Duration::from_secs(900)
            }
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let key32 = B64.encode([7u8; 32]);
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("BALANCE_ENV", "staging")], "BALANCE_ENV"),
            (&[("BALANCE_LISTEN", "localhost")], "BALANCE_LISTEN"),
            (
                &[("BALANCE_ADMIN_LISTEN", "127.0.0.1:8080")],
                "BALANCE_ADMIN_LISTEN",
            ),
            (&[("BALANCE_PUBLIC_URL", "ftp://x")], "BALANCE_PUBLIC_URL"),
            (
                &[("BALANCE_CORS_ORIGINS", "https://a.example/path")],
                "BALANCE_CORS_ORIGINS",
            ),
            (
                &[("BALANCE_DATABASE_URL", "mysql://u@h/db")],
                "BALANCE_DATABASE_URL",
            ),
            (
                &[("BALANCE_DATABASE_OWNER_URL", "postgres://h/db")],
                "BALANCE_DATABASE_OWNER_URL",
            ),
            (
                &[("BALANCE_DATABASE_POOL_SIZE", "0")],
                "BALANCE_DATABASE_POOL_SIZE",
            ),
            (
                &[("BALANCE_HTTP_HEADER_TIMEOUT", "10")],
                "BALANCE_HTTP_HEADER_TIMEOUT",
            ),
            (
                &[("BALANCE_HTTP_BODY_TIMEOUT", "5ms")],
                "BALANCE_HTTP_BODY_TIMEOUT",
            ),
            (
                &[("BALANCE_HTTP_IDLE_TIMEOUT", "2days")],
                "BALANCE_HTTP_IDLE_TIMEOUT",
            ),
            (
                &[("BALANCE_HTTP_MAX_CONNECTIONS", "0")],
                "BALANCE_HTTP_MAX_CONNECTIONS",
            ),
            (
                &[
                    ("BALANCE_HTTP_MAX_CONNECTIONS", "10"),
                    ("BALANCE_HTTP_MAX_CONNECTIONS_PER_IP", "11"),
                ],
                "BALANCE_HTTP_MAX_CONNECTIONS_PER_IP",
            ),
            (&[("BALANCE_LOG_FORMAT", "xml")], "BALANCE_LOG_FORMAT"),
            (&[("BALANCE_LOG", "info,[")], "BALANCE_LOG"),
            (
                &[("BALANCE_OTLP_ENDPOINT", "not a url")],
                "BALANCE_OTLP_ENDPOINT",
            ),
            (&[("BALANCE_JWT_KEYS", "nocolon")], "BALANCE_JWT_KEYS"),
            (
                &[("BALANCE_ENCRYPTION_KEYS", "k1:c2hvcnQ=")],
                "BALANCE_ENCRYPTION_KEYS",
            ),
            (
                &[("BALANCE_AUDIT_SIGNING_KEYS", "k1:!!!")],
                "BALANCE_AUDIT_SIGNING_KEYS",
            ),
            (
                &[("BALANCE_TOKEN_PEPPERS", "a:x,a:y")],
                "BALANCE_TOKEN_PEPPERS",
            ),
            (&[("BALANCE_SMTP_URL", "http://mail")], "BALANCE_SMTP_URL"),
            (&[("BALANCE_MAIL_FROM", "nobody")], "BALANCE_MAIL_FROM"),
            (
                &[("BALANCE_TELEGRAM_BOT_TOKEN", "abc")],
                "BALANCE_TELEGRAM_BOT_TOKEN",
            ),
            (
                &[("BALANCE_STRIPE_SECRET_KEY", "pk_test_1")],
                "BALANCE_STRIPE_SECRET_KEY",
            ),
            (
                &[("BALANCE_STRIPE_SECRET_KEY", "sk_test_1")],
                "BALANCE_STRIPE_WEBHOOK_SECRETS",
            ),
            (&[("BALANCE_PLAID_CLIENT_ID", "id")], "BALANCE_PLAID_SECRET"),
            (
                &[("BALANCE_LLM_BASE_URL", "http://127.0.0.1:1")],
                "BALANCE_LLM_MODEL",
            ),
            (
                &[
                    ("BALANCE_LLM_BASE_URL", "http://127.0.0.1:1"),
                    ("BALANCE_LLM_MODEL", "m"),
                    ("BALANCE_LLM_TIMEOUT", "0"),
                ],
                "BALANCE_LLM_TIMEOUT",
            ),
            (
                &[
                    ("BALANCE_LLM_BASE_URL", "http://127.0.0.1:1"),
                    ("BALANCE_LLM_MODEL", "m"),
                    ("BALANCE_LLM_DAILY_CALLS", "many"),
                ],
                "BALANCE_LLM_DAILY_CALLS",
            ),
            (
                &[("BALANCE_RATE_LIMITS", "login_ip=fast")],
                "BALANCE_RATE_LIMITS",
            ),
            (
                &[("BALANCE_RATE_LIMITS", "nope=1/min")],
                "BALANCE_RATE_LIMITS",
            ),
        ];
        for (vars, var) in cases {
            let e = load(vars).expect_err(&format!("{vars:?} should be refused"));
            assert_eq!(e.var, *var, "{vars:?}: {e}");
        }
        assert!(load(&[("BALANCE_ENCRYPTION_KEYS", &format!("k1:{key32}"))]).is_ok());
    }

    #[test]
    fn production_refuses_development_defaults() {
        let key32 = B64.encode([7u8; 32]);
        let secret = "s".repeat(32);
        let full = vec![
            ("BALANCE_ENV", "production".to_string()),
            ("BALANCE_PUBLIC_URL", "https://balance.example.com".into()),
            (
                "BALANCE_DATABASE_URL",
                "postgres://app:pw@db/balance".into(),
            ),
            ("BALANCE_JWT_KEYS", format!("k1:{secret}")),
            ("BALANCE_ENCRYPTION_KEYS", format!("k1:{key32}")),
            ("BALANCE_AUDIT_SIGNING_KEYS", format!("k1:{key32}")),
            ("BALANCE_TOKEN_PEPPERS", format!("p1:{secret}")),
            ("BALANCE_SMTP_URL", "smtps://mail.example.com".into()),
        ];
        let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
        let ok: Vec<(&str, &str)> = full.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(load(&ok).is_ok());
        for (i, (var, _)) in full.iter().enumerate().skip(1) {
            let mut missing = as_refs(&full);
            missing.remove(i);
            let vars: Vec<(&str, &str)> = missing.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(load(&vars).unwrap_err().var, *var);
        }
        let mut short = ok.clone();
        short[3] = ("BALANCE_JWT_KEYS", "k1:tooshort");
        assert_eq!(load(&short).unwrap_err().var, "BALANCE_JWT_KEYS");
    }

    #[test]
    fn connection_limits_have_defaults_and_read_durations() {
        let c = load(&[]).unwrap();
        assert_eq!(c.http.conn, ConnLimits::default());
        let c = load(&[
            ("BALANCE_HTTP_HEADER_TIMEOUT", "250ms"),
            ("BALANCE_HTTP_BODY_TIMEOUT", "2min"),
            ("BALANCE_HTTP_IDLE_TIMEOUT", "1hour"),
            ("BALANCE_HTTP_MAX_CONNECTIONS_PER_IP", "16"),
        ])
        .unwrap();
        assert_eq!(c.http.conn.header_timeout, Duration::from_millis(250));
        assert_eq!(c.http.conn.body_timeout, Duration::from_secs(120));
        assert_eq!(c.http.conn.idle_timeout, Duration::from_secs(3600));
        assert_eq!(c.http.conn.max_per_ip, 16);
    }

    #[test]
    fn rate_limit_overrides_replace_only_what_they_name() {
        let r = rate_limits(Some("login_ip=20/min, signup_ip=5/30s")).unwrap();
        assert_eq!(
            r.get("login_ip"),
            RateLimit {
                max: 20,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(
            r.get("signup_ip"),
            RateLimit {
                max: 5,
                per: Duration::from_secs(30)
            }
        );
        assert_eq!(
            r.get("reset_account"),
            RateLimit {
                max: 3,
                per: Duration::from_secs(3600)
            }
        );
    }
}
