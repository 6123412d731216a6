//! Helpers for driving testhost servers.
