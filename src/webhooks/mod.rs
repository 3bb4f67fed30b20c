//! Admission webhooks: the policies (pure functions) and the HTTPS server that serves them.

pub mod policies;
