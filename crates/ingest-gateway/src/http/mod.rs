//! The HTTP layer: the connection loop with its limits ([`server`]), routing
//! ([`router`]), CORS ([`cors`]) and bounded body reading with gzip ([`body`]).

pub mod body;
pub mod cors;
pub mod router;
pub mod server;
