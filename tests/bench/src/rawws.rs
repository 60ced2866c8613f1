//! A minimal WebSocket client for reading server frames cheaply.
//!
//! With 1,000 terminals every event becomes 1,000 frames, and the bench's client shares
//! two cores with the server: a general-purpose client (tokio-tungstenite) spent ~13 µs of
//! client CPU per frame here, which showed up in the measured delivery latency. This one
//! does one `read` per readiness, parses frames in place (server frames are unmasked) and
//! allocates nothing per frame. It answers pings (masked pongs, as RFC 6455 requires of
//! clients) and reports close frames; it never sends data frames.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::snippet;

const MAX_FRAME: u64 = 16 << 20;
const MAX_HANDSHAKE: usize = 64 << 10;
const MASK: [u8; 4] = [0x5a, 0x3c, 0xa5, 0xc3];

pub struct RawWs {
    stream: TcpStream,
    frames: Frames,
}

/// Received bytes and the parsing state of one connection.
struct Frames {
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    pos: usize,
    /// A fragmented message being reassembled: its opcode and bytes so far.
    frag_opcode: Option<u8>,
    frag: Vec<u8>,
    /// Pongs (and the like) to write before the next read.
    out: Vec<u8>,
}

#[derive(Debug)]
pub enum Msg<'a> {
    Text(&'a [u8]),
    Binary,
    Close(Option<u16>, String),
}

/// Start of a complete frame in a buffer.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    fin: bool,
    opcode: u8,
    header_len: usize,
    payload_len: usize,
}

/// Parses the frame header at the start of `b`; `None` until the whole frame is there.
fn parse_head(b: &[u8]) -> Result<Option<Head>> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    let opcode = b[0] & 0x0f;
    if b[1] & 0x80 != 0 {
        bail!("the server sent a masked frame (RFC 6455 forbids it)");
    }
    let (len, header_len) = match b[1] & 0x7f {
        126 => match b.get(2..4) {
            Some(x) => (u64::from(u16::from_be_bytes([x[0], x[1]])), 4),
            None => return Ok(None),
        },
        127 => match b.get(2..10) {
            Some(x) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(x);
                (u64::from_be_bytes(n), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        bail!("frame of {len} bytes is larger than the bench accepts");
    }
    let payload_len = len as usize;
    if b.len() < header_len + payload_len {
        return Ok(None);
    }
    Ok(Some(Head {
        fin,
        opcode,
        header_len,
        payload_len,
    }))
}

/// A masked client control frame (`opcode` 0x8 close, 0xA pong); payload ≤ 125 bytes.
fn control_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(125)];
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

impl RawWs {
    /// Connects and upgrades; `headers` are sent with the upgrade request.
    pub async fn connect(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<RawWs> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .context("sending the upgrade request")?;

        let mut buf = Vec::with_capacity(4096);
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HANDSHAKE {
                bail!("oversized upgrade response");
            }
            buf.reserve(4096);
            let n = stream
                .read_buf(&mut buf)
                .await
                .context("reading the upgrade response")?;
            if n == 0 {
                bail!(
                    "connection closed during the WebSocket upgrade: {}",
                    snippet(&buf)
                );
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]);
        let status_line = head.lines().next().unwrap_or_default();
        if status_line.split_whitespace().nth(1) != Some("101") {
            bail!(
                "WebSocket upgrade refused: {status_line}: {}",
                snippet(&buf[header_end..])
            );
        }
        Ok(RawWs {
            stream,
            frames: Frames {
                buf,
                pos: header_end,
                frag_opcode: None,
                frag: Vec::new(),
                out: Vec::new(),
            },
        })
    }

    /// The next complete message already received, if any (never waits).
    pub fn next_msg(&mut self) -> Result<Option<Msg<'_>>> {
        self.frames.next_msg()
    }

    /// Writes pending pongs, then waits for and reads more bytes. `Ok(false)` on EOF.
    pub async fn fill(&mut self) -> Result<bool> {
        if !self.frames.out.is_empty() {
            self.stream
                .write_all(&self.frames.out)
                .await
                .context("writing a pong")?;
            self.frames.out.clear();
        }
        self.frames.make_room();
        let n = self
            .stream
            .read_buf(&mut self.frames.buf)
            .await
            .context("reading from the WebSocket")?;
        Ok(n > 0)
    }

    /// Best-effort close frame (1000); the caller then drops the socket.
    pub async fn close(mut self) {
        let mut frame = Vec::new();
        control_frame(0x8, &1000u16.to_be_bytes(), &mut frame);
        let _ = self.stream.write_all(&frame).await;
    }

    /// The same connection for a thread of its own that polls many sockets with epoll
    /// (see `ws::poll_readers`): no runtime, no task per socket.
    pub fn into_polled(self) -> Result<PolledWs> {
        let stream = self
            .stream
            .into_std()
            .context("detaching the socket from the runtime")?;
        // Still non-blocking, as tokio left it.
        Ok(PolledWs {
            stream,
            frames: self.frames,
        })
    }
}

