//! The composition root of Balance: configuration, telemetry, database, HTTP server and
//! CLI. It wires the modules together and holds no business rules.

pub mod config;
pub mod dev;
pub mod http;
pub mod metrics;
pub mod platform;
pub mod telemetry;

pub use config::Config;
pub use platform::Platform;
