//! Tenancy's rules called the way a job, the bot or the CLI calls them: with a kernel handle
//! from the test database, no HTTP in between.

mod helpers;
mod service;