impl Frames {
    /// Drops parsed bytes and keeps at least 1 KiB free for the next read.
    fn make_room(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
    }

    /// The next complete message already received, if any (never waits).
    fn next_msg(&mut self) -> Result<Option<Msg<'_>>> {
        loop {
            let Some(h) = parse_head(&self.buf[self.pos..])? else {
                return Ok(None);
            };
            let start = self.pos + h.header_len;
            let end = start + h.payload_len;
            self.pos = end;
            match h.opcode {
                0x1 | 0x2 if self.frag_opcode.is_some() => {
                    bail!("new data frame inside a fragmented message")
                }
                0x1 if h.fin => return Ok(Some(Msg::Text(&self.buf[start..end]))),
                0x2 if h.fin => return Ok(Some(Msg::Binary)),
                0x1 | 0x2 => {
                    self.frag_opcode = Some(h.opcode);
                    self.frag.clear();
                    self.frag.extend_from_slice(&self.buf[start..end]);
                }
                0x0 => {
                    let Some(opcode) = self.frag_opcode else {
                        bail!("continuation frame without a message");
                    };
                    self.frag.extend_from_slice(&self.buf[start..end]);
                    if h.fin {
                        self.frag_opcode = None;
                        return Ok(Some(if opcode == 0x1 {
                            Msg::Text(&self.frag)
                        } else {
                            Msg::Binary
                        }));
                    }
                }
                0x8 => {
                    let p = &self.buf[start..end];
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default());
                    return Ok(Some(Msg::Close(code, reason.into_owned())));
                }
                0x9 => control_frame(0xA, &self.buf[start..end], &mut self.out),
                0xA => {}
                other => bail!("unknown WebSocket opcode {other:#x}"),
            }
        }
    }
}

/// A [`RawWs`] read by non-blocking system calls from a polling thread.
pub struct PolledWs {
    stream: std::net::TcpStream,
    frames: Frames,
}

/// What one non-blocking read found.
pub enum Polled {
    Data,
    Empty,
    Eof,
}

impl PolledWs {
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.stream)
    }

    /// The next complete message already received, if any (never waits).
    pub fn next_msg(&mut self) -> Result<Option<Msg<'_>>> {
        self.frames.next_msg()
    }

    /// Writes pending pongs (best effort: they are a few bytes), then reads what is there.
    pub fn fill(&mut self) -> std::io::Result<Polled> {
        use std::io::Write as _;
        if !self.frames.out.is_empty() {
            let _ = (&self.stream).write_all(&self.frames.out);
            self.frames.out.clear();
        }
        self.frames.make_room();
        let buf = &mut self.frames.buf;
        let len = buf.len();
        let spare = buf.capacity() - len;
        // SAFETY: `recv` writes at most `spare` bytes into the vector's spare capacity,
        // and only the bytes it reports written are then counted as initialized.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.stream);
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().add(len).cast(), spare, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            return if err.kind() == std::io::ErrorKind::WouldBlock {
                Ok(Polled::Empty)
            } else {
                Err(err)
            };
        }
        let n = n as usize;
        // SAFETY: see above; `n <= spare`.
        unsafe { buf.set_len(len + n) };
        Ok(if n == 0 { Polled::Eof } else { Polled::Data })
    }

    /// Best-effort close frame (1000); the caller then drops the socket.
    pub fn close(self) {
        use std::io::Write as _;
        let mut frame = Vec::new();
        control_frame(0x8, &1000u16.to_be_bytes(), &mut frame);
        let _ = (&self.stream).write_all(&frame);
    }
}

