//! A message's bytes, in memory or spooled to disk, so a 40 MB message never sits whole
//! in memory, and a writer that decides which as the bytes arrive.

use std::io::{Read, Seek, SeekFrom, Write};

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The bytes of one message (or IMAP literal).
#[derive(Debug)]
pub enum Body {
    Memory(Vec<u8>),
    File { file: std::fs::File, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All the bytes in memory: for the small bodies (headers, names) where that is what
    /// the caller wants anyway.
    pub fn into_vec(self) -> std::io::Result<Vec<u8>> {
        match self {
            Body::Memory(bytes) => Ok(bytes),
            Body::File { mut file, len } => {
                file.seek(SeekFrom::Start(0))?;
                let mut bytes = Vec::with_capacity(len as usize);
                file.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }

    /// Writes every byte to `out`; a spooled body is streamed from its file.
    pub async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        out: &mut W,
    ) -> std::io::Result<()> {
        match self {
            Body::Memory(bytes) => out.write_all(bytes).await,
            Body::File { file, len } => {
                let mut file = file.try_clone()?;
                file.seek(SeekFrom::Start(0))?;
                let mut file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), *len);
                let copied = tokio::io::copy(&mut file, out).await?;
                if copied != *len {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("spooled body shorter than announced ({copied} of {len} bytes)"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Collects bytes into a [`Body`]: in memory up to `threshold` bytes, then in a
/// temporary file.
#[derive(Debug)]
pub struct BodySink {
    threshold: u64,
    memory: Vec<u8>,
    file: Option<std::fs::File>,
    len: u64,
}

impl BodySink {
    /// `expected` sizes the first allocation (for a literal whose length is known).
    pub fn new(threshold: u64, expected: u64) -> BodySink {
        BodySink {
            threshold,
            memory: Vec::with_capacity(expected.min(threshold) as usize),
            file: None,
            len: 0,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.len += bytes.len() as u64;
        if let Some(file) = &mut self.file {
            return file.write_all(bytes);
        }
        if self.len > self.threshold {
            let mut file = tempfile::tempfile()?;
            file.write_all(&self.memory)?;
            file.write_all(bytes)?;
            self.memory = Vec::new();
            self.file = Some(file);
            return Ok(());
        }
        self.memory.extend_from_slice(bytes);
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> std::io::Result<Body> {
        match self.file {
            Some(mut file) => {
                file.flush()?;
                Ok(Body::File {
                    file,
                    len: self.len,
                })
            }
            None => Ok(Body::Memory(self.memory)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bodies_stay_in_memory_and_large_ones_spill_byte_exact() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut small = BodySink::new(100_000, 0);
        small.write(&data).unwrap();
        assert!(matches!(small.finish().unwrap(), Body::Memory(ref b) if *b == data));

        let mut large = BodySink::new(1_000, 0);
        for chunk in data.chunks(777) {
            large.write(chunk).unwrap();
        }
        let body = large.finish().unwrap();
        assert!(matches!(body, Body::File { len: 10_000, .. }));
        assert_eq!(body.into_vec().unwrap(), data);
    }

    #[tokio::test]
    async fn a_spooled_body_is_written_out_whole_and_twice_if_asked() {
        let data = vec![7u8; 5_000];
        let mut sink = BodySink::new(10, 0);
        sink.write(&data).unwrap();
        let body = sink.finish().unwrap();
        for _ in 0..2 {
            let mut out = Vec::new();
            body.write_to(&mut out).await.unwrap();
            assert_eq!(out, data);
        }
    }
}
