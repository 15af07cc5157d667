use std::time::Duration;

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use testkit::smtp::SmtpSink;

#[tokio::test]
async fn the_smtp_sink_receives_what_lettre_sends_over_real_smtp() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.addr().port())
            .build();
    let message = Message::builder()
        .from("Balance <no-reply@balance.test>".parse().unwrap())
        .to("Ada <ada@example.com>".parse().unwrap())
        .subject("Verify your email")
        .body(".leading dot survives\r\nhttp://127.0.0.1:8080/verify?token=abc\r\n".to_string())
        .unwrap();
    mailer.send(message).await.unwrap();

    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "no-reply@balance.test");
    assert_eq!(mails[0].to, ["ada@example.com"]);
    assert!(mails[0].data.contains("Subject: Verify your email"));
    assert!(
        mails[0].data.contains("\r\n.leading dot survives\r\n"),
        "dot-stuffing is undone: {}",
        mails[0].data
    );
    assert!(mails[0].data.contains("token=abc"));
}
