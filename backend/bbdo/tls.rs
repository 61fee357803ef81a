//! TLS between BBDO peers (docs/bbdo.md, TLS): the `TLS` extension. The
//! welcomes travel in clear; when both list `TLS`, the same TCP connection
//! turns into a TLS session right after them, the side that dialled being
//! the TLS client. Compression, when agreed too, runs inside TLS.
//!
//! Two modes, as Centreon Broker picks them from its own settings only:
//! - anonymous (no key and no certificate): TLS 1.2 with the four
//!   `DH_anon` suites Centreon's GnuTLS offers and accepts, the server
//!   using the 2048-bit RFC 7919 group. This guards against eavesdropping
//!   only, and is why BBDO uses OpenSSL: rustls has no anonymous suites.
//! - certificate (key and certificate): TLS 1.2 or 1.3; the server asks
//!   for a client certificate without requiring one; the peer is verified
//!   only when `ca_certificate` is set, and its name only when
//!   `tls_hostname` is set too. No SNI is sent, as Centreon sends none.
//!
//! Contexts are built once at start, so that a bad file stops the start
//! with a clear message rather than failing each connection.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use openssl::dh::Dh;
use openssl::pkey::PKey;
use openssl::ssl::{Ssl, SslContext, SslContextBuilder, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

/// The `DH_anon` suites of Centreon's GnuTLS priority string, as measured
/// (0x00a7, 0x003a, 0x00a6, 0x0034), in its order. `@SECLEVEL=0` because
/// any higher level excludes unauthenticated suites.
pub const ANONYMOUS_CIPHERS: &str =
    "ADH-AES256-GCM-SHA384:ADH-AES256-SHA:ADH-AES128-GCM-SHA256:ADH-AES128-SHA:@SECLEVEL=0";

/// RFC 7919 ffdhe2048 (generator 2): a published 2048-bit group, as
/// Centreon's server uses a fixed 2048-bit group of its own.
const FFDHE2048_PEM: &[u8] = b"-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
";

/// Centreon's `tls` setting: whether `TLS` is listed in our welcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsSetting {
    /// Not listed (Centreon's default when `tls` is absent).
    #[default]
    No,
    /// Listed; TLS starts if the peer lists it too, else clear.
    Auto,
    /// Listed; a peer that does not list it is logged as an error and
    /// the connection goes on in clear, as Centreon does.
    Yes,
}

impl TlsSetting {
    /// `yes`/`no`/`auto`, and the booleans Centreon accepts.
    pub fn parse(text: &str) -> Result<TlsSetting, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TlsSetting::Auto),
            "yes" | "true" | "y" | "t" | "1" => Ok(TlsSetting::Yes),
            "no" | "false" | "n" | "f" | "0" => Ok(TlsSetting::No),
            _ => Err(format!("`{text}` is not yes, no or auto")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsSetting::No => "no",
            TlsSetting::Auto => "auto",
            TlsSetting::Yes => "yes",
        }
    }
}

/// TLS settings of one listener group or connector, as configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsSettings {
    pub tls: TlsSetting,
    pub private_key: Option<PathBuf>,
    pub public_cert: Option<PathBuf>,
    pub ca_certificate: Option<PathBuf>,
    pub tls_hostname: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Anonymous,
    Certificate,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Anonymous => "anonymous",
            TlsMode::Certificate => "certificate",
        }
    }
}

/// Which end of the TLS session we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsSide {
    Server,
    Client,
}

/// A ready TLS context for one side, built once.
#[derive(Clone)]
pub struct Tls {
    pub setting: TlsSetting,
    pub mode: TlsMode,
    pub side: TlsSide,
    context: SslContext,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("setting", &self.setting)
            .field("mode", &self.mode)
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

fn readable(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("{what} `{}`: cannot read it: {e}", path.display()))
}

fn ssl_error(what: &str, path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{what} `{}`: {e}", path.display())
}

impl TlsSettings {
    /// The mode these settings mean, or why they are inconsistent.
    pub fn mode(&self) -> anyhow::Result<TlsMode> {
        match (&self.private_key, &self.public_cert) {
            (None, None) => {
                anyhow::ensure!(
                    self.ca_certificate.is_none(),
                    "ca_certificate is set without private_key and public_cert: a peer can only be verified in certificate mode"
                );
                Ok(TlsMode::Anonymous)
            }
            (Some(_), Some(_)) => Ok(TlsMode::Certificate),
            (Some(_), None) => {
                anyhow::bail!("private_key is set without public_cert: set both, or neither for anonymous TLS")
            }
            (None, Some(_)) => {
                anyhow::bail!("public_cert is set without private_key: set both, or neither for anonymous TLS")
            }
        }
    }

