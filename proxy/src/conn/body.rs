//! A request body held whole before an upstream is picked (nginx's `proxy_request_buffering
//! on`): a client that trickles its upload then holds only our memory, never a backend worker.
//! The first `client_body_buffer_size` bytes stay in memory, the rest goes to an unlinked
//! temporary file in `client_body_temp_path`, so memory per connection stays bounded whatever
//! the body's size, and a retry can send the body again.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes temporary file names unique within the process (all workers).
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
pub(super) struct BodyBuffer {
    /// The body's first bytes, at most `client_body_buffer_size` of them.
    pub mem: Vec<u8>,
    /// The rest, when there is more.
    file: Option<File>,
    file_len: u64,
}

impl BodyBuffer {
    pub fn clear(&mut self) {
        self.mem.clear();
        self.file = None;
        self.file_len = 0;
    }

    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.file_len
    }

    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Append `data`: to memory while it holds under `limit` bytes, then to the file in `dir`.
    pub fn append(&mut self, data: &[u8], limit: usize, dir: &Path) -> io::Result<()> {
        let room = if self.file.is_some() {
            0
        } else {
            limit.saturating_sub(self.mem.len()).min(data.len())
        };
        self.mem.extend_from_slice(&data[..room]);
        let rest = &data[room..];
        if rest.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(temp_file(dir)?),
        };
        file.write_all(rest)?;
        self.file_len += rest.len() as u64;
        Ok(())
    }

    /// Read up to `max` bytes of the file part at `offset` into `buf` (replacing its content).
    pub fn read_file_at(&self, offset: u64, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let Some(file) = &self.file else {
            buf.clear();
            return Ok(0);
        };
        let want = usize::try_from(self.file_len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max);
        buf.resize(want, 0);
        let n = file.read_at(buf, offset)?;
        buf.truncate(n);
        Ok(n)
    }
}

/// A new temporary file in `dir`, unlinked at once: the body lives as long as the open file
/// and nothing is left behind by a crash.
fn temp_file(dir: &Path) -> io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}.{n:010}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_first_then_an_unlinked_file_in_order() {
        let dir = std::env::temp_dir().join(format!("proxy-body-{}", std::process::id()));
        let mut b = BodyBuffer::default();
        b.append(b"0123", 6, &dir).unwrap();
        b.append(b"456789", 6, &dir).unwrap();
        b.append(b"ab", 6, &dir).unwrap();
        assert_eq!(b.mem, b"012345");
        assert_eq!((b.len(), b.file_len()), (12, 6));
        let mut got = Vec::new();
        b.read_file_at(0, &mut got, 4).unwrap();
        assert_eq!(got, b"6789");
        b.read_file_at(4, &mut got, 100).unwrap();
        assert_eq!(got, b"ab");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "nothing left on disk"
        );
        b.clear();
        assert_eq!(b.len(), 0);
        let _ = std::fs::remove_dir(&dir);
    }
}
