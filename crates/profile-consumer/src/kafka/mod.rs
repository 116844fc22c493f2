//! The Kafka side: topic setup ([`topics`]), the group consumer with rebalance
//! tracking ([`consumer`]), reading a profiles partition back ([`restore`]), and the
//! producer for profiles, handoffs and dead letters ([`producer`]).

pub mod consumer;
pub mod producer;
pub mod restore;
pub mod topics;
