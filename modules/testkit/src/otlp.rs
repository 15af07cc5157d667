//! An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) that keeps every export body.
//!
//! Tests look for the bytes they expect in the exports (protobuf carries strings verbatim),
//! which is enough to show that a span with a given attribute arrived, without decoding.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    EndpointExt, Response, Route, handler,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use tokio::task::JoinHandle;

type Exports = Arc<Mutex<Vec<Vec<u8>>>>;

/// A running receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    exports: Exports,
    task: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[handler]
async fn traces(body: Vec<u8>, exports: Data<&Exports>) -> Response {
    exports.lock().expect("otlp lock").push(body);
    // An empty ExportTraceServiceResponse: everything accepted.
    Response::builder()
        .content_type("application/x-protobuf")
        .body(Vec::<u8>::new())
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .expect("tcp listener has an address");
        let exports: Exports = Arc::default();
        let app = Route::new()
            .at("/v1/traces", post(traces))
            .data(exports.clone());
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(OtlpReceiver {
            addr,
            exports,
            task,
        })
    }

    /// The base URL, the form `BALANCE_OTLP_ENDPOINT` takes.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until an export containing `needle` arrives.
    pub async fn wait_for_bytes(&self, needle: &[u8], deadline: Duration) -> bool {
        crate::eventually(deadline, || async {
            let exports = self.exports.lock().expect("otlp lock");
            exports
                .iter()
                .any(|e| e.windows(needle.len()).any(|w| w == needle))
                .then_some(())
        })
        .await
        .is_some()
    }
}
