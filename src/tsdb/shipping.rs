//! What the TSDB needs to know about shipping, without knowing the shipper.
//!
//! When blocks are shipped to object storage, local compaction and retention must not
//! remove a block (nor a log segment) whose data is not in the bucket yet. The shipper (in `shipper/`,
//! which depends on this module, never the other way) implements [`ShipTracker`];
//! `app/` hands it to [`DbOptions::shipping`](super::DbOptions::shipping).

use std::sync::Arc;

use crate::logs::segment::SegmentMeta;
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

    /// True when the log segment's lines are in object storage: it was uploaded, or
    /// every window segment it was merged from was. Merging and retention take only
    /// shipped segments.
    fn is_log_segment_shipped(&self, meta: &SegmentMeta) -> bool;

    /// Maintenance has just written log segments (a hint to upload them soon).
    fn segments_written(&self);
}

/// A [`ShipTracker`] in [`DbOptions`](super::DbOptions) (which is `Debug`).
#[derive(Clone)]
pub struct ShippingHook(pub Arc<dyn ShipTracker>);

impl std::fmt::Debug for ShippingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShippingHook")
    }
}
