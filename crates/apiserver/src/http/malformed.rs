//! Requests too malformed for a handler, answered with a Status body as every other error.
//!
//! Two kinds: those hyper's HTTP/1 parser refuses before any service sees them (a control
//! byte in a header value, a byte that no URI may hold, a request line over 64 KiB, a head
//! over hyper's buffer), which hyper answers with an empty 400, 414 or 431 and closes; and
//! those hyper passes on, which [`check`] refuses (a URL over [`MAX_URL_BYTES`], a path with a
//! malformed percent escape or one that decodes to something other than UTF-8).
//!
//! For the first kind, [`StatusOnParseError`] sits between hyper and the TLS stream and
//! rewrites hyper's empty error answer, which it recognizes by its exact head (status line,
//! `content-length: 0`, nothing else but `connection: close` and `date`): no answer of the handler has that shape,
//! since every error of ours carries a Status body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Uri;
use krust_api::StatusError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest URL (path and query) served. Go, upstream, has no URL limit of its own, only
/// 1 MiB for the whole head; hyper refuses request lines over 64 KiB. 16 KiB holds any
/// selector a client sends in practice (nginx and Apache stop at 8 KiB).
pub const MAX_URL_BYTES: usize = 16 * 1024;

/// Refuses a URL that is too long (414) or whose path does not decode to UTF-8 (400).
pub fn check(uri: &Uri) -> Result<(), StatusError> {
    let len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if len > MAX_URL_BYTES {
        return Err(StatusError::with_code(
            414,
            krust_api::Reason::Other("RequestURITooLong"),
            format!("the request URL is {len} bytes long, longer than the {MAX_URL_BYTES} allowed"),
        ));
    }
    let decoded = percent_decode(uri.path())?;
    if std::str::from_utf8(&decoded).is_err() {
        return Err(StatusError::bad_request("the request path is not valid UTF-8"));
    }
    Ok(())
}

fn percent_decode(path: &str) -> Result<Vec<u8>, StatusError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| {
                let escape: String = path[i..].chars().take(3).collect();
                StatusError::bad_request(format!("invalid URL escape {escape:?}"))
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// The status, reason and message of an empty error answer of hyper's, from its head.
fn hyper_error(head: &[u8]) -> Option<StatusError> {
    const ANSWERS: [(&[u8], u16, &str, &str); 3] = [
        (
            b"HTTP/1.1 400 Bad Request\r\n",
            400,
            "BadRequest",
            "the request could not be parsed: a malformed request line or header",
        ),
        (
            b"HTTP/1.1 414 URI Too Long\r\n",
            414,
            "RequestURITooLong",
            "the request line is longer than 64 KiB",
        ),
        (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            431,
            "RequestHeaderFieldsTooLarge",
            "the request head is too large",
        ),
    ];
    let (status_line, code, reason, message) =
        ANSWERS.into_iter().find(|(line, ..)| head.starts_with(line))?;
    if !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let headers = &head[status_line.len()..head.len() - 2];
    // Only `content-length: 0`, `connection: close` and `date`: the exact shape of hyper's
    // automatic answer.
    let mut lines = headers.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let shape_matches = lines.all(|line| {
        line.eq_ignore_ascii_case(b"content-length: 0\r")
            || line.eq_ignore_ascii_case(b"connection: close\r")
            || line.len() > 6 && line[..6].eq_ignore_ascii_case(b"date: ")
    });
    let has_length = headers
        .split(|b| *b == b'\n')
        .any(|line| line.eq_ignore_ascii_case(b"content-length: 0\r"));
    let reason = match krust_api::Reason::from_name(reason) {
        krust_api::Reason::Unknown => krust_api::Reason::Other(reason),
        known => known,
    };
    (shape_matches && has_length).then(|| StatusError::with_code(code, reason, message))
}

/// The whole answer that replaces hyper's empty one.
fn replacement(error: &StatusError) -> Vec<u8> {
    let body = serde_json::to_vec(&error.to_status()).unwrap_or_default();
    let phrase = http::StatusCode::from_u16(error.code())
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Bad Request");
    let mut out = format!(
        "HTTP/1.1 {} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        error.code(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A stream that passes everything through, except hyper's empty HTTP/1 error answers, which
/// it replaces with the same status and a Status body.
#[derive(Debug)]
pub struct StatusOnParseError<T> {
    inner: T,
    /// A replacement being written: its bytes, how many are written, and how many bytes of
    /// hyper's answer it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> StatusOnParseError<T> {
    /// Wraps a stream.
    pub fn new(inner: T) -> Self {
        Self { inner, pending: None }
    }
}

impl<T: AsyncWrite + Unpin> StatusOnParseError<T> {
    /// Writes what is left of a replacement (kept, written, until `poll_write` reports it).
    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written, _)) = &mut self.pending {
            if *written == bytes.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StatusOnParseError<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StatusOnParseError<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match hyper_error(buf) {
                Some(error) => this.pending = Some((replacement(&error), 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        ready!(this.poll_drive(cx))?;
        let stands_for = this.pending.take().map_or(0, |(_, _, n)| n);
        Poll::Ready(Ok(stands_for))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty());
        if this.pending.is_some() || first.is_some_and(|b| hyper_error(b).is_some()) {
            // Only the head slice: hyper's answer has nothing after it.
            let first = first.map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drive(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drive(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn long_urls_and_paths_that_do_not_decode_are_refused() {
        let code =
            |uri: &str| check(&uri.parse::<Uri>().expect("a valid URI")).map_err(|e| e.code());
        assert_eq!(code("/api/v1/namespaces/default/pods?labelSelector=a%3Db"), Ok(()));
        assert_eq!(code("/api/v1/namespaces/caf%C3%A9"), Ok(()));
        assert_eq!(code(&format!("/api/v1/pods?x={}", "a".repeat(MAX_URL_BYTES))), Err(414));
        assert_eq!(code("/api/v1/namespaces/%ff"), Err(400));
        assert_eq!(code("/api/v1/namespaces/%zz"), Err(400));
        assert_eq!(code("/api/v1/namespaces/%"), Err(400));
        assert_eq!(code("/api/v1/namespaces/%e"), Err(400));
    }

    #[test]
    fn only_hypers_exact_empty_error_answer_is_recognized() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 21:47:29 GMT\r\n\r\n";
        assert_eq!(hyper_error(hyper).map(|e| e.code()), Some(400));
        let too_long = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hyper_error(too_long).map(|e| e.code()), Some(414));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n";
        assert!(hyper_error(ours).is_none());
        let empty_ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(hyper_error(empty_ok).is_none());
        assert!(hyper_error(b"HTTP/1.1 400 Bad Request\r\n").is_none());
    }

    #[tokio::test]
    async fn hypers_answer_is_replaced_by_a_status_and_other_bytes_pass() {
        let mut out = StatusOnParseError::new(Vec::new());
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.expect("write");
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        out.write_all(hyper).await.expect("write");
        out.flush().await.expect("flush");
        let text = String::from_utf8(out.inner).expect("text");
        let (first, second) = text.split_at(text.find("okHTTP").expect("both answers") + 2);
        assert!(first.ends_with("\r\n\r\nok"));
        assert!(second.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body = &second[second.find("\r\n\r\n").expect("a head") + 4..];
        let status: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 431);
        assert!(second.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
