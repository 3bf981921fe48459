//! What the TSDB needs to know about shipping, without knowing the shipper.
//!
//! When blocks are shipped to object storage, local compaction and retention must not
//! remove a block whose data is not in the bucket yet. The shipper (in `shipper/`,
//! which depends on this module, never the other way) implements [`ShipTracker`];
//! `app/` hands it to [`DbOptions::shipping`](super::DbOptions::shipping).

use std::sync::Arc;

use crate::tsdb::block::BlockMeta;

/// The shipper's view of the blocks, as the TSDB asks for it.
///
/// Both methods are called with the maintenance lock held: they must be quick and
/// must not call back into the database.
pub trait ShipTracker: Send + Sync {
    /// True when the block's data is in object storage: the block itself was
    /// uploaded, or every level-1 block it was compacted from was. Compaction merges
    /// and retention deletes only shipped blocks.
    fn is_shipped(&self, meta: &BlockMeta) -> bool;

    /// A head cut has just written this block (a hint to upload it soon).
    fn block_written(&self, meta: &BlockMeta);
}

/// A [`ShipTracker`] in [`DbOptions`](super::DbOptions) (which is `Debug`).
#[derive(Clone)]
pub struct ShippingHook(pub Arc<dyn ShipTracker>);

impl std::fmt::Debug for ShippingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShippingHook")
    }
}