    /// The context for `side`, or `None` when TLS is off (`tls = no`).
    /// Checks every file now: readable, a key that matches the
    /// certificate, a CA that parses.
    pub fn build(&self, side: TlsSide) -> anyhow::Result<Option<Tls>> {
        if self.tls == TlsSetting::No {
            return Ok(None);
        }
        let mode = self.mode()?;
        let method = match side {
            TlsSide::Server => SslMethod::tls_server(),
            TlsSide::Client => SslMethod::tls_client(),
        };
        let mut b = SslContextBuilder::new(method)?;
        b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
        // The 2048-bit group for DHE and DH_anon suites, on the server.
        if side == TlsSide::Server {
            let dh = Dh::params_from_pem(FFDHE2048_PEM)?;
            b.set_tmp_dh(&dh)?;
        }
        match mode {
            TlsMode::Anonymous => {
                // TLS 1.3 has no anonymous key exchange.
                b.set_max_proto_version(Some(SslVersion::TLS1_2))?;
                b.set_cipher_list(ANONYMOUS_CIPHERS)?;
                b.set_verify(SslVerifyMode::NONE);
            }
            TlsMode::Certificate => self.certificate(&mut b, side)?,
        }
        Ok(Some(Tls {
            setting: self.tls,
            mode,
            side,
            context: b.build(),
        }))
    }

    fn certificate(&self, b: &mut SslContextBuilder, side: TlsSide) -> anyhow::Result<()> {
        let (Some(key), Some(cert)) = (&self.private_key, &self.public_cert) else {
            anyhow::bail!("certificate mode needs private_key and public_cert");
        };
        let cert_pem = readable("public_cert", cert)?;
        let key_pem = readable("private_key", key)?;
        X509::from_pem(&cert_pem)
            .map_err(|e| ssl_error("public_cert", cert, format!("not a PEM certificate: {e}")))?;
        let pkey = PKey::private_key_from_pem(&key_pem)
            .map_err(|e| ssl_error("private_key", key, format!("not a PEM private key: {e}")))?;
        // The chain file, so that intermediates go out with the leaf.
        b.set_certificate_chain_file(cert)
            .map_err(|e| ssl_error("public_cert", cert, e))?;
        let mismatch = || {
            anyhow::anyhow!(
                "private_key `{}` does not match public_cert `{}`",
                key.display(),
                cert.display()
            )
        };
        b.set_private_key(&pkey).map_err(|_| mismatch())?;
        b.check_private_key().map_err(|_| {
            anyhow::anyhow!(
                "private_key `{}` does not match public_cert `{}`",
                key.display(),
                cert.display()
            )
        })?;
        match &self.ca_certificate {
            Some(ca) => {
                let pem = readable("ca_certificate", ca)?;
                let certs = X509::stack_from_pem(&pem).map_err(|e| {
                    ssl_error("ca_certificate", ca, format!("not PEM certificates: {e}"))
                })?;
                anyhow::ensure!(
                    !certs.is_empty(),
                    "ca_certificate `{}`: no certificate in it",
                    ca.display()
                );
                let store = b.cert_store_mut();
                for c in certs {
                    store
                        .add_cert(c)
                        .map_err(|e| ssl_error("ca_certificate", ca, e))?;
                }
                if let Some(name) = &self.tls_hostname {
                    // The peer's certificate must name it (SAN, or CN
                    // without SANs), whichever side we are.
                    b.verify_param_mut()
                        .set_host(name)
                        .map_err(|e| anyhow::anyhow!("tls_hostname `{name}`: {e}"))?;
                }
                // Verification on: a peer without a certificate, or one
                // the CA did not sign, is refused.
                b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
            }
            None => match side {
                // Ask for a client certificate, as Centreon does, and
                // take whatever comes: nothing is verified without a CA.
                TlsSide::Server => b.set_verify_callback(SslVerifyMode::PEER, |_, _| true),
                TlsSide::Client => b.set_verify(SslVerifyMode::NONE),
            },
        }
        Ok(())
    }
}

/// What a finished TLS handshake agreed.
#[derive(Clone, Debug, PartialEq)]
pub struct Negotiated {
    pub mode: TlsMode,
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: String,
    pub cipher: String,
}

