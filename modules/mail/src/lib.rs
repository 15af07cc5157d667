//! Outgoing mail (lettre): SMTP with STARTTLS or TLS when `BALANCE_SMTP_URL` is set,
//! otherwise `.eml` files under the data folder.
//!
//! Mail is never sent inside a request: [`queue`] writes the message to the global
//! `mail_outbox` and pushes a `mail.send` job in the same transaction as the change that
//! causes it, so a crash or an SMTP outage delays mail and never loses it. The job renders
//! the template, sends, marks the row sent and scrubs its parameters (links with tokens).

mod templates;

use std::{path::PathBuf, sync::Arc};

use jobs::{Enqueue, JobContext, JobError, NewJob, Registry};
use kernel::{Actor, Email, Problem, SystemTx, Tx};
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use uuid::Uuid;

pub use templates::{Rendered, Template, render};

/// The job kind that sends one message.
pub const SEND: &str = "mail.send";

/// Where mail goes and what it says about the product.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://host:port[?tls=required]` (STARTTLS) or `smtps://host:port` (TLS); `None`:
    /// files under `files_dir`.
    pub smtp_url: Option<url::Url>,
    pub from: String,
    pub files_dir: PathBuf,
    /// Base of every link in mail.
    pub public_url: url::Url,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail configuration: {0}")]
    Config(String),
    #[error("could not build the message: {0}")]
    Build(String),
    #[error("could not send: {0}")]
    Send(String),
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

/// Sends rendered messages.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<Transport>,
    from: Mailbox,
    public_url: url::Url,
}

impl Mailer {
    pub fn new(config: &MailConfig) -> Result<Mailer, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| MailError::Config(format!("BALANCE_MAIL_FROM: {e}")))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
                    .map_err(|e| MailError::Config(format!("BALANCE_SMTP_URL: {e}")))?
                    .build(),
            ),
            None => {
                std::fs::create_dir_all(&config.files_dir).map_err(|e| {
                    MailError::Config(format!("{}: {e}", config.files_dir.display()))
                })?;
                Transport::Files(AsyncFileTransport::<Tokio1Executor>::new(&config.files_dir))
            }
        };
        Ok(Mailer {
            transport: Arc::new(transport),
            from,
            public_url: config.public_url.clone(),
        })
    }

    /// The public base URL, for building links.
    pub fn public_url(&self) -> &url::Url {
        &self.public_url
    }

    /// Sends one rendered message now.
    pub async fn send(&self, to: &str, rendered: &Rendered) -> Result<(), MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::Build(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&rendered.subject)
            .multipart(MultiPart::alternative_plain_html(
                rendered.text.clone(),
                rendered.html.clone(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &*self.transport {
            Transport::Smtp(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Send(e.to_string())),
            Transport::Files(t) => t
                .send(message)
                .await
                .map(drop)
                .map_err(|e| MailError::Send(e.to_string())),
        }
    }

    /// Adds the `mail.send` handler to a job registry.
    pub fn register(&self, registry: Registry) -> Registry {
        let mailer = self.clone();
        registry.handle(SEND, move |job| {
            let mailer = mailer.clone();
            async move { send_queued(&mailer, job).await }
        })
    }
}

/// Queues `template` to `to` inside `tx`: written and pushed only if `tx` commits.
pub async fn queue<T: Tx>(tx: &mut T, to: &Email, template: &Template) -> Result<Uuid, Problem> {
    let id = Uuid::now_v7();
    let params = serde_json::to_value(template).map_err(|_| Problem::internal())?;
    sqlx::query!(
        "INSERT INTO mail_outbox (id, recipient, template, params) VALUES ($1, $2, $3, $4)",
        id,
        to.as_str(),
        template.kind(),
        params,
    )
    .execute(tx.conn())
    .await?;
    tx.enqueue(NewJob::new(
        "mail",
        SEND,
        serde_json::json!({ "message_id": id }),
    ));
    Ok(id)
}

async fn send_queued(mailer: &Mailer, job: JobContext) -> Result<(), JobError> {
    let id: Uuid = job.payload["message_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| JobError::fatal("no message_id in the payload"))?;
    let mut tx = SystemTx::begin(&job.db, Actor::System).await?;
    let row = sqlx::query!(
        r#"SELECT recipient, params, sent_at IS NOT NULL AS "sent!" FROM mail_outbox WHERE id = $1 FOR UPDATE"#,
        id,
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(|e| JobError::caused_by(&e))?;
    let Some(row) = row else {
        return Err(JobError::fatal("no such message"));
    };
    let (recipient, params) = (row.recipient, row.params);
    if row.sent {
        return Ok(());
    }
    let template: Template = serde_json::from_value(params).map_err(JobError::fatal)?;
    let rendered = render(&template, mailer.public_url());
    mailer
        .send(&recipient, &rendered)
        .await
        .map_err(JobError::retry)?;
    // Sent: keep the record, drop what it carried (links with single-use tokens).
    sqlx::query!(
        "UPDATE mail_outbox SET sent_at = now(), params = '{}' WHERE id = $1",
        id
    )
    .execute(tx.conn())
    .await
    .map_err(|e| JobError::caused_by(&e))?;
    tx.commit().await?;
    tracing::info!(message = %id, template = template.kind(), "mail sent");
    Ok(())
}
