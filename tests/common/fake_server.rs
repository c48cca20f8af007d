//! A scripted HTTP server on 127.0.0.1 for failure cases a real registry
//! will not produce on demand (503, 429, a PUT that fails mid-upload). Each
//! connection gets the next scripted answer and is closed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received: method, path with query, body size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub body_len: usize,
}

/// A scripted answer: status line, extra headers, body.
pub struct Answer {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn new(status: &'static str) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

pub struct FakeServer {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeServer {
    /// Serve `script` in order, one answer per request; then stop.
    pub fn start(script: Vec<Answer>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for answer in script {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                if let Some(request) = read(&mut stream) {
                    record.lock().unwrap().push(request);
                }
                let _ = reply(&mut stream, &answer);
            }
        });
        FakeServer { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read(stream: &mut TcpStream) -> Option<Seen> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut first = head.lines().next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body_len = buf.len() - head_end;
    while body_len < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        body_len += n;
    }
    Some(Seen {
        method,
        target,
        body_len,
    })
}

fn reply(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let mut text = format!("HTTP/1.1 {}\r\n", answer.status);
    for (name, value) in &answer.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    // A scripted Content-Length (for HEAD answers) wins over the body's.
    if !answer
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        text.push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
    }
    text.push_str(&format!("Connection: close\r\n\r\n{}", answer.body));
    stream.write_all(text.as_bytes())?;
    stream.flush()
}
