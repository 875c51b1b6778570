//! HTTP/2 frames (RFC 9113 §4 and §6): the nine-byte frame header, the
//! settings a client sends, and the frames the server writes. Pure: bytes
//! in, values out, and frames appended to a buffer.

/// What every HTTP/2 client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;
/// The largest frame payload either side may send until the other says
/// more; the server never says more, so no frame it reads is larger.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// Every flow-control window starts here (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// A type this server does not know; ignored, as §5.5 asks.
    Unknown(u8),
}

impl Kind {
    fn of(code: u8) -> Kind {
        match code {
            0 => Kind::Data,
            1 => Kind::Headers,
            2 => Kind::Priority,
            3 => Kind::RstStream,
            4 => Kind::Settings,
            5 => Kind::PushPromise,
            6 => Kind::Ping,
            7 => Kind::GoAway,
            8 => Kind::WindowUpdate,
            9 => Kind::Continuation,
            other => Kind::Unknown(other),
        }
    }

    fn code(self) -> u8 {
        match self {
            Kind::Data => 0,
            Kind::Headers => 1,
            Kind::Priority => 2,
            Kind::RstStream => 3,
            Kind::Settings => 4,
            Kind::PushPromise => 5,
            Kind::Ping => 6,
            Kind::GoAway => 7,
            Kind::WindowUpdate => 8,
            Kind::Continuation => 9,
            Kind::Unknown(code) => code,
        }
    }
}

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
/// The same bit, on SETTINGS and PING.
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: Kind,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize,
            kind: Kind::of(bytes[3]),
            flags: bytes[4],
            // The high bit is reserved and ignored (§4.1).
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len as u32).to_be_bytes()[1..]);
        out.push(self.kind.code());
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Error codes (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NoError = 0x0,
    Protocol = 0x1,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// Settings identifiers (§6.5.2) the server reads or sends.
pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// What a client's SETTINGS frame changes for the server's sending side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSettings {
    pub initial_window: Option<i64>,
    pub max_frame: Option<usize>,
}

/// Reads a SETTINGS payload; a value out of its range is the connection
/// error §6.5.2 names.
pub fn settings(payload: &[u8]) -> Result<PeerSettings, Reason> {
    if !payload.len().is_multiple_of(6) {
        return Err(Reason::FrameSize);
    }
    let mut settings = PeerSettings::default();
    for entry in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([entry[0], entry[1]]);
        let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
        match id {
            ENABLE_PUSH if value > 1 => return Err(Reason::Protocol),
            INITIAL_WINDOW_SIZE if i64::from(value) > MAX_WINDOW => {
                return Err(Reason::FlowControl);
            }
            INITIAL_WINDOW_SIZE => settings.initial_window = Some(i64::from(value)),
            MAX_FRAME_SIZE if !(16_384..=16_777_215).contains(&value) => {
                return Err(Reason::Protocol);
            }
            MAX_FRAME_SIZE => settings.max_frame = Some(value as usize),
            // The server keeps no header table for what it sends, and
            // pushes nothing: the rest asks nothing of it.
            _ => {}
        }
    }
    Ok(settings)
}

/// The content of a DATA or HEADERS payload, without its padding (and for
/// HEADERS its priority fields); padding longer than the payload is a
/// protocol error (§6.1).
pub fn content<'a>(head: &Head, payload: &'a [u8]) -> Result<&'a [u8], Reason> {
    let mut body = payload;
    let mut pad = 0;
    if head.has(PADDED) {
        let (&n, rest) = body.split_first().ok_or(Reason::Protocol)?;
        pad = usize::from(n);
        body = rest;
    }
    if head.kind == Kind::Headers && head.has(PRIORITY) {
        body = body.get(5..).ok_or(Reason::Protocol)?;
    }
    body.get(..body.len().checked_sub(pad).ok_or(Reason::Protocol)?)
        .ok_or(Reason::Protocol)
}

fn frame(out: &mut Vec<u8>, kind: Kind, flags: u8, stream: u32, payload: &[u8]) {
    Head {
        len: payload.len(),
        kind,
        flags,
        stream,
    }
    .write(out);
    out.extend_from_slice(payload);
}

