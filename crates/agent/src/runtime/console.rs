//! A console socket: where an OCI runtime sends the master end of a container's terminal.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sys;

/// The socket a runtime sends a terminal's master end to, in a directory reached through
/// this process's descriptor of it, so that the path stays short whatever the directory.
pub struct Console {
    listener: std::os::unix::net::UnixListener,
    /// The socket's path, for the runtime.
    pub path: String,
    _dir: fs::File,
}

impl Console {
    /// Listens at `dir/name`.
    pub fn listen(dir: &Path, name: &str) -> std::io::Result<Console> {
        use std::os::fd::AsRawFd;
        let handle = fs::File::open(dir)?;
        let _ = fs::remove_file(dir.join(name));
        let path = format!("/proc/{}/fd/{}/{name}", std::process::id(), handle.as_raw_fd());
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        Ok(Console { listener, path, _dir: handle })
    }

    /// The master end the runtime sends (within 10 s).
    pub fn receive(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    return sys::receive_fd(&stream);
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
