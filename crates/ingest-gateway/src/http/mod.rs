//! The HTTP layer: the connection loop with its limits ([`server`]), routing
//! ([`router`]), CORS ([`cors`]), bounded body reading with gzip ([`body`]) and the
//! optional HTTPS of the API listener ([`tls`]).

pub mod body;
pub mod cors;
pub mod router;
pub mod server;
pub mod tls;