pub fn write_settings(out: &mut Vec<u8>, values: &[(u16, u32)]) {
    let mut payload = Vec::with_capacity(values.len() * 6);
    for (id, value) in values {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(out, Kind::Settings, 0, 0, &payload);
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    frame(out, Kind::Settings, ACK, 0, &[]);
}

pub fn write_ping_ack(out: &mut Vec<u8>, payload: &[u8]) {
    frame(out, Kind::Ping, ACK, 0, payload);
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(out, Kind::WindowUpdate, 0, stream, &increment.to_be_bytes());
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    frame(
        out,
        Kind::RstStream,
        0,
        stream,
        &(reason as u32).to_be_bytes(),
    );
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    let mut payload = [0; 8];
    payload[..4].copy_from_slice(&last_stream.to_be_bytes());
    payload[4..].copy_from_slice(&(reason as u32).to_be_bytes());
    frame(out, Kind::GoAway, 0, 0, &payload);
}

pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { END_STREAM } else { 0 };
    frame(out, Kind::Data, flags, stream, data);
}

/// A header block as HEADERS and, beyond `max_frame` bytes, CONTINUATION
/// frames.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame.max(1)).peekable();
    let mut kind = Kind::Headers;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    loop {
        let chunk = chunks.next().unwrap_or_default();
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        frame(out, kind, flags, stream, chunk);
        if flags & END_HEADERS != 0 {
            return;
        }
        (kind, flags) = (Kind::Continuation, 0);
    }
}

/// A 32-bit field whose high bit is reserved: the stream of a GOAWAY, the
/// increment of a WINDOW_UPDATE.
pub fn u31(bytes: &[u8]) -> Option<u32> {
    let word: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(word) & 0x7fff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_written_and_ignores_the_reserved_bit() {
        let mut out = Vec::new();
        write_data(&mut out, 7, b"hello", true);
        let head = Head::parse(out[..HEADER_LEN].try_into().unwrap());
        assert_eq!(
            head,
            Head {
                len: 5,
                kind: Kind::Data,
                flags: END_STREAM,
                stream: 7
            }
        );
        assert_eq!(&out[HEADER_LEN..], b"hello");
        out[5] |= 0x80;
        assert_eq!(Head::parse(out[..HEADER_LEN].try_into().unwrap()).stream, 7);
    }

    #[test]
    fn settings_out_of_range_are_the_errors_the_rfc_names() {
        let entry = |id: u16, value: u32| {
            let mut e = id.to_be_bytes().to_vec();
            e.extend_from_slice(&value.to_be_bytes());
            e
        };
        assert_eq!(settings(&entry(ENABLE_PUSH, 2)), Err(Reason::Protocol));
        assert_eq!(
            settings(&entry(INITIAL_WINDOW_SIZE, 1 << 31)),
            Err(Reason::FlowControl)
        );
        assert_eq!(settings(&entry(MAX_FRAME_SIZE, 100)), Err(Reason::Protocol));
        assert_eq!(settings(&[0; 5]), Err(Reason::FrameSize));
        let mut both = entry(INITIAL_WINDOW_SIZE, 1 << 20);
        both.extend(entry(MAX_FRAME_SIZE, 1 << 20));
        both.extend(entry(0x99, 1));
        assert_eq!(
            settings(&both),
            Ok(PeerSettings {
                initial_window: Some(1 << 20),
                max_frame: Some(1 << 20)
            })
        );
    }

    #[test]
    fn padding_and_priority_are_stripped_and_too_much_padding_refused() {
        let head = |kind, flags| Head {
            len: 0,
            kind,
            flags,
            stream: 1,
        };
        assert_eq!(
            content(&head(Kind::Data, PADDED), &[2, b'a', b'b', 0, 0]),
            Ok(&b"ab"[..])
        );
        assert_eq!(
            content(
                &head(Kind::Headers, PADDED | PRIORITY),
                &[1, 0, 0, 0, 3, 16, b'x', 0]
            ),
            Ok(&b"x"[..])
        );
        assert_eq!(
            content(&head(Kind::Data, PADDED), &[5, b'a']),
            Err(Reason::Protocol)
        );
        assert_eq!(
            content(&head(Kind::Data, PADDED), &[]),
            Err(Reason::Protocol)
        );
    }

    #[test]
    fn a_header_block_longer_than_a_frame_continues() {
        let mut out = Vec::new();
        write_headers(&mut out, 3, &[7; 10], true, 4);
        let heads: Vec<Head> = [0, 13, 26]
            .iter()
            .map(|at| Head::parse(out[*at..at + HEADER_LEN].try_into().unwrap()))
            .collect();
        assert_eq!(heads[0].kind, Kind::Headers);
        assert_eq!(heads[0].flags, END_STREAM);
        assert_eq!(heads[1].kind, Kind::Continuation);
        assert_eq!(heads[1].flags, 0);
        assert_eq!((heads[2].len, heads[2].flags), (2, END_HEADERS));
        assert_eq!(out.len(), 3 * HEADER_LEN + 10);
    }
}
