//! Reader isolation for head truncation.
//!
//! A querier takes the list of blocks once, when it is created, and reads the head
//! lazily, series by series, for as long as its caller iterates (a streamed PromQL
//! query, a remote-read or StoreAPI response). When a head range is cut into a block
//! meanwhile, the querier does not know the new block, and truncating the head under it
//! would drop samples it has not read yet from both places it looks.
//!
//! So every querier holds a [`ReadGuard`] stamped with the *epoch* of the block list it
//! saw. Publishing a block advances the epoch; before the head is truncated the cutter
//! waits until no reader of an older epoch is left ([`ReadEpochs::wait_for_older`]).
//! Readers created after the block was published see the block, so they never hold the
//! cut back, and a steady stream of queries cannot starve it (Prometheus waits for
//! every overlapping reader instead).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Default)]
pub(crate) struct ReadEpochs {
    state: Mutex<EpochState>,
    released: Condvar,
}

#[derive(Default)]
struct EpochState {
    current: u64,
    /// Open readers per epoch; an epoch is removed when its last reader goes.
    open: BTreeMap<u64, usize>,
    /// Cuts waiting in [`ReadEpochs::wait_for_older`].
    waiting: usize,
}

/// Held by a querier and by every iterator it hands out; dropping the last one
/// ends the read.
pub(crate) struct ReadGuard {
    epochs: Arc<ReadEpochs>,
    epoch: u64,
}

impl ReadEpochs {
    /// Starts a read in the current epoch. Call it while holding the block list's lock
    /// (read), so that the epoch and the list the reader sees belong together.
    pub(crate) fn begin(self: &Arc<Self>) -> Arc<ReadGuard> {
        let mut st = self.state.lock();
        let epoch = st.current;
        *st.open.entry(epoch).or_default() += 1;
        Arc::new(ReadGuard {
            epochs: self.clone(),
            epoch,
        })
    }

    /// Starts a new epoch and returns it. Call it while holding the block list's lock
    /// (write), right after publishing a block.
    pub(crate) fn advance(&self) -> u64 {
        let mut st = self.state.lock();
        st.current += 1;
        st.current
    }

    /// Waits until every reader that started before `epoch` has finished, or until
    /// `limit` has passed; returns how many such readers are still open (0 when the
    /// wait ended cleanly).
    pub(crate) fn wait_for_older(&self, epoch: u64, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let older = |st: &EpochState| -> usize { st.open.range(..epoch).map(|(_, n)| n).sum() };
        let mut st = self.state.lock();
        st.waiting += 1;
        let mut open = older(&st);
        while open > 0 && !self.released.wait_until(&mut st, deadline).timed_out() {
            open = older(&st);
        }
        st.waiting -= 1;
        older(&st)
    }

    /// How many cuts are waiting for readers now.
    #[cfg(test)]
    pub(crate) fn cuts_waiting(&self) -> usize {
        self.state.lock().waiting
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut st = self.epochs.state.lock();
        if let Some(n) = st.open.get_mut(&self.epoch) {
            *n -= 1;
            if *n == 0 {
                st.open.remove(&self.epoch);
            }
        }
        drop(st);
        self.epochs.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_for_readers_of_older_epochs() {
        let epochs = Arc::new(ReadEpochs::default());
        let old = epochs.begin();
        let epoch = epochs.advance();
        let new = epochs.begin();
        assert_eq!(epochs.wait_for_older(epoch, Duration::from_millis(10)), 1);
        drop(old);
        // The reader of the new epoch does not hold the cut back.
        assert_eq!(epochs.wait_for_older(epoch, Duration::from_secs(5)), 0);
        drop(new);
    }

    #[test]
    fn a_waiting_cut_wakes_when_the_last_old_reader_ends() {
        let epochs = Arc::new(ReadEpochs::default());
        let a = epochs.begin();
        let b = a.clone();
        let epoch = epochs.advance();
        let waiter = {
            let epochs = epochs.clone();
            std::thread::spawn(move || epochs.wait_for_older(epoch, Duration::from_secs(30)))
        };
        drop(a);
        drop(b);
        assert_eq!(waiter.join().ok(), Some(0));
    }
}
