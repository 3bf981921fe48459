//! A state machine for the replication tests: it remembers what it applied, and has
//! nothing of its own to get wrong.

use std::io;

use parking_lot::Mutex;

use super::machine::Replicated;
use crate::log::{LogIndex, StateMachine};

/// What a tally applied, by index: its whole state.
pub(crate) type TallyImage = Vec<(LogIndex, Vec<u8>)>;

/// Applies entries by remembering them; answers the index it applied at.
#[derive(Default)]
pub(crate) struct Tally {
    pub applied: Mutex<Vec<(LogIndex, Vec<u8>)>>,
    pub restored: std::sync::atomic::AtomicUsize,
    /// Images taken (by the tests, at a position), by index.
    pub images: Mutex<std::collections::BTreeMap<LogIndex, TallyImage>>,
}

impl StateMachine for Tally {
    type Entry = Vec<u8>;
    type Output = LogIndex;

    fn decode(&self, bytes: &[u8], _busy: bool) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }

    fn encode(&self, entry: &Vec<u8>) -> Vec<u8> {
        entry.clone()
    }

    fn apply(&self, index: LogIndex, entry: Vec<u8>) -> LogIndex {
        self.applied.lock().push((index, entry));
        index
    }
}

impl Replicated for Tally {
    type Image = TallyImage;

    fn durable_image(&self, index: LogIndex) -> io::Result<Self::Image> {
        self.images
            .lock()
            .get(&index)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("no image at {index}")))
    }

    fn image_now(&self, index: LogIndex) -> Option<io::Result<Self::Image>> {
        let image = self.applied.lock().clone();
        self.images.lock().insert(index, image.clone());
        Some(Ok(image))
    }

    fn restore(&self, index: LogIndex, image: &Self::Image) -> io::Result<()> {
        self.images.lock().insert(index, image.clone());
        *self.applied.lock() = image.clone();
        self.restored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn encode_image(image: &Self::Image) -> io::Result<(Box<dyn io::Read + Send>, u64)> {
        let bytes = serde_json::to_vec(image)?;
        let len = bytes.len() as u64;
        Ok((Box::new(io::Cursor::new(bytes)), len))
    }

    fn incoming_image_path(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("odin-tally-image-{}", rand::random::<u64>()))
    }

    fn decode_image(&self, path: &std::path::Path) -> io::Result<Self::Image> {
        let bytes = std::fs::read(path)?;
        std::fs::remove_file(path)?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    fn encode_output(output: &LogIndex) -> Vec<u8> {
        output.to_le_bytes().to_vec()
    }

    fn may_forward(entry: &Vec<u8>) -> bool {
        // Entries starting with 0xff stand for what only a leader proposes.
        entry.first() != Some(&0xff)
    }

    fn decode_output(bytes: &[u8]) -> io::Result<LogIndex> {
        let bytes: [u8; 8] = bytes
            .try_into()
            .map_err(|_| io::Error::other("an index is 8 bytes"))?;
        Ok(LogIndex::from_le_bytes(bytes))
    }
}
