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
    /// A workspace's payment failed: its billing members settle it before the grace ends.
    PaymentFailed { tenant: String, grace_days: i64 },
}

impl Template {
    /// The template's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Template::VerifyEmail { .. } => "verify_email",
            Template::PasswordReset { .. } => "password_reset",
            Template::Invitation { .. } => "invitation",
            Template::SecurityAlert { .. } => "security_alert",
            Template::PaymentFailed { .. } => "payment_failed",
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

/// Text a user chose (a name, a workspace's name) as a mail shows it: on one line, without
/// invisible or direction-changing characters, and never readable as a link — mail clients
/// turn anything shaped like a URL, a domain or an address into one, so `.`, `://` and `@`
/// between words are bracketed (`evil[.]example`). Callers quote it, so it cannot read as
/// Balance's own words.
pub fn user_text(raw: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let chars: Vec<char> = raw
        .chars()
        .map(|c| if invisible(c) { ' ' } else { c })
        .collect();
    let word = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| c.is_alphanumeric())
    };
    let mut out = String::with_capacity(raw.len());
    for (i, c) in chars.iter().enumerate() {
        let between = word(i.checked_sub(1)) && word(Some(i + 1));
        match c {
            '.' if between => out.push_str("[.]"),
            '@' if between => out.push_str("[at]"),
            ':' if chars.get(i + 1) == Some(&'/') && chars.get(i + 2) == Some(&'/') => {
                out.push_str("[:]")
            }
            _ => out.push(*c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
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
                format!("Hello {},", user_text(name)),
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
                format!("Hello {},", user_text(name)),
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
            // The names are the inviter's own words: quoted, defanged, and never in the
            // subject, which a reader trusts as ours.
            let lines = vec![format!(
                "“{}” invited you to the workspace “{}” on Balance. The invitation expires in 7 days.",
                user_text(inviter),
                user_text(tenant)
            )];
            Rendered {
                subject: "You are invited to a workspace on Balance".into(),
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
                format!("Hello {},", user_text(name)),
                what.clone(),
                "If this was not you, reset your password now and review your sessions.".into(),
            ];
            Rendered {
                subject: "Security alert for your Balance account".into(),
                text: format!("{}\n\n{}\n\n{}\n", lines[0], lines[1], lines[2]),
                html: page("Security alert", &lines, None),
            }
        }
        Template::PaymentFailed { tenant, grace_days } => {
            let href = public_url
                .join("billing")
                .expect("a fixed path joins any base URL")
                .to_string();
            let lines = vec![
                format!(
                    "The latest payment for the workspace \"{}\" failed.",
                    user_text(tenant)
                ),
                format!(
                    "Update the card or pay the invoice within {grace_days} days: after that the workspace becomes read-only until it is settled. Nothing is deleted, and reading and exporting keep working."
                ),
            ];
            Rendered {
                subject: "A payment for your Balance workspace failed".into(),
                text: format!("{}\n\n{}\n\nSettle it: {href}\n", lines[0], lines[1]),
                html: page("Payment failed", &lines, Some(("Open billing", &href))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_never_a_link_an_address_or_two_lines() {
        assert_eq!(
            user_text("ACME Payroll \u{2028} URGENT: verify at https://evil.example/login é中"),
            "ACME Payroll URGENT: verify at https[:]//evil[.]example/login é中"
        );
        assert_eq!(
            user_text("mail ceo@evil.example now"),
            "mail ceo[at]evil[.]example now"
        );
        assert_eq!(user_text("www.evil.example"), "www[.]evil[.]example");
        assert_eq!(user_text("Ada\u{202E}\u{200B}Lovelace"), "Ada Lovelace");
        assert_eq!(user_text("Acme Inc. Ltd"), "Acme Inc. Ltd");
    }

    #[test]
    fn an_invitation_keeps_the_inviters_words_out_of_the_subject_and_out_of_links() {
        let base = url::Url::parse("https://balance.example.com/").unwrap();
        let r = render(
            &Template::Invitation {
                tenant: "ACME Payroll URGENT: verify your salary at https://evil.example/login"
                    .into(),
                inviter: "Your IT department".into(),
                token: "bin_x_y".into(),
            },
            &base,
        );
        assert_eq!(r.subject, "You are invited to a workspace on Balance");
        assert!(!r.text.contains("https://evil") && !r.html.contains("https://evil"));
        assert!(!r.text.contains("evil.example") && !r.html.contains("evil.example"));
        assert!(
            r.text
                .contains("“Your IT department” invited you to the workspace “ACME Payroll")
        );
        let links = r.html.matches("href=").count();
        assert_eq!(links, 1, "only our own link");
    }

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