impl Tls {
    /// Runs the handshake over `stream`, `already_read` being bytes read
    /// past the welcome (the peer may have sent its first TLS bytes with
    /// it). Errors are OpenSSL's reason, for the log.
    pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        already_read: BytesMut,
    ) -> Result<(SslStream<Rewind<S>>, Negotiated), String> {
        let ssl = Ssl::new(&self.context).map_err(|e| e.to_string())?;
        let mut tls =
            SslStream::new(ssl, Rewind::new(already_read, stream)).map_err(|e| e.to_string())?;
        let result = match self.side {
            TlsSide::Server => Pin::new(&mut tls).accept().await,
            TlsSide::Client => Pin::new(&mut tls).connect().await,
        };
        result.map_err(|e| describe_error(&e, &tls))?;
        let ssl = tls.ssl();
        let negotiated = Negotiated {
            mode: self.mode,
            version: ssl.version_str().to_owned(),
            cipher: ssl
                .current_cipher()
                .map(|c| c.name().to_owned())
                .unwrap_or_default(),
        };
        Ok((tls, negotiated))
    }
}

/// For a tool that dials a BBDO peer with TLS (the load tool): the client
/// context of `settings`, whose [`Tls::handshake`] wraps a stream once the
/// welcomes are exchanged.
pub fn client(settings: &TlsSettings) -> anyhow::Result<Option<Tls>> {
    settings.build(TlsSide::Client)
}

fn describe_error<S>(e: &openssl::ssl::Error, tls: &SslStream<S>) -> String {
    let mut m = match e.ssl_error() {
        Some(stack) => stack.to_string(),
        None => match e.io_error() {
            Some(io) => io.to_string(),
            None if e.code() == openssl::ssl::ErrorCode::ZERO_RETURN
                || e.code() == openssl::ssl::ErrorCode::SYSCALL =>
            {
                "the peer closed the connection during the TLS handshake".to_owned()
            }
            None => e.to_string(),
        },
    };
    let verify = tls.ssl().verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        m.push_str(&format!(
            " (certificate verification: {})",
            verify.error_string()
        ));
    }
    m
}

/// A stream that first yields bytes already read from it.
#[derive(Debug)]
pub struct Rewind<S> {
    buffered: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(buffered: BytesMut, inner: S) -> Self {
        Rewind { buffered, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.buffered.is_empty() {
            let n = self.buffered.len().min(buf.remaining());
            buf.put_slice(&self.buffered[..n]);
            self.buffered.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The session's stream: clear, or TLS once agreed.
pub enum Transport<S> {
    Plain(S),
    Tls(Box<SslStream<Rewind<S>>>),
    /// Only while the handshake owns the stream; a failed handshake ends
    /// the session, which then only drops it.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Transport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Transport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes the peer sent with its welcome reach the TLS engine first.
    #[tokio::test]
    async fn rewind_yields_what_was_already_read_then_the_stream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(64);
        theirs.write_all(b" world").await.unwrap();
        drop(theirs);
        let mut r = Rewind::new(BytesMut::from(&b"hello"[..]), ours);
        let mut all = String::new();
        r.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[test]
    fn settings_parse_as_centreon_booleans() {
        assert_eq!(TlsSetting::parse("auto"), Ok(TlsSetting::Auto));
        assert_eq!(TlsSetting::parse("YES"), Ok(TlsSetting::Yes));
        assert_eq!(TlsSetting::parse("false"), Ok(TlsSetting::No));
        assert!(TlsSetting::parse("maybe").is_err());
    }

    #[test]
    fn anonymous_contexts_build_and_half_settings_do_not() {
        let anon = TlsSettings {
            tls: TlsSetting::Auto,
            ..TlsSettings::default()
        };
        let server = anon.build(TlsSide::Server).unwrap().unwrap();
        assert_eq!(server.mode, TlsMode::Anonymous);
        assert!(anon.build(TlsSide::Client).unwrap().is_some());
        let off = TlsSettings::default();
        assert!(off.build(TlsSide::Server).unwrap().is_none());
        let half = TlsSettings {
            tls: TlsSetting::Yes,
            private_key: Some("/nonexistent/key.pem".into()),
            ..TlsSettings::default()
        };
        let e = half.build(TlsSide::Server).unwrap_err().to_string();
        assert!(e.contains("without public_cert"), "{e}");
        let missing = TlsSettings {
            tls: TlsSetting::Yes,
            private_key: Some("/nonexistent/key.pem".into()),
            public_cert: Some("/nonexistent/cert.pem".into()),
            ..TlsSettings::default()
        };
        let e = missing.build(TlsSide::Client).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/cert.pem") && e.contains("cannot read"),
            "{e}"
        );
    }
}
