//! The sink's part of its consumer's rebalance callbacks (the rest, shared with the
//! profile consumer, is `vero_service::group_context`): on a revoke, nothing is
//! flushed inside the callback, but it waits (bounded by the ClickHouse request
//! timeout) until no INSERT of the revoked partitions is in flight and none can start
//! ([`Fence`]): the next owner then sees everything this instance wrote before
//! deciding what is already written. An assignment opens the fence for the new
//! partitions.

use std::sync::Arc;

use rdkafka::consumer::StreamConsumer;
use vero_service::group_context::{GroupContext, Hook};

use crate::once::Fence;

/// The sink's group consumer.
pub type SinkConsumer = StreamConsumer<GroupContext>;

/// The [`Fence`] in the rebalance callbacks.
pub struct FenceHook(pub Arc<Fence>);

impl Hook for FenceHook {
    fn revoking(&self, revoked: &[i32]) {
        // Blocking wait: moved off the async worker so the INSERT can finish.
        let wait = || self.0.revoke(revoked);
        let flushed = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        if !flushed {
            tracing::warn!(
                ?revoked,
                "an INSERT of revoked partitions is still in flight; the next owner may write its rows again"
            );
        }
    }

    fn assigned(&self, assigned: &[i32]) {
        self.0.assign(assigned);
    }
}
