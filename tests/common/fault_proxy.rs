//! A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry.
//! Every request is forwarded unless a rule picks it (method + path
//! substring, and which of its matches): then it gets a fault instead —
//! a reset mid-upload, a 5xx, a 429 with Retry-After, silence past the
//! client's timeout, a download cut short or a corrupted download.
//!
//! ```ignore
//! let proxy = FaultProxy::start(registry.addr());
//! proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Reset { after: 64 << 10 }));
//! proxy.add(Rule::new("GET", "/blobs/sha256:", Fault::Status(503)).times(2));
//! // slipway build ... --push {proxy.addr()}/app:1 --registry-mirror docker.io={proxy.alt_addr()}
//! assert_eq!(proxy.fired().len(), 3);
//! assert_eq!(proxy.counts().statuses, 2);     // what the proxy really did
//! ```
//!
//! `fired()` lists the requests a rule picked; `counts()` says what the
//! proxy then did to them (connections reset with the body half sent,
//! bytes paced, bodies cut, stalls the client gave up on): a test asserts
//! its fault happened, not only that a rule matched.
//!
//! One thread per connection, one request per connection: the proxy answers
//! every request with `Connection: close`, so the client opens a new
//! connection for the next one. It listens on two ports (`addr`, `alt_addr`)
//! that share rules and log: a registry named by two addresses lets a test
//! pull the base through one and push through the other, so base layers are
//! downloaded and uploaded instead of mounted.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read the request head and at most `after` bytes of its body (never
    /// all of it), then reset the connection (RST): the upload breaks.
    Reset { after: u64 },
    /// Answer this status with a registry-style error body; nothing is forwarded.
    Status(u16),
    /// Answer 429 Too Many Requests with `Retry-After: <secs>`.
    TooManyRequests { retry_after: u64 },
    /// Read the whole request, then say nothing for this long and close.
    Stall(Duration),
    /// Forward; send the answer's head and only half its body (less than
    /// its Content-Length), then close.
    Truncate,
    /// Forward; flip one byte in the middle of the answer's body.
    Corrupt,
    /// Forward; send the head and half the body, then say nothing for this
    /// long and close (a download that stalls midway).
    StallBody(Duration),
    /// Forward, but read the request's body slowly, in 32 steps spread over
    /// this long: an upload that is slow but never idle for long. Its last
    /// 6 MiB go at full speed: the sender's socket buffer (up to 4 MiB)
    /// would otherwise hide that much slow draining from it.
    SlowUpload(Duration),
    /// Read half the request's body, then nothing more for this long, and
    /// close (an upload the registry stops taking).
    StallUpload(Duration),
}

/// Which requests get a fault: `method` ("" for any) and a substring of the
/// path (with query); of the matching requests (that no earlier rule took),
/// the first `skip` pass, the next `times` get the fault, the rest pass.
#[derive(Clone, Debug)]
pub struct Rule {
    method: String,
    path: String,
    skip: usize,
    times: usize,
    fault: Fault,
    matched: usize,
}

impl Rule {
    /// Fires on the first matching request only.
    pub fn new(method: &str, path_contains: &str, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            path: path_contains.to_string(),
            skip: 0,
            times: 1,
            fault,
            matched: 0,
        }
    }

    /// Fire on the `n`th (1-based) matching request only.
    pub fn nth(mut self, n: usize) -> Rule {
        assert!(n >= 1, "occurrences count from 1");
        self.skip = n - 1;
        self.times = 1;
        self
    }

    /// Fire on this many matching requests (after any skipped).
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    /// Fire on every matching request.
    pub fn always(self) -> Rule {
        self.times(usize::MAX)
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        (self.method.is_empty() || self.method.eq_ignore_ascii_case(method))
            && target.contains(&self.path)
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: String,
    /// Path with query.
    pub target: String,
    /// The status the client was sent (the fault's, or the registry's);
    /// None for resets and stalls.
    pub status: Option<u16>,
    pub fault: Option<Fault>,
    /// When the request's head arrived.
    pub at: Instant,
}

/// What the proxy did, counted as it happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections reset while the client was still sending the body.
    pub resets: usize,
    /// Error statuses answered in place of the registry (5xx, 429).
    pub statuses: usize,
    /// Stalls (answers withheld, uploads no longer read, bodies stopped
    /// midway) begun.
    pub stalls: usize,
    /// Stalls the client gave up on (closed the connection) before they ended.
    pub stalls_abandoned: usize,
    /// Answer bodies sent short of their Content-Length (`Truncate`).
    pub bodies_cut: usize,
    /// Bytes of answer bodies withheld by cuts and midway stalls.
    pub bytes_withheld: u64,
    /// Answer bodies sent with a byte flipped.
    pub bodies_corrupted: usize,
    /// Request body bytes passed on at the paced rate (`SlowUpload`).
    pub bytes_slowed: u64,
    /// Pauses taken between paced steps.
    pub slow_pauses: usize,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Exchange>>,
    counts: Mutex<Counts>,
    stop: AtomicBool,
}

impl Shared {
    fn count(&self, what: impl FnOnce(&mut Counts)) {
        what(&mut self.counts.lock().unwrap());
    }
}

