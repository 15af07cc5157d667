//! testkit's own tests: each stand-in behaves like the real service for a real client.

mod smtp;
