//! A stand-in for the ECB's reference-rate files on loopback: `GET /eurofxref-daily.xml`
//! answers the XML a test set (built with [`daily_xml`], in the ECB's own layout), or the
//! fault armed with [`EcbStandIn::fail_next`] once (an HTTP status with an HTML error page,
//! or a `200` whose body is not the ECB's XML, as a captive portal would answer).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use poem::{
    EndpointExt, Response, Route, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use tokio::task::JoinHandle;

/// What the next request gets instead of the file.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with an HTML page.
    Status(u16),
    /// A `200` with this body.
    Body(String),
}

#[derive(Default)]
struct State {
    body: String,
    fault: Option<Fault>,
    calls: usize,
}

type Shared = Arc<Mutex<State>>;

pub struct EcbStandIn {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for EcbStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The ECB's daily file for `date` with `rates` (`("USD", "1.1164")`, …).
pub fn daily_xml(date: &str, rates: &[(&str, &str)]) -> String {
    let cubes: String = rates
        .iter()
        .map(|(c, r)| format!("\t\t\t<Cube currency='{c}' rate='{r}'/>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gesmes:Envelope xmlns:gesmes=\"http://www.gesmes.org/xml/2002-08-01\" xmlns=\"http://www.ecb.int/vocabulary/2002-08-01/eurofxref\">\n\t<gesmes:subject>Reference rates</gesmes:subject>\n\t<gesmes:Sender>\n\t\t<gesmes:name>European Central Bank</gesmes:name>\n\t</gesmes:Sender>\n\t<Cube>\n\t\t<Cube time='{date}'>\n{cubes}\t\t</Cube>\n\t</Cube>\n</gesmes:Envelope>\n"
    )
}

#[handler]
fn serve(Data(state): Data<&Shared>) -> Response {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.calls += 1;
    match state.fault.take() {
        Some(Fault::Status(code)) => Response::builder()
            .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type("text/html")
            .body("<html><body>Service unavailable</body></html>"),
        Some(Fault::Body(body)) => Response::builder().content_type("text/html").body(body),
        None => Response::builder()
            .content_type("text/xml")
            .body(state.body.clone()),
    }
}

impl EcbStandIn {
    pub async fn start() -> std::io::Result<EcbStandIn> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| std::io::Error::other("the listener has no TCP address"))?;
        let state: Shared = Arc::default();
        let app = Route::new()
            .at("/eurofxref-daily.xml", get(serve))
            .data(state.clone());
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(EcbStandIn { addr, state, task })
    }

    /// The daily file's URL (`BALANCE_FX_DAILY_URL`).
    pub fn url(&self) -> String {
        format!("http://{}/eurofxref-daily.xml", self.addr)
    }

    /// What the file holds from now on.
    pub fn set_body(&self, body: impl Into<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).body = body.into();
    }

    /// Arms one fault for the next request.
    pub fn fail_next(&self, fault: Fault) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).fault = Some(fault);
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).calls
    }
}