pub struct FaultProxy {
    addr: String,
    alt_addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on two free ports of 127.0.0.1, forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            stop: AtomicBool::new(false),
        });
        let mut addrs = Vec::new();
        for _ in 0..2 {
            let listener = listen().expect("bind the fault proxy");
            addrs.push(listener.local_addr().unwrap().to_string());
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, shared));
        }
        FaultProxy {
            alt_addr: addrs.pop().unwrap(),
            addr: addrs.pop().unwrap(),
            shared,
        }
    }

    /// `127.0.0.1:PORT`: push here.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A second address of the same proxy (and registry), under another name.
    pub fn alt_addr(&self) -> &str {
        &self.alt_addr
    }

    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule: from now on everything is forwarded.
    pub fn clear(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Exchange> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The requests that got a fault.
    pub fn fired(&self) -> Vec<Exchange> {
        self.log()
            .into_iter()
            .filter(|e| e.fault.is_some())
            .collect()
    }

    /// What the proxy has done so far.
    pub fn counts(&self) -> Counts {
        *self.shared.counts.lock().unwrap()
    }

    /// Waits until a request has got a fault; false on timeout.
    pub fn wait_fired(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.fired().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loops so they see the flag.
        for addr in [&self.addr, &self.alt_addr] {
            let _ = TcpStream::connect(addr);
        }
    }
}

/// A listener on a free port of 127.0.0.1 whose connections have small
/// receive buffers: a slow reader then slows the sender down at once,
/// instead of the kernel soaking up megabytes first.
fn listen() -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_recv_buffer_size(64 << 10)?;
    socket.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )?;
    socket.listen(128)?;
    Ok(socket.into())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &shared);
        });
    }
}

struct Head {
    /// Request line or status line.
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The head with `Connection: close` instead of any hop-by-hop connection headers.
    fn to_bytes(&self) -> Vec<u8> {
        let mut text = format!("{}\r\n", self.first);
        for (name, value) in &self.headers {
            let hop = ["connection", "keep-alive", "proxy-connection"]
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h));
            if !hop {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        text.push_str("Connection: close\r\n\r\n");
        text.into_bytes()
    }
}

fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(Some(Head {
        first: first.trim_end_matches(['\r', '\n']).to_string(),
        headers,
    }))
}

/// How a message body is delimited.
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Copies a body as is (chunk framing included); returns the bytes read.
fn copy_body(from: &mut impl BufRead, to: &mut impl Write, framing: Framing) -> io::Result<u64> {
    match framing {
        Framing::Length(n) => io::copy(&mut from.take(n), to),
        Framing::UntilClose => io::copy(from, to),
        Framing::Chunked => {
            let mut total = 0;
            loop {
                let mut size_line = String::new();
                from.read_line(&mut size_line)?;
                to.write_all(size_line.as_bytes())?;
                let size = u64::from_str_radix(
                    size_line.trim().split(';').next().unwrap_or("").trim(),
                    16,
                )
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    loop {
                        let mut line = String::new();
                        from.read_line(&mut line)?;
                        to.write_all(line.as_bytes())?;
                        if line.trim().is_empty() {
                            return Ok(total);
                        }
                    }
                }
                total += io::copy(&mut from.take(size + 2), to)?;
            }
        }
    }
}

fn request_framing(head: &Head) -> Framing {
    if head.chunked() {
        Framing::Chunked
    } else {
        Framing::Length(head.content_length().unwrap_or(0))
    }
}

