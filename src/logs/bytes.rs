//! Reading the log store's own little-endian formats (the store's image, a
//! segment's stream table): every count bounded by the bytes left, every error
//! naming what was being read.

use crate::model::{Label, Labels};

pub(crate) struct ByteReader<'a> {
    pub buf: &'a [u8],
    /// What is being read, for errors ("log store image", "stream table").
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        ByteReader { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| format!("{} truncated", self.what))?;
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    pub fn i64(&mut self) -> Result<i64, String> {
        self.u64().map(|v| v as i64)
    }

    /// A u32 count of items of at least `min_bytes` each.
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n > self.buf.len() / min_bytes.max(1) {
            return Err(format!("{}: count {n} beyond its bytes", self.what));
        }
        Ok(n)
    }

    /// A u32 length, then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str, String> {
        let what = self.what;
        std::str::from_utf8(self.bytes()?).map_err(|_| format!("{what}: invalid UTF-8"))
    }

    /// A u32 count of (name, value) pairs, sorted and unique.
    pub fn labels(&mut self) -> Result<Labels, String> {
        let mut labels = Vec::new();
        for _ in 0..self.count(8)? {
            labels.push(Label::new(self.str()?, self.str()?));
        }
        Labels::check_sorted_unique(&labels)?;
        Ok(Labels::from_sorted(labels))
    }
}
