//! A slow link in front of a server: a TCP proxy whose bytes each way share one fixed
//! rate over all connections, as a server's uplink would be shared. It adds no latency
//! beyond the time the bytes take.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One direction of the link: bytes go out one after another at `rate` bytes/s.
struct Pipe {
    rate: f64,
    free_at: Mutex<Instant>,
}

impl Pipe {
    fn new(rate: f64) -> Pipe {
        Pipe {
            rate,
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` have had their turn on the link.
    fn pass(&self, bytes: usize) {
        let done = {
            let mut free_at = self.free_at.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*free_at).max(Instant::now());
            *free_at = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            *free_at
        };
        if let Some(wait) = done.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
    }
}

/// The proxy; it stops accepting when dropped.
pub struct Link {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Link {
    /// Forwards 127.0.0.1:`port` to `target` at `mbps` megabits per second each way.
    pub fn start(target: u16, mbps: f64) -> Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the link proxy")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let rate = mbps * 1_000_000.0 / 8.0;
        let (up, down) = (Arc::new(Pipe::new(rate)), Arc::new(Pipe::new(rate)));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let (up, down) = (Arc::clone(&up), Arc::clone(&down));
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    let upward = std::thread::spawn(move || relay(c, s, &up));
                    relay(server, client, &down);
                    let _ = upward.join();
                });
            }
        });
        Ok(Link { port, stop })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream, pipe: &Pipe) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pipe.pass(n);
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
