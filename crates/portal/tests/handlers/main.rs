//! Handler tests of the portal: every route through the router with `oneshot`, on a
//! fresh SQLite database per test, including who may reach what, CSRF, login links that
//! expired or were used, rate limits, sessions' idle time and live streams, and that no answer ever carries a mailbox password.

mod discover;
mod harness;
mod hostile;
mod login;
mod projects;
mod security;
mod sessions;
mod signin;
