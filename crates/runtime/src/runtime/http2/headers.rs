//! Header blocks: a request's, decoded with HPACK (RFC 7541, [`hpack`])
//! into an `http::Request`, and a response's, encoded as literals. The server
//! never indexes what it sends: a stream answers one set of headers and
//! one of trailers, so a dynamic table would save a few bytes per stream
//! and cost a table per connection.

use super::hpack;
use axum::http::{self, HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The largest header list a request may have, counted as RFC 9113
/// §6.5.2 counts it (name, value and 32 bytes per field).
pub const MAX_HEADER_LIST: usize = 16 * 1024;

/// Why a request's headers were not a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The block could not be decoded: the connection's HPACK state is
    /// lost (a connection error).
    Compression,
    /// Decoded, but not a request this server can take (a stream error).
    Malformed(&'static str),
}

/// A request's head: HPACK-decoded from `block` with `decoder` (whose
/// table the block may change), then checked.
pub fn request(
    decoder: &mut hpack::Decoder,
    block: &[u8],
) -> Result<http::request::Parts, Refused> {
    let mut head = Head::default();
    decoder
        .decode(block, |name, value| head.field(name, value))
        .map_err(|_| Refused::Compression)?;
    head.into_parts()
}

#[derive(Default)]
struct Head {
    method: Option<http::Method>,
    path: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    headers: HeaderMap,
    size: usize,
    regular_seen: bool,
    malformed: Option<&'static str>,
}

impl Head {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        self.size += name.len() + value.len() + 32;
        if self.malformed.is_some() {
            return;
        }
        if self.size > MAX_HEADER_LIST {
            self.malformed = Some("the request's headers exceed 16 KiB");
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                self.malformed = Some("a pseudo-header follows a regular header");
                return;
            }
            match pseudo {
                b"method" => match http::Method::from_bytes(value) {
                    Ok(method) => self.method = Some(method),
                    Err(_) => self.malformed = Some("the :method is not a method"),
                },
                b"path" => self.path = Some(value.to_vec()),
                b"authority" => self.authority = Some(value.to_vec()),
                b"scheme" => {}
                _ => self.malformed = Some("an unknown pseudo-header"),
            }
            return;
        }
        self.regular_seen = true;
        // Field names are lower case in HTTP/2 (RFC 9113 §8.2.1).
        if name.iter().any(u8::is_ascii_uppercase) {
            self.malformed = Some("an upper-case header name");
            return;
        }
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(name), Ok(value)) => {
                self.headers.append(name, value);
            }
            _ => self.malformed = Some("a header that is not a valid name and value"),
        }
    }

    fn into_parts(self) -> Result<http::request::Parts, Refused> {
        if let Some(why) = self.malformed {
            return Err(Refused::Malformed(why));
        }
        let (Some(method), Some(path)) = (self.method, self.path) else {
            return Err(Refused::Malformed("a request without :method or :path"));
        };
        let mut uri = http::Uri::builder().path_and_query(path);
        if let Some(authority) = self.authority {
            uri = uri.scheme("http").authority(authority);
        }
        let (mut parts, ()) = http::Request::builder()
            .method(method)
            .uri(
                uri.build()
                    .map_err(|_| Refused::Malformed("the :path is not a path"))?,
            )
            .version(http::Version::HTTP_2)
            .body(())
            .map_err(|_| Refused::Malformed("not a request"))?
            .into_parts();
        parts.headers = self.headers;
        Ok(parts)
    }
}

/// A response's header block: `:status` (when given) and `headers`.
pub fn response(status: Option<StatusCode>, headers: &HeaderMap) -> Vec<u8> {
    let mut block = Vec::new();
    match status {
        // `:status: 200` is entry 8 of the static table.
        Some(StatusCode::OK) => block.push(0x80 | 8),
        // A literal value for the static table's name `:status`.
        Some(status) => {
            integer(&mut block, 0x00, 4, 8);
            string(&mut block, status.as_str().as_bytes());
        }
        None => {}
    }
    for (name, value) in headers {
        // Literal header field without indexing, new name (§6.2.2).
        block.push(0x00);
        string(&mut block, name.as_str().as_bytes());
        string(&mut block, value.as_bytes());
    }
    block
}

/// An integer with an `n`-bit prefix after `flags` (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, flags: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A string literal, not Huffman-coded (§5.2).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, 0x00, 7, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response block as a decoder written by others reads it.
    fn decoded(block: &[u8]) -> Vec<(String, String)> {
        hpack::tests::reference(&[block.to_vec()]).remove(0)
    }

    #[test]
    fn a_response_block_decodes_to_its_status_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        let long = "x".repeat(300);
        headers.insert("grpc-message", HeaderValue::from_str(&long).unwrap());
        let fields = decoded(&response(Some(StatusCode::OK), &headers));
        assert_eq!(fields[0], (":status".into(), "200".into()));
        assert_eq!(
            fields[1],
            ("content-type".into(), "application/grpc".into())
        );
        assert_eq!(fields[2], ("grpc-message".into(), long));
        let fields = decoded(&response(Some(StatusCode::NOT_FOUND), &HeaderMap::new()));
        assert_eq!(fields, [(":status".to_string(), "404".to_string())]);
    }

    /// A block as a client encodes it, with the table and Huffman coding.
    fn client_block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        loona_hpack::Encoder::new().encode(fields.iter().copied())
    }

    #[test]
    fn a_request_block_becomes_a_request() {
        let block = client_block(&[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (
                b":path",
                b"/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
            ),
            (b":authority", b"kuma-control-plane:5678"),
            (b"content-type", b"application/grpc"),
            (b"authorization", b"Bearer token"),
        ]);
        let parts = request(&mut hpack::Decoder::default(), &block).expect("a request");
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(
            parts.uri.path(),
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
        );
        assert_eq!(parts.headers["authorization"], "Bearer token");
        assert!(!parts.headers.contains_key(":path"));
    }

    #[test]
    fn malformed_requests_are_refused_with_the_reason() {
        let refused = |fields: &[(&[u8], &[u8])]| {
            request(&mut hpack::Decoder::default(), &client_block(fields)).unwrap_err()
        };
        assert_eq!(
            refused(&[(b":method", b"POST")]),
            Refused::Malformed("a request without :method or :path")
        );
        assert_eq!(
            refused(&[
                (b"te", b"trailers"),
                (b":method", b"POST"),
                (b":path", b"/")
            ]),
            Refused::Malformed("a pseudo-header follows a regular header")
        );
        let big = vec![b'a'; MAX_HEADER_LIST];
        assert_eq!(
            refused(&[(b":method", b"POST"), (b":path", b"/"), (b"x", &big)]),
            Refused::Malformed("the request's headers exceed 16 KiB")
        );
        assert_eq!(
            request(&mut hpack::Decoder::default(), &[0xff, 0xff, 0xff]).unwrap_err(),
            Refused::Compression
        );
    }

    #[test]
    fn integers_past_their_prefix_continue_in_seven_bit_groups() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }
}