fn handle(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client.try_clone()?;
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let at = Instant::now();
    let mut parts = request.first.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let fault = pick(shared, &method, &target);
    let record = |status: Option<u16>| {
        shared.log.lock().unwrap().push(Exchange {
            method: method.clone(),
            target: target.clone(),
            status,
            fault: fault.clone(),
            at,
        });
    };
    let framing = request_framing(&request);
    match &fault {
        Some(Fault::Reset { after }) => {
            record(None);
            let length = request.content_length().unwrap_or(u64::MAX);
            // Never the whole body: the client must see the break mid-upload.
            let keep = (*after).min(length / 2);
            let read = io::copy(&mut (&mut reader).take(keep), &mut io::sink())?;
            // Let more of the body arrive, unread, so the close is a reset.
            std::thread::sleep(Duration::from_millis(50));
            socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
            if read == keep && keep < length {
                shared.count(|c| c.resets += 1);
            }
            return Ok(());
        }
        Some(Fault::Status(status)) => {
            copy_body(&mut reader, &mut io::sink(), framing)?;
            record(Some(*status));
            answer(&mut writer, *status, &[])?;
            shared.count(|c| c.statuses += 1);
            return Ok(());
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            copy_body(&mut reader, &mut io::sink(), framing)?;
            record(Some(429));
            answer(
                &mut writer,
                429,
                &[("Retry-After", retry_after.to_string())],
            )?;
            shared.count(|c| c.statuses += 1);
            return Ok(());
        }
        Some(Fault::StallUpload(duration)) => {
            let length = request.content_length().unwrap_or(0);
            io::copy(&mut (&mut reader).take(length / 2), &mut io::sink())?;
            record(None);
            // The unread half hides a hang-up: the test sees the retry instead.
            stall(shared, *duration, None);
            return Ok(());
        }
        Some(Fault::Stall(duration)) => {
            copy_body(&mut reader, &mut io::sink(), framing)?;
            record(None);
            stall(shared, *duration, Some(&client));
            return Ok(());
        }
        _ => {}
    }

    // Forward, one request per upstream connection.
    let upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut up_writer = io::BufWriter::new(upstream.try_clone()?);
    up_writer.write_all(&request.to_bytes())?;
    match (&fault, framing) {
        (Some(Fault::SlowUpload(duration)), Framing::Length(n)) => {
            let slow = n.saturating_sub(6 << 20);
            let step = slow.div_ceil(32).max(1);
            let mut left = slow;
            while left > 0 {
                pause(shared, *duration / 32);
                let sent = io::copy(&mut (&mut reader).take(step.min(left)), &mut up_writer)?;
                up_writer.flush()?;
                if sent == 0 {
                    break;
                }
                shared.count(|c| {
                    c.slow_pauses += 1;
                    c.bytes_slowed += sent;
                });
                left -= sent;
            }
            io::copy(&mut (&mut reader).take(n - slow), &mut up_writer)?;
        }
        _ => {
            copy_body(&mut reader, &mut up_writer, framing)?;
        }
    }
    up_writer.flush()?;
    let mut up_reader = BufReader::new(upstream);
    let Some(response) = read_head(&mut up_reader)? else {
        record(None);
        return Ok(());
    };
    let status: u16 = response
        .first
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    record(Some(status));
    let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
    let framing = if no_body {
        Framing::Length(0)
    } else if response.chunked() {
        Framing::Chunked
    } else {
        match response.content_length() {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    writer.write_all(&response.to_bytes())?;
    match (&fault, framing) {
        (Some(Fault::Truncate), Framing::Length(n)) => {
            io::copy(&mut (&mut up_reader).take(n / 2), &mut writer)?;
            writer.flush()?;
            if n > 0 {
                shared.count(|c| {
                    c.bodies_cut += 1;
                    c.bytes_withheld += n - n / 2;
                });
            }
        }
        (Some(Fault::StallBody(duration)), Framing::Length(n)) => {
            io::copy(&mut (&mut up_reader).take(n / 2), &mut writer)?;
            writer.flush()?;
            shared.count(|c| c.bytes_withheld += n - n / 2);
            stall(shared, *duration, Some(&client));
        }
        (Some(Fault::Corrupt), Framing::Length(n)) if n > 0 => {
            let mut body = Vec::with_capacity(n as usize);
            (&mut up_reader).take(n).read_to_end(&mut body)?;
            let middle = body.len() / 2;
            body[middle] ^= 0x55;
            writer.write_all(&body)?;
            shared.count(|c| c.bodies_corrupted += 1);
        }
        (Some(Fault::Truncate | Fault::StallBody(_) | Fault::Corrupt), framing) => {
            panic!("fault {fault:?} needs a body with a Content-Length, got {framing:?} for {method} {target}")
        }
        (_, framing) => {
            copy_body(&mut up_reader, &mut writer, framing)?;
        }
    }
    writer.flush()
}

/// The fault for this request: rules are asked in the order they were
/// added; the first that fires takes the request, and later rules never
/// see it (it counts for none of their occurrences).
fn pick(shared: &Shared, method: &str, target: &str) -> Option<Fault> {
    let mut rules = shared.rules.lock().unwrap();
    for rule in rules.iter_mut().filter(|r| r.matches(method, target)) {
        rule.matched += 1;
        if rule.matched > rule.skip && rule.matched - rule.skip <= rule.times {
            return Some(rule.fault.clone());
        }
    }
    None
}

fn answer(writer: &mut impl Write, status: u16, headers: &[(&str, String)]) -> io::Result<()> {
    let (reason, code) = match status {
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        500 => ("Internal Server Error", "UNKNOWN"),
        502 => ("Bad Gateway", "UNKNOWN"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        504 => ("Gateway Timeout", "UNKNOWN"),
        _ => ("Fault", "UNKNOWN"),
    };
    let body =
        format!(r#"{{"errors":[{{"code":"{code}","message":"injected by the fault proxy"}}]}}"#);
    let mut text = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    writer.write_all(text.as_bytes())?;
    writer.flush()
}

/// Says nothing for `duration` (counted as a stall); with `client`, stops
/// early, counted as abandoned, when the client hangs up.
fn stall(shared: &Shared, duration: Duration, client: Option<&TcpStream>) {
    shared.count(|c| c.stalls += 1);
    let deadline = Instant::now() + duration;
    if let Some(client) = client {
        let _ = client.set_nonblocking(true);
    }
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        if client.is_some_and(hung_up) {
            shared.count(|c| c.stalls_abandoned += 1);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the peer closed the (non-blocking) connection: end of stream or
/// a reset, as opposed to nothing to read yet.
fn hung_up(client: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match client.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    }
}

/// Sleeps for `duration`, or until the proxy is dropped.
fn pause(shared: &Shared, duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}
