//! A token server for the registry's `auth.token` mode. It answers
//! `GET /token?service=..&scope=..` (and the OAuth2 `POST /token` with a
//! refresh token) with ES256 JWTs whose `x5c` header carries a self-signed
//! certificate; the registry trusts that certificate as its rootcertbundle.
//! Every requested scope is granted; credentials are checked only when the
//! server was started with some.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "slipway-test-registry";
pub const ISSUER: &str = "slipway-test-issuer";

/// One request the token server answered (or refused).
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// Whether it carried the credentials the server requires (false when
    /// it requires none).
    pub authenticated: bool,
    pub granted: bool,
}

pub struct TokenServer {
    addr: SocketAddr,
    cert_pem: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    issued: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Start on a free 127.0.0.1 port. With `credentials`, requests without
    /// them (basic auth, or a refresh token equal to the password) get a 401.
    pub fn start(credentials: Option<(String, String)>) -> TokenServer {
        TokenServer::start_with_reader(credentials, None)
    }

    /// Like `start`, and `reader`'s credentials get tokens granting `pull`
    /// only (whatever they ask for): pull-only CI credentials.
    pub fn start_with_reader(
        credentials: Option<(String, String)>,
        reader: Option<(String, String)>,
    ) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().unwrap();
        let signer = Signer::new();
        let cert_pem = signer.cert_pem.clone();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let state = State {
            signer,
            credentials,
            reader,
            requests: requests.clone(),
            issued: issued.clone(),
        };
        let stop_flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = state.handle(stream);
                }
            }
        });
        TokenServer {
            addr,
            cert_pem,
            requests,
            issued,
            stop,
            thread: Some(thread),
        }
    }

    /// The realm to configure in the registry: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The certificate (PEM) whose key signs the tokens.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Every token request so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Every bearer token handed out so far (secrets a test searches for).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    signer: Signer,
    credentials: Option<(String, String)>,
    reader: Option<(String, String)>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    issued: Arc<Mutex<Vec<String>>>,
}

impl State {
    fn handle(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let Some(request) = read_request(&mut stream)? else {
            return Ok(());
        };
        let (path, query) = request
            .target
            .split_once('?')
            .unwrap_or((&request.target, ""));
        if path != "/token" {
            return respond(
                &mut stream,
                "404 Not Found",
                r#"{"errors":[{"code":"NOT_FOUND","message":"no such endpoint"}]}"#,
            );
        }
        let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if request.method == "POST" {
            params.extend(url::form_urlencoded::parse(&request.body).into_owned());
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        scopes.dedup();
        let basic = request.authorization.as_deref().and_then(decode_basic);
        let authenticated = match &self.credentials {
            Some((user, pass)) => {
                basic.as_ref() == Some(&(user.clone(), pass.clone()))
                    || get("refresh_token").as_deref() == Some(pass.as_str())
            }
            None => false,
        };
        let is_reader = self.reader.is_some() && basic == self.reader;
        let authenticated = authenticated || is_reader;
        let granted = self.credentials.is_none() || authenticated;
        self.requests.lock().unwrap().push(TokenRequest {
            scopes: scopes.clone(),
            service: get("service"),
            authenticated,
            granted,
        });
        if !granted {
            return respond(
                &mut stream,
                "401 Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#,
            );
        }
        let subject = basic.map(|(user, _)| user).unwrap_or_default();
        if is_reader {
            scopes = scopes
                .iter()
                .filter_map(|scope| {
                    let (kind_name, actions) = scope.rsplit_once(':')?;
                    actions
                        .split(',')
                        .any(|a| a == "pull")
                        .then(|| format!("{kind_name}:pull"))
                })
                .collect();
        }
        let token = self.signer.token(&subject, &scopes);
        self.issued.lock().unwrap().push(token.clone());
        let body = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": 600,
        });
        respond(&mut stream, "200 OK", &body.to_string())
    }
}

struct HttpRequest {
    method: String,
    target: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<HttpRequest>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let mut authorization = None;
    let mut length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(HttpRequest {
        method,
        target,
        authorization,
        body,
    }))
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let mut extra = String::new();
    if status.starts_with("401") {
        extra.push_str("WWW-Authenticate: Basic realm=\"slipway-test-token\"\r\n");
    }
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// An ES256 key and its self-signed certificate.
struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    x5c: String,
    cert_pem: String,
    counter: AtomicU64,
}

impl Signer {
    fn new() -> Signer {
        let key = rcgen::KeyPair::generate().expect("generate a P-256 key");
        let params = rcgen::CertificateParams::new(vec!["slipway-test-token".to_string()])
            .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("self-sign the certificate");
        let rng = SystemRandom::new();
        let ring_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .expect("load the key into ring");
        Signer {
            key: ring_key,
            rng,
            x5c: STANDARD.encode(cert.der()),
            cert_pem: cert.pem(),
            counter: AtomicU64::new(0),
        }
    }

    /// A JWT granting each `repository:<name>:<actions>` scope.
    fn token(&self, subject: &str, scopes: &[String]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|scope| {
                let (kind_name, actions) = scope.rsplit_once(':')?;
                let (kind, name) = kind_name.split_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", self.counter.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, input.as_bytes())
            .expect("sign the token");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}
