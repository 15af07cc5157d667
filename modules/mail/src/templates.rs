//! The messages Balance sends, as HTML and plain text, with links on `BALANCE_PUBLIC_URL`.

use serde::{Deserialize, Serialize};

/// A message and what it needs. Stored (until sent) in the outbox as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum Template {
    /// Confirms an address at signup.
    VerifyEmail { name: String, token: String },
    /// A link to choose a new password.
    PasswordReset { name: String, token: String },
    /// An invitation to a tenant workspace.
    Invitation {
        tenant: String,
        inviter: String,
        token: String,
    },
    /// Something happened to the account that its owner must know.
    SecurityAlert { name: String, what: String },
}

impl Template {
    /// The template's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Template::VerifyEmail { .. } => "verify_email",
            Template::PasswordReset { .. } => "password_reset",
            Template::Invitation { .. } => "invitation",
            Template::SecurityAlert { .. } => "security_alert",
        }
    }
}

/// A rendered message.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn link(base: &url::Url, path: &str, token: &str) -> String {
    let mut url = base.join(path).expect("a fixed path joins any base URL");
    url.query_pairs_mut().append_pair("token", token);
    url.to_string()
}

fn page(title: &str, paragraphs: &[String], action: Option<(&str, &str)>) -> String {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>\n", escape(p)))
        .collect();
    let button = action
        .map(|(label, href)| {
            format!(
                "<p><a href=\"{}\" style=\"background:#1f6feb;color:#fff;padding:10px 16px;border-radius:6px;text-decoration:none\">{}</a></p>\n\
                 <p style=\"color:#555;font-size:13px\">Or paste this link into your browser: {}</p>\n",
                escape(href),
                escape(label),
                escape(href)
            )
        })
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;max-width:560px;margin:auto\">\n\
         <h2>{}</h2>\n{body}{button}<p style=\"color:#888;font-size:12px\">Balance</p>\n</body></html>\n",
        escape(title)
    )
}

/// Renders `template` with links on `public_url`.
pub fn render(template: &Template, public_url: &url::Url) -> Rendered {
    match template {
        Template::VerifyEmail { name, token } => {
            let href = link(public_url, "verify-email", token);
            let lines = vec![
                format!("Hello {name},"),
                "Confirm your email address to finish setting up your Balance account.".into(),
            ];
            Rendered {
                subject: "Confirm your email address for Balance".into(),
                text: format!(
                    "{}\n\n{}\n\nConfirm: {href}\n\nIf you did not sign up for Balance, ignore this message.\n",
                    lines[0], lines[1]
                ),
                html: page(
                    "Confirm your email address",
                    &lines,
                    Some(("Confirm my address", &href)),
                ),
            }
        }
        Template::PasswordReset { name, token } => {
            let href = link(public_url, "reset-password", token);
            let lines = vec![
                format!("Hello {name},"),
                "Someone asked to reset the password of your Balance account. The link works once, for one hour.".into(),
            ];
            Rendered {
                subject: "Reset your Balance password".into(),
                text: format!(
                    "{}\n\n{}\n\nReset: {href}\n\nIf it was not you, ignore this message: your password stays as it is.\n",
                    lines[0], lines[1]
                ),
                html: page(
                    "Reset your password",
                    &lines,
                    Some(("Choose a new password", &href)),
                ),
            }
        }
        Template::Invitation {
            tenant,
            inviter,
            token,
        } => {
            let href = link(public_url, "invitations/accept", token);
            let lines = vec![format!(
                "{inviter} invited you to the workspace {tenant} on Balance. The invitation expires in 7 days."
            )];
            Rendered {
                subject: format!("You are invited to {tenant} on Balance"),
                text: format!("{}\n\nAccept: {href}\n", lines[0]),
                html: page(
                    "You are invited",
                    &lines,
                    Some(("Accept the invitation", &href)),
                ),
            }
        }
        Template::SecurityAlert { name, what } => {
            let lines = vec![
                format!("Hello {name},"),
                what.clone(),
                "If this was not you, reset your password now and review your sessions.".into(),
            ];
            Rendered {
                subject: "Security alert for your Balance account".into(),
                text: format!("{}\n\n{}\n\n{}\n", lines[0], lines[1], lines[2]),
                html: page("Security alert", &lines, None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_token_on_the_public_url_and_html_is_escaped() {
        let base = url::Url::parse("https://balance.example.com/app/").unwrap();
        let r = render(
            &Template::VerifyEmail {
                name: "<Ada>".into(),
                token: "abc.def+/=".into(),
            },
            &base,
        );
        assert!(
            r.text
                .contains("https://balance.example.com/app/verify-email?token=abc.def%2B%2F%3D"),
            "{}",
            r.text
        );
        assert!(r.html.contains("&lt;Ada&gt;") && !r.html.contains("<Ada>"));
        assert!(r.subject.contains("Balance"));
    }
}
