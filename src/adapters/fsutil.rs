//! Small filesystem helpers shared by the key and cluster code.

use std::io::Write;
use std::path::Path;

/// Writes a file readable by its owner only (keys, passwords).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
