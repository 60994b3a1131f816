//! Alert e-mails through the relay-wide SMTP server (`[smtp]`): lettre's async transport,
//! `STARTTLS` as configured, bounded by the configured timeouts; a plain-text part and a
//! simple HTML part.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::message::Message;
use crate::config::{SmtpConfig, StartTls};

/// Sends `message` to `to` (each checked as an address already); the error says which server
/// failed and how, never the password.
pub async fn send(smtp: &SmtpConfig, to: &[String], message: &Message) -> Result<(), String> {
    let server = format!("{}:{}", smtp.host, smtp.port);
    let email = build(smtp, to, message)?;
    let transport = transport(smtp)?;
    let sent = tokio::time::timeout(
        Duration::from_secs(smtp.send_timeout_secs),
        transport.send(email),
    )
    .await;
    match sent {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(explain(smtp, &server, &e)),
        Err(_) => Err(format!(
            "the SMTP server {server} did not take the e-mail within {} s \
             (smtp.send_timeout_secs)",
            smtp.send_timeout_secs
        )),
    }
}

fn transport(smtp: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls = || {
        TlsParameters::new(smtp.host.clone())
            .map_err(|e| format!("TLS towards the SMTP server {}: {e}", smtp.host))
    };
    let tls = match smtp.starttls {
        StartTls::Required => Tls::Required(tls()?),
        StartTls::Opportunistic => Tls::Opportunistic(tls()?),
        StartTls::None => Tls::None,
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

fn build(smtp: &SmtpConfig, to: &[String], message: &Message) -> Result<lettre::Message, String> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| format!("smtp.from is not an address: {e}"))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(message.subject.clone());
    for address in to {
        let mailbox: Mailbox = address
            .parse()
            .map_err(|e| format!("recipient {address:?} is not an address: {e}"))?;
        builder = builder.to(mailbox);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            message.text(),
            html(message),
        ))
        .map_err(|e| format!("the e-mail could not be built: {e}"))
}

/// The message as simple HTML: the subject as a heading, a paragraph a line.
fn html(message: &Message) -> String {
    let mut out = format!(
        "<h2>{}</h2>\n<p>{}</p>\n",
        escape(&message.subject),
        escape(&message.detail)
    );
    for line in &message.lines {
        out.push_str(&format!("<p>{}</p>\n", escape(line)));
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Why sending failed, with what to do about a server that does not offer `STARTTLS`.
fn explain(smtp: &SmtpConfig, server: &str, e: &lettre::transport::smtp::Error) -> String {
    let cause = format!("{e}");
    let mut text =
        format!("sending an alert e-mail through the SMTP server {server} failed: {cause}");
    if cause.contains("STARTTLS") && smtp.starttls == StartTls::Required {
        text.push_str(
            " (smtp.starttls = required: the server must offer STARTTLS; use \
             opportunistic or none only for a server on a trusted network)",
        );
    }
    if e.is_timeout() {
        text.push_str(&format!(" (smtp.timeout_secs = {})", smtp.timeout_secs));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<b>&\"</b>"), "&lt;b&gt;&amp;&quot;&lt;/b&gt;");
    }
}