/// A scripted WebSocket server for the bench's own tests: accepts one connection and
/// reads its upgrade request; the test then writes whatever bytes it wants.
#[cfg(test)]
pub(crate) async fn accept_upgrade(
    listener: tokio::net::TcpListener,
) -> Result<(TcpStream, String)> {
    let (mut sock, _) = listener.accept().await?;
    let mut req = Vec::new();
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "client went away");
        req.extend_from_slice(&chunk[..n]);
    }
    Ok((sock, String::from_utf8_lossy(&req).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::{accept_upgrade, control_frame, parse_head, Head, Msg, RawWs, MASK};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A scripted server: upgrade, then a text, a fragmented text, a ping, a binary
    /// frame and a close, all in one write; then it reads the client's pong.
    #[tokio::test]
    async fn reads_messages_and_answers_pings() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (mut sock, req) = accept_upgrade(listener).await?;
            let mut out =
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
            out.extend_from_slice(&[0x81, 9]);
            out.extend_from_slice(br#"{"seq":1}"#);
            out.extend_from_slice(&[0x01, 2, b'a', b'b', 0x89, 1, b'p', 0x80, 2, b'c', b'd']);
            out.extend_from_slice(&[0x82, 1, 0]);
            out.extend_from_slice(&[0x88, 6, 0x0f, 0xa0]);
            out.extend_from_slice(b"slow");
            sock.write_all(&out).await?;
            let mut pong = [0u8; 7];
            sock.read_exact(&mut pong).await?;
            Ok::<_, anyhow::Error>((req, pong))
        });

        let mut ws = RawWs::connect(addr, "/ws/pos/t", &[("X-API-Key", "k")]).await?;
        let mut got = Vec::new();
        loop {
            let mut closed = false;
            while let Some(msg) = ws.next_msg()? {
                got.push(match msg {
                    Msg::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Msg::Binary => "binary".into(),
                    Msg::Close(code, reason) => {
                        closed = true;
                        format!("close {code:?} {reason}")
                    }
                });
            }
            if closed {
                break;
            }
            anyhow::ensure!(ws.fill().await?, "EOF before close");
        }
        assert_eq!(
            got,
            [r#"{"seq":1}"#, "abcd", "binary", "close Some(4000) slow"]
        );
        // The pong goes out with the next fill.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), ws.fill()).await;
        let (req, pong) = server.await??;
        assert!(req.starts_with("GET /ws/pos/t HTTP/1.1\r\n"));
        assert!(req.contains("X-API-Key: k\r\n"));
        assert!(req.contains("Sec-WebSocket-Version: 13\r\n"));
        assert_eq!(&pong[..2], &[0x8A, 0x81]);
        assert_eq!(pong[6] ^ MASK[0], b'p');
        Ok(())
    }

    #[test]
    fn parses_frame_heads() {
        assert_eq!(parse_head(&[0x81]).ok().flatten(), None);
        let mut f = vec![0x81, 3];
        f.extend_from_slice(b"abc");
        assert_eq!(
            parse_head(&f).ok().flatten(),
            Some(Head {
                fin: true,
                opcode: 1,
                header_len: 2,
                payload_len: 3
            })
        );
        // Incomplete payload.
        assert_eq!(parse_head(&f[..4]).ok().flatten(), None);
        // 16-bit length.
        let mut f = vec![0x01, 126, 0x01, 0x00];
        f.resize(4 + 256, b'x');
        assert_eq!(
            parse_head(&f).ok().flatten(),
            Some(Head {
                fin: false,
                opcode: 1,
                header_len: 4,
                payload_len: 256
            })
        );
        // Masked server frames are rejected.
        assert!(parse_head(&[0x81, 0x80 | 1, 0, 0, 0, 0, b'a']).is_err());
    }

    #[test]
    fn control_frames_are_masked() {
        let mut out = Vec::new();
        control_frame(0xA, b"hi", &mut out);
        assert_eq!(out[0], 0x8A);
        assert_eq!(out[1], 0x80 | 2);
        assert_eq!(&out[2..6], &MASK);
        assert_eq!(out[6] ^ MASK[0], b'h');
        assert_eq!(out[7] ^ MASK[1], b'i');
    }
}
