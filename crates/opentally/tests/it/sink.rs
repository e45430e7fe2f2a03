//! Loopback collectors with scripted behaviour, for real HTTP from the SDK.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the collector behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the request and answers 200.
    Accept,
    /// Accepts the connection and never reads or answers.
    BlackHole,
    /// Reads the request, waits this long, then answers 200.
    Slow(Duration),
    /// Reads the request and answers with this status (and `Retry-After: 1` for 429/503).
    Status(u16),
    /// Keeps the messages and answers 200 with this body (a collector's answer, say with a
    /// remote control, or something else).
    Answer(&'static str),
    /// Reads the request and sends half a status line, then closes.
    Truncated,
    /// Reads the request, promises a 100-byte body, sends 10 bytes, closes.
    CloseMidBody,
}

/// A collector on 127.0.0.1; counts bytes and connections, keeps every message it accepted.
#[derive(Debug)]
pub struct Sink {
    pub url: String,
    pub bytes: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    pub messages: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Sink {
    pub fn start(behaviour: Behaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bytes = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (b, c, m) = (bytes.clone(), connections.clone(), messages.clone());
        std::thread::spawn(move || {
            // Bounded: a test never makes more than a few hundred connections.
            for stream in listener.incoming().take(1000) {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (b, m) = (b.clone(), m.clone());
                std::thread::spawn(move || serve(stream, behaviour, &b, &m));
            }
        });
        Sink {
            url,
            bytes,
            connections,
            messages,
        }
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `n` messages.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        let start = std::time::Instant::now();
        while self.messages().len() < n && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.messages()
    }
}

/// A port with nothing listening: connection refused.
pub fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn serve(
    stream: TcpStream,
    behaviour: Behaviour,
    bytes: &AtomicU64,
    messages: &Mutex<Vec<serde_json::Value>>,
) {
    if behaviour == Behaviour::BlackHole {
        std::thread::sleep(Duration::from_secs(30));
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    // Keep-alive: serve requests until the client closes.
    for _ in 0..100 {
        let mut content_length = 0usize;
        let mut line = String::new();
        let mut head = 0u64;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) => head += n as u64,
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        bytes.fetch_add(head + content_length as u64, Ordering::SeqCst);
        let response: Vec<u8> = match behaviour {
            Behaviour::Accept | Behaviour::Slow(_) | Behaviour::Answer(_) => {
                if let Behaviour::Slow(d) = behaviour {
                    std::thread::sleep(d);
                }
                let mut json = Vec::new();
                let _ = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json);
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&json) {
                    messages
                        .lock()
                        .unwrap()
                        .extend(v["batch"].as_array().cloned().unwrap_or_default());
                }
                match behaviour {
                    Behaviour::Answer(text) => ok(text),
                    _ => ok(r#"{"ok":true}"#),
                }
            }
            Behaviour::Status(code) => {
                let retry = if code == 429 || code == 503 {
                    "Retry-After: 1\r\n"
                } else {
                    ""
                };
                format!("HTTP/1.1 {code} X\r\n{retry}Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}").into_bytes()
            }
            Behaviour::Truncated => b"HTTP/1.1 2".to_vec(),
            Behaviour::CloseMidBody => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"ok\":tru".to_vec()
            }
            Behaviour::BlackHole => unreachable!(),
        };
        if out.write_all(&response).is_err() {
            return;
        }
        if matches!(behaviour, Behaviour::Truncated | Behaviour::CloseMidBody) {
            return;
        }
    }
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
